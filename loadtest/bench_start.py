"""Start-up with and without the master's library preload (MEMOSERVE_PRELOAD_LIBRARIES), in one run.

For each setting, --rounds times: a replica of --workers workers serving a local skops model
with the in-process cache; the time from `memoserve serve` to /readyz, the CPU seconds the
replica's processes spent getting there, and, after a SIGKILL of one worker, the time until its
replacement has loaded the model (its "serving model" log line). Prints medians and the ratios
of preload on to preload off. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import skops.io

from devtools.localstack.processes import start_replica, wait_until
from loadtest.common import median
from memoserve_models import demo

SERVING = b"serving model"


def children(pid: int) -> list[int]:
    """Worker pids of a gunicorn master (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids``, as /proc/<pid>/stat counts them."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def one(work: Path, model: Path, workers: int, preload: bool, n: int) -> tuple[float, float, float]:
    """(seconds to ready, CPU seconds to ready, seconds to replace a killed worker)."""
    name = f"{'on' if preload else 'off'}-{n}"
    env = {
        "MEMOSERVE_MODEL_URI": str(model),
        "MEMOSERVE_WORKERS": str(workers),
        "MEMOSERVE_MODEL_POLL_SECONDS": "0",
        "MEMOSERVE_PRELOAD_LIBRARIES": str(preload).lower(),
        "MEMOSERVE_ACCESS_LOG": "false",
    }
    started = time.monotonic()
    replica = start_replica(name, work, env, timeout=120)
    try:
        ready = time.monotonic() - started
        log, master = replica.proc.log, replica.proc.popen.pid
        wait_until(lambda: log.read_bytes().count(SERVING) >= workers, 60, "every worker loaded")
        workers_now = children(master)
        cpu = cpu_seconds([master, *workers_now])
        loads = log.read_bytes().count(SERVING)
        killed = time.monotonic()
        os.kill(workers_now[0], signal.SIGKILL)
        wait_until(lambda: log.read_bytes().count(SERVING) > loads, 60, "the replacement loaded")
        return ready, cpu, time.monotonic() - killed
    finally:
        replica.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memoserve-bench-start-"))
    model = work / "iris.skops"
    skops.io.dump(demo.train_iris(), model)
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for n in range(args.rounds):
        for preload in (False, True):  # alternate, so drift in the machine's load hits both
            runs[preload].append(one(work, model, args.workers, preload, n))
    labels = ("start to /readyz (s)", "CPU to ready (s)", "replace a killed worker (s)")
    print(f"{args.workers} workers, medians of {args.rounds} rounds")
    print(f"{'':30} {'preload off':>12} {'preload on':>12} {'on/off':>8}")
    for i, label in enumerate(labels):
        off = median([r[i] for r in runs[False]])
        on = median([r[i] for r in runs[True]])
        print(f"{label:30} {off:12.2f} {on:12.2f} {on / off:8.2f}")


if __name__ == "__main__":
    main()
