"""The miss path: micro-batching, the cache's cost when nothing hits, and the 1-second model.

Servers (one gunicorn worker each, side by side; every round visits every case in turn, so
noise spreads over all of them). In the distinct-row cases every request carries a row never
sent before, so every request misses:
  batched   memoserve defaults: Sentinel + L1, concurrent misses merged (<= 32 rows per call)
  one-row   MEMOSERVE_BATCH_MAX_ROWS=1: one model call per request
  mlflow    `mlflow models serve` of the same forest (--no-mlflow skips it)
  no-cache  no Redis (in-process cache only) and `Cache-Control: no-cache, no-store` on every
            request: no lookup, no store, no hot-row sample (no setting turns the cache off)
each at 16 and 64 connections; batched against no-cache is the cache's cost. Then the
tutorial's 1-second model (demo.SlowModel as an MLflow pyfunc) behind memoserve defaults:
  slow-hit  the same row again (after one warm-up request)
  slow-miss a new row per request; concurrent misses may share one 1-second call
at 1 and 32 connections. Prints medians of --rounds, the ratios, and rows per model call
(from memoserve's /metrics). Traffic is loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
import urllib.request
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import skops.io

from devtools.localstack.processes import SentinelCluster, redis_available
from loadtest.bench_hit import APP, ROW, save_mlflow_model
from loadtest.common import (
    distinct_rows_lua,
    gunicorn,
    median,
    mlflow_models_serve,
    save_results,
    wrk,
)
from memoserve_models import demo

JSON = {"Content-Type": "application/json"}
NO_CACHE = {**JSON, "Cache-Control": "no-cache, no-store"}
SLOW_DELAY = 1.0
GOALS = {"batched/one-row": 20.0, "cache on/off": 0.95, "slow miss/hit p50": 500.0}
# case: (server, connections, request headers, a new row per request)
Case = tuple[str, int, dict[str, str], bool]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per run; slow model >= 3")
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    args = parser.parse_args()
    if not redis_available():
        raise SystemExit("redis-server is needed for the cached cases")

    cases: dict[str, Case] = {}
    for c in (16, 64):
        for server in ("batched", "one-row", *(() if args.no_mlflow else ("mlflow",))):
            cases[f"{server}/{c}"] = (server, c, JSON, True)
        cases[f"no-cache/{c}"] = ("no-cache", c, NO_CACHE, True)
    for c in (1, 32):
        cases[f"slow-hit/{c}"] = ("slow", c, JSON, False)
        cases[f"slow-miss/{c}"] = ("slow", c, JSON, True)

    work = Path(tempfile.mkdtemp(prefix="memoserve-bench-miss-"))
    cluster = SentinelCluster(work / "redis").start()
    try:
        with ExitStack() as stack:
            servers = serve(stack, work, cluster.sentinel_addresses, not args.no_mlflow)
            results = measure(servers, cases, args)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, cases, args)


def serve(stack: ExitStack, work: Path, sentinels: str, mlflow: bool) -> dict[str, str]:
    """Every server of the run, started one after the other; name -> URL."""
    iris = demo.train_iris()
    skops.io.dump(iris, work / "iris.skops")
    save_slow_model(iris, slow := str(work / "slow"))
    base = {
        "MEMOSERVE_MODEL_URI": str(work / "iris.skops"),
        "MEMOSERVE_WORKERS": "1",
        "MEMOSERVE_MODEL_POLL_SECONDS": "0",
        "MEMOSERVE_ACCESS_LOG": "false",
    }
    cached = {**base, "MEMOSERVE_REDIS_SENTINELS": sentinels}
    envs = {
        "batched": cached,
        "one-row": {**cached, "MEMOSERVE_BATCH_MAX_ROWS": "1"},
        "no-cache": base,
        "slow": {**cached, "MEMOSERVE_MODEL_URI": slow, "MEMOSERVE_MODEL_TRUST": "pickle"},
    }
    servers: dict[str, AbstractContextManager[str]] = {
        name: gunicorn(APP, env, work, name) for name, env in envs.items()
    }
    if mlflow:
        save_mlflow_model(iris, work / "iris-mlflow")
        servers["mlflow"] = mlflow_models_serve(work / "iris-mlflow", work, "mlflow")
    return {name: stack.enter_context(server) for name, server in servers.items()}


def measure(
    servers: dict[str, str], cases: dict[str, Case], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """--rounds of every case in turn: req/s, p50, p99 and (memoserve) rows per model call."""
    body = json.dumps(ROW)
    slow_row = urllib.request.Request(servers["slow"] + "/invocations", body.encode(), JSON)
    urllib.request.urlopen(slow_row, timeout=30).close()  # noqa: S310 - loopback; cached now
    results: dict[str, dict[str, list[float]]] = {}
    for rnd in range(-1, args.rounds):  # round -1 warms every case up, unrecorded
        for name, (server, conns, headers, distinct) in cases.items():
            slow = server == "slow"
            if rnd < 0 and slow:  # warmed up by the request above
                continue
            seconds = (max(3.0, args.seconds) if slow else args.seconds) if rnd >= 0 else 1
            url = servers[server]
            before = model_calls(url) if server != "mlflow" else (0.0, 0.0)
            run = wrk(
                url + "/invocations",
                method="POST",
                body=body,
                headers=headers,
                seconds=seconds,
                connections=conns,
                request_lua=distinct_rows_lua(demo.IRIS_FEATURES) if distinct else "",
                timeout=10 + 3 * SLOW_DELAY,
            )
            if run.errors:
                raise SystemExit(f"{name}: {run.errors} failed requests")
            if rnd < 0:
                continue
            r = results.setdefault(name, {"rps": [], "p50": [], "p99": [], "rows_per_call": []})
            r["rps"].append(run.rps)
            r["p50"].append(run.p50_ms)
            r["p99"].append(run.p99_ms)
            if slow and distinct:  # calls still running or queued finish before the count
                time.sleep(2 * SLOW_DELAY + 0.5)
            if server != "mlflow":
                calls, rows = (a - b for a, b in zip(model_calls(url), before, strict=True))
                if calls:
                    r["rows_per_call"].append(rows / calls)
    return results


def model_calls(url: str) -> tuple[float, float]:
    """Model calls so far and the rows they had, from memoserve's /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:  # noqa: S310 - loopback
        text = r.read().decode()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    return total("memoserve_predict_batch_rows_count"), total("memoserve_predict_batch_rows_sum")


def report(
    results: dict[str, dict[str, list[float]]], cases: dict[str, Case], args: argparse.Namespace
) -> None:
    """The table, the ratios against the issue's goals, and results/bench_miss.json."""
    print(f"\nmedians of {args.rounds} rounds; 1 worker per server, wrk on the same 2 cores")
    print(f"{'case':<14} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'rows/call':>10}")
    for name, r in results.items():
        per_call = f"{median(r['rows_per_call']):.1f}" if r["rows_per_call"] else "-"
        print(
            f"{name:<14} {median(r['rps']):>9.1f} {median(r['p50']):>9.2f} "
            f"{median(r['p99']):>9.2f} {per_call:>10}"
        )

    def m(case: str, key: str = "rps") -> float:
        return median(results[case][key])

    ratios: dict[str, float] = {}
    for c in (16, 64):
        ratios[f"batched/one-row {c}"] = m(f"batched/{c}") / m(f"one-row/{c}")
        if f"mlflow/{c}" in cases:
            ratios[f"batched/mlflow {c}"] = m(f"batched/{c}") / m(f"mlflow/{c}")
        ratios[f"cache on/off {c}"] = m(f"batched/{c}") / m(f"no-cache/{c}")
    for c in (1, 32):
        ratios[f"slow miss/hit p50 {c}"] = m(f"slow-miss/{c}", "p50") / m(f"slow-hit/{c}", "p50")
    print("\nratios (req/s = rows/s: one row per request; the slow model's by p50 latency)")
    for name, value in ratios.items():
        goal = next((g for k, g in GOALS.items() if name.startswith(k)), None)
        verdict = (
            "" if goal is None else f"  goal >= {goal:g}: {'met' if value >= goal else 'MISSED'}"
        )
        print(f"  {name:<22} {value:>9.2f}{verdict}")
    save_results("bench_miss", args, results, ratios=ratios)


def save_slow_model(estimator: object, path: str) -> None:
    """The tutorial's 1-second model (demo.SlowModel) as an MLflow pyfunc directory."""
    import logging
    import warnings

    import mlflow.pyfunc
    from mlflow.models import infer_signature

    x, _ = demo.iris_frame()
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its cloudpickle warning: we know
    # MLflow asks for type hints on predict, under a filter of its own: record, do not show
    with warnings.catch_warnings(record=True):
        from memoserve_models.slow import SlowPyfunc

        mlflow.pyfunc.save_model(
            path,
            python_model=SlowPyfunc(estimator, SLOW_DELAY),
            signature=infer_signature(x, estimator.predict(x)),  # type: ignore[attr-defined]
            pip_requirements=["mlflow"],  # skips inferring them (a subprocess)
        )


if __name__ == "__main__":
    main()
