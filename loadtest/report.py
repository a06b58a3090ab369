"""One report from ``loadtest/results/*.json``: the peers table of ``bench_hit`` first, then every
other benchmark's medians and ratios. ``--readme`` rewrites the README's Performance block
between its markers, so the published figures are always the last ``make bench`` run's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from loadtest.common import REPO, RESULTS

BEGIN = "<!-- report:begin (python -m loadtest.report --readme) -->"
END = "<!-- report:end -->"
PEERS = {
    "hello": "FastAPI hello-world (`GET /`), the baseline",
    "l1-hit": "memoserve, hit from the in-process L1",
    "redis-hit": "memoserve, hit from Redis (L1 off: one `MGET`)",
    "miss": "memoserve, miss (`no-cache, no-store`: the model runs)",
    "seed": "the tutorial's app (pydantic, sync Redis), hit",
    "mlflow": "`mlflow models serve`, same model (no cache)",
    "redis-hit-asyncio": "Redis hit, stock asyncio loop instead of uvloop",
    "redis-hit-h11": "Redis hit, h11 parser instead of httptools",
    "redis-hit-redis-py": "Redis hit, redis-py's command path instead of pipelined lookups",
}
TITLES = {
    "bench_miss": "Misses, the cache's cost, and the 1-second model (`loadtest.bench_miss`)",
    "bench_scale": "Scaling with workers and replicas (`loadtest.bench_scale`)",
    "bench_cluster": "Redis Cluster against Sentinel (`loadtest.bench_cluster`)",
}


def load(directory: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every saved benchmark, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def _peers(data: dict[str, Any]) -> list[str]:
    cases, args = data["cases"], data["args"]
    hello = cases["hello"]["median_rps"]
    lines = [
        f"**Against the peers** (`loadtest.bench_hit`, {data['when'][:10]}): medians of "
        f"{args['rounds']} rounds, {args['workers']} gunicorn worker(s) per server, "
        f"{args['connections']} connections for req/s, p50 and p99, one connection for latency.",
        "",
        "| server | req/s | vs hello | p50 ms | p99 ms | 1-connection p50 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in PEERS.items():
        if (c := cases.get(name)) is not None:
            lines.append(
                f"| {label} | {_num(c['median_rps'])} | {c['median_rps'] / hello:.2f} | "
                f"{c['median_p50']:.2f} | {c['median_p99']:.2f} | {c['median_lat']:.2f} |"
            )
    return lines


def _generic(name: str, data: dict[str, Any]) -> list[str]:
    cases: dict[str, dict[str, Any]] = data["cases"]
    columns = sorted({k for c in cases.values() for k in c if k.startswith("median_")})
    lines = [
        f"**{TITLES.get(name, name)}** ({data['when'][:10]}; medians of "
        f"{data['args'].get('rounds', '?')} rounds)",
        "",
        "| case | " + " | ".join(c.removeprefix("median_") for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for case, c in cases.items():
        cells = [_num(c[k]) if k in c else "" for k in columns]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    ratios: dict[str, float] = data.get("ratios", {})
    if ratios:
        lines += ["", "Ratios: " + "; ".join(f"{k} **{v:.2f}**" for k, v in ratios.items()) + "."]
    return lines


def render(results: dict[str, dict[str, Any]]) -> str:
    """The report as Markdown."""
    blocks = [_peers(results["bench_hit"])] if "bench_hit" in results else []
    blocks += [_generic(n, d) for n, d in results.items() if n != "bench_hit"]
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


def readme_block(readme: str) -> str:
    """The text between the README's report markers."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[start:end].strip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's block")
    args = parser.parse_args()
    report = render(load())
    print(report)
    if args.readme:
        path = REPO / "README.md"
        text = path.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        path.write_text(text[:start] + "\n" + report + text[end:])
        print(f"rewrote {path.relative_to(REPO)}'s Performance block")


if __name__ == "__main__":
    main()
