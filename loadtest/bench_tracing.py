"""What tracing costs the cache-hit path: one replica, one worker, the same row again (answered
from the in-process cache; no Redis needed).

Cases, all served at once and measured in turn, round after round, so drift hits them alike:
  off            MEMOSERVE_TRACING_ENABLED=false
  default        tracing on, no OTEL_* variable: no exporter, so nothing is recorded, but every
                 request gets a server span context (trace ids in the logs)
  default-otlp   the production default: an OTLP endpoint set, so export over HTTP to a loopback
                 receiver with the default sampler (parentbased_traceidratio, 1%)
  otlp-5%        the same with OTEL_TRACES_SAMPLER_ARG=0.05
  naive          FastAPIInstrumentor's defaults (send/receive sub-spans), always_on, exported
                 over OTLP/HTTP to the same receiver
  default+log    default-otlp plus the JSON access log (to the replica's log file)
  off-again      `off` once more, in its own process: the noise floor of this comparison
Prints the median requests/s of --rounds runs and the median of each round's ratio to `off`
(paired, so that drift of a shared machine cancels), and the worker's CPU time per request
(from /proc: what a request costs, whatever else runs on the machine). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import skops.io

from devtools.localstack.otlp import OtlpReceiver
from loadtest.common import gunicorn, median, wrk
from memoserve_models import demo


def gunicorn_pids(url: str) -> list[int]:
    """The gunicorn master and worker serving ``url`` (found by the bind in their environment)."""
    bind = f"MEMOSERVE_BIND={url.removeprefix('http://').split('/')[0]}".encode()
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if bind in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of ``pids`` so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


ROW = {"dataframe_split": {"columns": demo.IRIS_FEATURES, "data": [[5.1, 3.5, 1.4, 0.2]]}}
APP = "service.app:create_app()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--cases", help="comma-separated subset of the cases (off is always run)")
    args = parser.parse_args()

    post = {
        "method": "POST",
        "body": json.dumps(ROW),
        "headers": {"Content-Type": "application/json"},
    }
    base = {
        "MEMOSERVE_WORKERS": "1",
        "MEMOSERVE_MODEL_POLL_SECONDS": "0",
        "MEMOSERVE_ACCESS_LOG": "false",
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
    }
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="memoserve-bench-")))
        skops.io.dump(demo.train_iris(), work / "iris.skops")
        base["MEMOSERVE_MODEL_URI"] = str(work / "iris.skops")
        receiver = stack.enter_context(OtlpReceiver(decode=False))
        otlp = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}
        cases = {
            "off": (APP, {"MEMOSERVE_TRACING_ENABLED": "false"}),
            "default": (APP, {}),
            "default-otlp": (APP, otlp),
            "otlp-5%": (APP, {**otlp, "OTEL_TRACES_SAMPLER_ARG": "0.05"}),
            "naive": (
                "loadtest.naive_tracing_app:create_app()",
                {**otlp, "OTEL_TRACES_SAMPLER": "always_on"},
            ),
            "default+log": (APP, {**otlp, "MEMOSERVE_ACCESS_LOG": "true"}),
            "off-again": (APP, {"MEMOSERVE_TRACING_ENABLED": "false"}),
        }
        if args.cases:
            wanted = {"off", *args.cases.split(",")}
            cases = {name: case for name, case in cases.items() if name in wanted}
        urls = {
            name: stack.enter_context(gunicorn(app, {**base, **env}, work, name)) + "/invocations"
            for name, (app, env) in cases.items()
        }
        for url in urls.values():
            wrk(url, seconds=1, connections=4, **post)  # warm up, fill the cache
        pids = {name: gunicorn_pids(url) for name, url in urls.items()}
        rps: dict[str, list[float]] = {name: [] for name in cases}
        cpu_us: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.rounds):
            for name, url in urls.items():
                cpu = cpu_seconds(pids[name])
                result = wrk(url, seconds=args.seconds, connections=args.connections, **post)
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} failed requests")
                rps[name].append(result.rps)
                requests = result.rps * args.seconds
                cpu_us[name].append((cpu_seconds(pids[name]) - cpu) / requests * 1e6)
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in rps.items()))
        exported = receiver.requests

    print(
        f"\nmedians of {args.rounds} rounds; 1 worker, {args.connections} connections, "
        f"wrk on the same cores; {exported} OTLP export requests received"
    )
    print(
        f"{'case':<14} {'req/s':>8} {'vs off':>7}  {'req/s min..max':>15}  "
        f"{'CPU us/req':>10} {'vs off':>7}"
    )
    off_cpu = median(cpu_us["off"])
    for name, values in rps.items():
        ratio = median([v / off for v, off in zip(values, rps["off"], strict=True)])
        low, high = min(values), max(values)
        cpu = median(cpu_us[name])
        print(
            f"{name:<14} {median(values):>8.0f} {ratio:>7.2f}  {low:>7.0f}..{high:<7.0f}  "
            f"{cpu:>10.0f} {off_cpu / cpu:>7.2f}"
        )


if __name__ == "__main__":
    main()
