"""The Grafana dashboard's main panels, drawn with matplotlib from real /metrics scrapes.

Starts a Redis and two replicas (two workers each) on loopback, drives them with wrk (90% of
requests from a pool of hot rows, 10% new rows), scrapes /metrics of both every second and
computes what the dashboard's PromQL would show (rates over a 5 s window). During the run the
model file is replaced (a new version: every replica's poll picks it up) and Redis is stopped
for a while (the breaker opens, requests are answered without the cache, then it closes).

    python -m loadtest.plot_dashboard --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import skops.io
from prometheus_client.parser import text_string_to_metric_families

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    Replica,
    start_redis,
    start_replica,
)
from memoserve_models import demo

REPO = Path(__file__).resolve().parents[1]
WINDOW = 5.0  # seconds, as rate(...[5s])

# Rows in iris-like ranges: a pool of hot rows (hits once seen) and fresh ones (misses).
_LUA = """
math.randomseed(%(seed)d)
local function row()
  return string.format("[%%.1f,%%.1f,%%.1f,%%.1f]", 4.3 + math.random() * 3.6,
    2.0 + math.random() * 2.4, 1.0 + math.random() * 5.9, 0.1 + math.random() * 2.4)
end
local pool = {}
for i = 1, %(pool)d do pool[i] = row() end
math.randomseed(os.time() + %(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local head = '{"dataframe_split":{"columns":%(columns)s,"data":['
request = function()
  local r
  if math.random() < %(hot)f then r = pool[math.random(1, #pool)] else r = row() end
  return wrk.format(nil, nil, nil, head .. r .. "]}}")
end
"""


@dataclass
class Scrapes:
    """Per replica: (time, {(metric, sorted labels): value}) every second."""

    samples: dict[str, list[tuple[float, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]] = (
        field(default_factory=dict)
    )
    events: list[tuple[float, str]] = field(default_factory=list)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=2) as r:  # noqa: S310 - loopback
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(snapshot: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, ls), v in snapshot.items()
        if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
    )


def windowed(series: list[tuple[float, dict]], f: Callable[[dict, dict, float], float | None]):
    """``f(now, then, seconds)`` over each scrape and the one WINDOW seconds before it."""
    xs, ys = [], []
    for i, (t, now) in enumerate(series):
        j = i
        while j > 0 and t - series[j - 1][0] <= WINDOW + 0.01:
            j -= 1
        if j == i:
            continue
        then_t, then = series[j]
        value = f(now, then, t - then_t)
        xs.append(t)
        ys.append(math.nan if value is None else value)
    return xs, ys


def quantile(q: float, now: dict, then: dict, name: str, **labels: str) -> float | None:
    """histogram_quantile over the increase of ``name``_bucket, as Prometheus interpolates."""
    buckets: dict[float, float] = {}
    for (n, ls), v in now.items():
        d = dict(ls)
        if n == name + "_bucket" and all(d.get(k) == x for k, x in labels.items()):
            le = float(d["le"])
            buckets[le] = buckets.get(le, 0.0) + v - then.get((n, ls), 0.0)
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if math.isinf(b):
                return lower
            return lower + (b - lower) * (rank - below) / max(buckets[b] - below, 1e-12)
        lower, below = b, buckets[b]
    return None


def wrk_load(url: str, seconds: float, workdir: Path, seed: int) -> subprocess.Popen[bytes]:
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError("load goes to loopback only")
    script = workdir / f"load-{seed}.lua"
    columns = "[" + ",".join(f'"{c}"' for c in demo.IRIS_FEATURES) + "]"
    script.write_text(_LUA % {"seed": seed, "pool": 4000, "hot": 0.9, "columns": columns})
    argv = ["wrk", "-t1", "-c8", f"-d{seconds:.0f}s", "-s", str(script), url + "/invocations"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def run(seconds: float, workdir: Path) -> Scrapes:
    model = workdir / "iris.skops"
    skops.io.dump(demo.train_iris(n_estimators=50), model)
    procs: list[Proc] = [start_redis("redis", workdir)]
    redis_port = procs[0].port
    replicas: list[Replica] = []
    loads: list[subprocess.Popen[bytes]] = []
    scrapes = Scrapes()
    stop = threading.Event()
    try:
        env = {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "MEMOSERVE_MODEL_URI": str(model),
            "MEMOSERVE_WORKERS": "2",
            "MEMOSERVE_MODEL_POLL_SECONDS": "2",
            "MEMOSERVE_REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0",
            "MEMOSERVE_ACCESS_LOG": "false",
            "MEMOSERVE_WARMUP_TOP_K": "0",
        }
        for i in range(2):
            replicas.append(start_replica(f"replica-{i}", workdir, env))
        names = {r.url: f"replica-{i}" for i, r in enumerate(replicas)}
        start = time.monotonic()

        def scraper() -> None:
            while not stop.is_set():
                t = time.monotonic() - start
                for replica in replicas:
                    try:
                        snapshot = scrape(replica.url)
                    except OSError:
                        continue
                    scrapes.samples.setdefault(names[replica.url], []).append((t, snapshot))
                stop.wait(max(0.0, 1.0 - (time.monotonic() - start - t)))

        thread = threading.Thread(target=scraper, daemon=True)
        thread.start()
        loads = [wrk_load(r.url, seconds, workdir, seed) for seed, r in enumerate(replicas)]

        def at(when: float, what: str) -> None:
            time.sleep(max(0.0, start + when - time.monotonic()))
            scrapes.events.append((time.monotonic() - start, what))

        at(seconds * 0.35, "new model version")
        fresh = workdir / "iris-v2.skops"
        skops.io.dump(demo.train_iris(n_estimators=50, seed=7, label_shift=1), fresh)
        os.replace(fresh, model)
        at(seconds * 0.65, "Redis stopped")
        procs[0].stop()
        at(seconds * 0.75, "Redis back")
        procs.append(start_redis("redis-again", workdir, port=redis_port))
        for load in loads:
            load.wait(timeout=seconds + 30)
        stop.set()
        thread.join(5)
        return scrapes
    finally:
        stop.set()
        for load in loads:
            if load.poll() is None:
                load.terminate()
                load.wait(10)
        for replica in replicas:
            replica.stop()
        for proc in procs:
            proc.stop()


def plot(scrapes: Scrapes, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(12, 9.5), sharex=True)
    (ratio_ax, rate_ax), (latency_ax, batch_ax), (version_ax, breaker_ax) = axes
    series = scrapes.samples
    all_t = sorted({t for s in series.values() for t, _ in s})

    # Cache hit ratio, over both replicas and per replica.
    def hit_ratio(now: dict, then: dict, _dt: float) -> float | None:
        hits = total(now, "memoserve_cache_results_total", result="hit") - total(
            then, "memoserve_cache_results_total", result="hit"
        )
        others = sum(
            total(now, "memoserve_cache_results_total", result=r)
            - total(then, "memoserve_cache_results_total", result=r)
            for r in ("miss", "bypass")
        )
        return hits / (hits + others) if hits + others > 0 else None

    for name, s in series.items():
        ratio_ax.plot(*windowed(s, hit_ratio), label=name, lw=1.2)
    ratio_ax.set_title("Cache hit ratio (hit / (hit + miss + error))")
    ratio_ax.set_ylim(0, 1.02)

    for name, s in series.items():

        def rps(now: dict, then: dict, dt: float) -> float:
            done = total(now, "memoserve_requests_total", route="/invocations")
            return (done - total(then, "memoserve_requests_total", route="/invocations")) / dt

        rate_ax.plot(*windowed(s, rps), label=name, lw=1.2)
    rate_ax.set_title("Request rate, /invocations (req/s)")

    for name, s in series.items():
        for q, style in ((0.5, "-"), (0.99, "--")):
            xs, ys = windowed(
                s,
                lambda now, then, _dt, q=q: quantile(
                    q, now, then, "memoserve_request_duration_seconds", route="/invocations"
                ),
            )
            latency_ax.plot(xs, [y * 1000 for y in ys], style, lw=1.2, label=f"p{q * 100:g} {name}")
    latency_ax.set_title("Request latency p50 / p99 (ms)")
    latency_ax.set_yscale("log")

    for name, s in series.items():

        def mean_batch(now: dict, then: dict, _dt: float) -> float | None:
            rows = total(now, "memoserve_predict_batch_rows_sum") - total(
                then, "memoserve_predict_batch_rows_sum"
            )
            calls = total(now, "memoserve_predict_batch_rows_count") - total(
                then, "memoserve_predict_batch_rows_count"
            )
            return rows / calls if calls else None

        batch_ax.plot(*windowed(s, mean_batch), label=f"mean {name}", lw=1.2)
        xs, ys = windowed(
            s, lambda now, then, _dt: quantile(0.99, now, then, "memoserve_predict_batch_rows")
        )
        batch_ax.plot(xs, ys, "--", lw=1, label=f"p99 {name}")
    batch_ax.set_title("Predict batch size (rows per model call)")

    versions: list[str] = []
    for offset, (name, s) in enumerate(series.items()):
        xs, ys = [], []
        for t, snap in s:
            serving = [
                dict(ls)["version"]
                for (n, ls), v in snap.items()
                if n == "memoserve_model_info" and v == 1
            ]
            for version in serving:
                if version not in versions:
                    versions.append(version)
            xs.append(t)
            ys.append(versions.index(serving[0]) + offset * 0.04 if serving else math.nan)
        version_ax.step(xs, ys, where="post", label=name, lw=1.5)
    version_ax.set_yticks(range(len(versions)), [v[-12:] for v in versions])
    version_ax.set_ylim(-0.5, len(versions) - 0.5)
    version_ax.set_title("Model version per replica (memoserve_model_info == 1)")

    for offset, (name, s) in enumerate(series.items()):
        breaker_ax.step(
            [t for t, _ in s],
            [total(snap, "memoserve_breaker_state") + offset * 0.04 for _, snap in s],
            where="post",
            label=name,
            lw=1.5,
        )
    breaker_ax.set_yticks([0, 1, 2], ["closed", "half-open", "open"])
    breaker_ax.set_title("Redis circuit breaker state")

    for ax in axes.flat:
        for t, _ in scrapes.events:
            ax.axvline(t, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for t, what in scrapes.events:
        ratio_ax.annotate(what, (t, 1.0), fontsize=7, rotation=90, va="top", ha="right")
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
        ax.set_xlim(0, all_t[-1] if all_t else 1)
    fig.suptitle(
        "memoserve: 2 replicas x 2 workers, wrk load (90% hot rows), from /metrics every second"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=72)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memoserve-dashboard-") as tmp:
        scrapes = run(args.seconds, Path(tmp))
    plot(scrapes, args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
