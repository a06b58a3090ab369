"""Cache-hit throughput as workers and replicas grow, each point against its own hello-world.

Cases, each served with memoserve's gunicorn config:
  hello      FastAPI's hello-world (loadtest.hello_app, ``GET /``): the per-point baseline
  l1-hit     memoserve, the same row again: answered from each worker's in-process L1
  redis-hit  memoserve with L1 off (MEMOSERVE_L1_ENABLED=false): one MGET through Sentinel
Points: one replica of 1, 2 and 4 workers, then two replicas (two gunicorns) of 1 and of 2.
Every case has two gunicorns from the start (the second idle until the two-replica points);
workers are added and removed with SIGTTIN/SIGTTOU (the same fork from the master as at
start-up; a cold start per point would cost more than the measuring). Two replicas are driven
by two wrk processes at once (threads), --connections split between them: req/s is their sum,
p99 the worse of the two. Rounds alternate the cases; each figure is the median of --rounds.
Also printed: the CPU the workers got (in cores, from /proc) and how many of them did any real
share of the work (a worker that accepted none of wrk's keep-alive connections idles).

The machine has 2 cores, shared with wrk and Redis: nothing here can scale past 2x, and the
4-worker points show what oversubscribing 2 cores costs, not what 4 cores would give.

    python -m loadtest.bench_scale --plot docs/scaling.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skops.io

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    SentinelCluster,
    free_port,
    redis_available,
    spawn,
    wait_until,
)
from loadtest.common import REPO, median, save_results, wrk
from memoserve_models import demo

ROW = {"dataframe_split": {"columns": demo.IRIS_FEATURES, "data": [[5.1, 3.5, 1.4, 0.2]]}}
APP = "service.app:create_app()"
HELLO = "loadtest.hello_app:create_app()"
CASES = ("hello", "l1-hit", "redis-hit")
# (label, workers per replica, replicas); "2x1" is 2 replicas of 1 worker.
POINTS = (("1", 1, 1), ("2", 2, 1), ("4", 4, 1), ("2x1", 1, 2), ("2x2", 2, 2))
POST = {"method": "POST", "body": json.dumps(ROW), "headers": {"Content-Type": "application/json"}}
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Gunicorn:
    """One replica: a gunicorn master (memoserve's config) and its URL."""

    proc: Proc
    url: str

    @classmethod
    def start(cls, app: str, env: dict[str, str], work: Path, name: str) -> Gunicorn:
        """As loadtest.common.gunicorn, 1 worker, without waiting (all start side by side)."""
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "MEMOSERVE_WORKERS": "1", **env}
        env["MEMOSERVE_BIND"] = f"{LOOPBACK}:{port}"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(work / f"{name}-prom")
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", app]
        return cls(spawn(name, argv, work, port, env), f"http://{LOOPBACK}:{port}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) of each worker so far."""
        pid = self.proc.popen.pid
        out = {}
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            out[child] = (int(stat[11]) + int(stat[12])) / TICK
        return out

    def ready(self, workers: int) -> bool:
        """``workers`` workers, and every worker ever booted past its lifespan start-up."""
        log = self.proc.log.read_text()
        booted = log.count("Booting worker with pid")
        return len(self.cpu()) == workers and booted == log.count("Application startup complete")

    def scale(self, workers: int) -> None:
        """One SIGTTIN/SIGTTOU at a time (the same signal twice may arrive as one)."""
        while (n := len(self.cpu())) != workers:
            os.kill(self.proc.popen.pid, signal.SIGTTIN if n < workers else signal.SIGTTOU)
            wait_until(lambda n=n: len(self.cpu()) != n, 30, "gunicorn to scale", proc=self.proc)  # type: ignore[misc]
        wait_until(lambda: self.ready(workers), 90, f"{self.proc.name} ready", 0.2, self.proc)


def measure(
    up: list[Gunicorn], path: str, request: dict[str, Any], seconds: float, connections: int
) -> dict[str, float]:
    """One wrk per replica at once, the connections split: summed req/s, the worse p99, the
    workers' CPU in cores and how many did over a tenth of the busiest one's work."""
    before = [s.cpu() for s in up]
    each = max(1, connections // len(up))
    with ThreadPoolExecutor(len(up)) as pool:
        runs = list(
            pool.map(lambda s: wrk(s.url + path, seconds=seconds, connections=each, **request), up)
        )
    used = [v - b.get(k, 0.0) for s, b in zip(up, before, strict=True) for k, v in s.cpu().items()]
    if errors := sum(r.errors for r in runs):
        raise SystemExit(f"{path} on {[s.proc.name for s in up]}: {errors} failed requests")
    return {
        "rps": sum(r.rps for r in runs),
        "p99": max(r.p99_ms for r in runs),
        "cores": sum(used) / max(1, round(seconds)),  # wrk's -d is whole seconds
        "busy": sum(u > 0.1 * max(used) for u in used),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--plot", type=Path, default=Path("docs/scaling.png"))
    args = parser.parse_args()
    if not redis_available():
        raise SystemExit("redis-server is needed for the redis-hit case")

    work = Path(tempfile.mkdtemp(prefix="memoserve-bench-scale-"))
    model = work / "iris.skops"
    skops.io.dump(demo.train_iris(), model)
    cluster = SentinelCluster(work / "redis").start()
    base = {
        "MEMOSERVE_MODEL_URI": str(model),
        "MEMOSERVE_MODEL_POLL_SECONDS": "0",
        "MEMOSERVE_ACCESS_LOG": "false",
        "MEMOSERVE_REDIS_SENTINELS": cluster.sentinel_addresses,
    }
    served = {  # app, env, path, request; hello needs none of the preloaded model libraries
        "hello": (HELLO, {"MEMOSERVE_PRELOAD_LIBRARIES": "false"}, "/", {}),
        "l1-hit": (APP, base, "/invocations", POST),
        "redis-hit": (APP, {**base, "MEMOSERVE_L1_ENABLED": "false"}, "/invocations", POST),
    }
    results: dict[str, dict[str, list[float]]] = {}
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            servers = {
                c: [Gunicorn.start(*served[c][:2], work, f"{c}-{i}") for i in (0, 1)] for c in CASES
            }
            for s in (s for pair in servers.values() for s in pair):
                stack.callback(s.proc.stop)
            for label, workers, replicas in POINTS:
                for case in CASES:
                    for i, s in enumerate(servers[case]):
                        s.scale(workers if i < replicas else 1)
                up = {c: servers[c][:replicas] for c in CASES}
                for c in CASES:  # warm up: every worker's L1, the row in Redis
                    measure(up[c], *served[c][2:], 1, 4 * workers * replicas)
                for _ in range(args.rounds):
                    for case in CASES:
                        m = measure(up[case], *served[case][2:], args.seconds, args.connections)
                        for k, v in m.items():
                            results.setdefault(f"{case}@{label}", {}).setdefault(k, []).append(v)
                print(f"point {label} done at {time.monotonic() - began:.0f} s", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: {m: median(v) for m, v in r.items()} for k, r in results.items()}
    report(args, medians)
    save_results("bench_scale", {**vars(args), "plot": str(args.plot)}, results, points=POINTS)
    plot({k: m["rps"] for k, m in medians.items()}, args.plot)


def report(args: argparse.Namespace, medians: dict[str, dict[str, float]]) -> None:
    print(
        f"\nmedians of {args.rounds} rounds of {args.seconds:g} s, {args.connections} connections;"
        f" {os.cpu_count()} cores shared by the servers, wrk and Redis: no scaling past 2x\n"
        "workers: per replica, 2xN = 2 replicas of N workers (one wrk each, req/s summed); "
        "cores: CPU the workers got;\nbusy: workers that did over a tenth of the busiest's work"
    )
    cols = ("case", "workers", "req/s", "p99 ms", "vs hello", "vs 1 worker", "cores", "busy")
    print("{:<10} {:>7} {:>8} {:>8} {:>9} {:>12} {:>6} {:>5}".format(*cols))
    for case in CASES:
        for label, workers, replicas in POINTS:
            m, rps = medians[f"{case}@{label}"], medians[f"{case}@{label}"]["rps"]
            print(
                f"{case:<10} {label:>7} {rps:>8.0f} {m['p99']:>8.2f} "
                f"{rps / medians[f'hello@{label}']['rps']:>9.2f} "
                f"{rps / medians[f'{case}@1']['rps']:>11.2f}x "
                f"{m['cores']:>6.2f} {m['busy']:>3.0f}/{workers * replicas}"
            )


def plot(rps: dict[str, float], out: Path) -> None:
    """req/s against total worker processes: solid, one replica; dashed, two replicas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for case, color in zip(CASES, ("tab:grey", "tab:blue", "tab:orange"), strict=True):
        for replicas, style, marker in ((1, "-", "o"), (2, "--", "s")):
            xs = [w * n for label, w, n in POINTS if n == replicas]
            ys = [rps[f"{case}@{label}"] for label, _, n in POINTS if n == replicas]
            name = f"{case}, {'1 replica' if replicas == 1 else '2 replicas'}"
            ax.plot(xs, ys, style, marker=marker, color=color, label=name)
    ax.axvline(2, color="black", lw=0.8, ls=":")
    ax.text(2.03, 0.02, "2 cores, shared with wrk and Redis", transform=ax.get_xaxis_transform())
    ax.set_xticks([1, 2, 4])
    ax.set_xlabel("worker processes in total")
    ax.set_ylabel("req/s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax.set_title("memoserve cache hits vs FastAPI hello-world, one wrk per replica, 2 cores")
    fig.tight_layout()
    path = out if out.is_absolute() else REPO / out
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"wrote {path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
