"""Cache-hit throughput and latency as ratios to FastAPI's hello-world, measured in one run.

Serves, each with memoserve's gunicorn config (1 worker unless --workers):
  hello     FastAPI's hello-world endpoint (the baseline)
  l1-hit    memoserve, the same row again: answered from the in-process near-cache
  redis-hit memoserve with L1 off: one Redis MGET per request
  miss      memoserve with `Cache-Control: no-cache, no-store`: the model on every request
  seed      the tutorial's app memoserve grew from (loadtest/seed_app.py), hitting its Redis
  redis-hit-asyncio / redis-hit-h11
            the Redis hit with the stock asyncio loop / the h11 parser instead of uvloop /
            httptools: what each earns (--no-variants skips them)
  redis-hit-redis-py
            the Redis hit through redis-py's command path instead of the pipelined lookups
  mlflow    `mlflow models serve` of the same model (the server memoserve replaces; it has no
            cache, so every request runs the model); --no-mlflow skips it
prints the median of --rounds runs of each and writes loadtest/results/bench_hit.json.
Traffic is loopback only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import skops.io

from devtools.localstack.processes import SentinelCluster, redis_available
from loadtest.common import Result, gunicorn, median, mlflow_models_serve, save_results, wrk
from memoserve_models import demo

SEED_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
ROW = {
    "dataframe_split": {
        "columns": demo.IRIS_FEATURES,
        "data": [[5.1, 3.5, 1.4, 0.2]],
    }
}
APP = "service.app:create_app()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    parser.add_argument("--no-variants", action="store_true", help="skip asyncio / h11 cases")
    args = parser.parse_args()
    if not redis_available():
        raise SystemExit("redis-server is needed for the redis-hit case")

    work = Path(tempfile.mkdtemp(prefix="memoserve-bench-"))
    model = work / "iris.skops"
    iris = demo.train_iris()
    skops.io.dump(iris, model)
    if not args.no_mlflow:
        save_mlflow_model(iris, work / "iris-mlflow")
    cluster = SentinelCluster(work / "redis").start()
    body = json.dumps(ROW)
    post = {"method": "POST", "body": body, "headers": {"Content-Type": "application/json"}}
    base = {
        "MEMOSERVE_MODEL_URI": str(model),
        "MEMOSERVE_WORKERS": str(args.workers),
        "MEMOSERVE_MODEL_POLL_SECONDS": "0",
        "MEMOSERVE_ACCESS_LOG": "false",
        "MEMOSERVE_REDIS_SENTINELS": cluster.sentinel_addresses,
    }
    cases = {
        "hello": ("loadtest.hello_app:create_app()", {}, {}),
        "l1-hit": (APP, base, post),
        "redis-hit": (APP, {**base, "MEMOSERVE_L1_ENABLED": "false"}, post),
        "miss": (
            APP,
            base,
            {**post, "headers": {**post["headers"], "Cache-Control": "no-cache, no-store"}},
        ),
    }
    redis_hit = {**base, "MEMOSERVE_L1_ENABLED": "false"}
    if not args.no_variants:
        for variant in ("asyncio", "h11"):
            worker = f"-k loadtest.workers.{variant.title()}Worker"
            cases[f"redis-hit-{variant}"] = (APP, {**redis_hit, "GUNICORN_CMD_ARGS": worker}, post)
        off = {**redis_hit, "MEMOSERVE_REDIS_PIPELINED_LOOKUPS": "false"}
        cases["redis-hit-redis-py"] = (APP, off, post)
    seed_env = {
        "SEED_MODEL": str(model),
        "SEED_REDIS_PORT": str(cluster.current_master_port()),
        "MEMOSERVE_WORKERS": str(args.workers),
    }
    seed_post = {**post, "body": json.dumps(SEED_ROW)}
    cases["seed"] = ("loadtest.seed_app:create_app()", seed_env, seed_post)
    results: dict[str, dict[str, list[float]]] = {}
    if not args.no_mlflow:
        cases["mlflow"] = ("", {}, post)
    hello_env = {"MEMOSERVE_WORKERS": str(args.workers)}
    try:
        for name, (app, env, request) in cases.items():
            if name == "mlflow":
                server = mlflow_models_serve(work / "iris-mlflow", work, name)
            else:
                server = gunicorn(
                    app,
                    env if name == "seed" else {**base, **env} if env else hello_env,
                    work,
                    name,
                )
            with server as url:
                path = {"hello": "/", "seed": "/predict"}.get(name, "/invocations")
                target = url + path
                wrk(target, seconds=1, connections=4, **request)  # warm up, fill the cache
                for _ in range(args.rounds):
                    tput: Result = wrk(
                        target, seconds=args.seconds, connections=args.connections, **request
                    )
                    lat = wrk(target, seconds=args.seconds / 2, connections=1, **request)
                    if tput.errors or lat.errors:
                        raise SystemExit(f"{name}: {tput.errors + lat.errors} failed requests")
                    r = results.setdefault(name, {"rps": [], "p50": [], "p99": [], "lat": []})
                    r["rps"].append(tput.rps)
                    r["p50"].append(tput.p50_ms)
                    r["p99"].append(tput.p99_ms)
                    r["lat"].append(lat.p50_ms)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    hello = median(results["hello"]["rps"])
    print(
        f"\nmedians of {args.rounds} rounds; {args.workers} worker(s), "
        f"{args.connections} connections, wrk on the same 2 cores"
    )
    print(
        f"{'case':<18} {'req/s':>9} {'vs hello':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'1-conn p50 ms':>14}"
    )
    for name, r in results.items():
        rps = median(r["rps"])
        print(
            f"{name:<18} {rps:>9.0f} {rps / hello:>9.2f} {median(r['p50']):>8.2f} "
            f"{median(r['p99']):>8.2f} {median(r['lat']):>14.2f}"
        )
    ratios = {f"{n} rps/hello": median(r["rps"]) / hello for n, r in results.items()}
    save_results("bench_hit", args, results, ratios=ratios)
    if "mlflow" in results:
        base_lat = median(results["mlflow"]["lat"])
        print(
            "1-connection latency of mlflow models serve over memoserve's: "
            + ", ".join(
                f"{n} {base_lat / median(results[n]['lat']):.1f}x"
                for n in ("l1-hit", "redis-hit", "miss")
            )
        )


def save_mlflow_model(model: object, path: Path) -> None:
    """``model`` as an MLflow model directory with the iris signature."""
    import warnings

    import mlflow.sklearn
    from mlflow.models import infer_signature

    from memoserve_models.registry import SKOPS_TRUSTED_TYPES

    x, _ = demo.iris_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            model,
            str(path),
            signature=infer_signature(x, model.predict(x)),  # type: ignore[attr-defined]
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )


if __name__ == "__main__":
    main()
