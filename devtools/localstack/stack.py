"""`make run`: MLflow (sqlite), Redis master + replica + 3 Sentinels (or, with
`REDIS=cluster`, a 3-primary + 3-replica Redis Cluster), and several replicas."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    Replica,
    SentinelCluster,
    free_port,
    redis_available,
    start_mlflow,
    start_replica,
)
from devtools.localstack.redis_cluster import RedisClusterProcs
from service.settings import DEV_WEBHOOK_SECRET

log = logging.getLogger("memoserve.stack")
BANNER = "=" * 78


def run_stack(
    replicas: int, workers: int, first_port: int, workdir: str, *, redis: str = "sentinel"
) -> int:
    """Start everything, print how to use it, and stop it all on Ctrl-C; ``redis`` is
    ``sentinel`` or ``cluster``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    root = Path(workdir).resolve()
    stopping: list[Proc | Replica | SentinelCluster | RedisClusterProcs] = []

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background
    try:
        log.info("starting MLflow (sqlite registry under %s)", root / "mlflow")
        mlflow = start_mlflow(root / "mlflow", port=_port_or_free(5000))
        stopping.append(mlflow)
        tracking = f"http://{LOOPBACK}:{mlflow.port}"
        _cli("demo", tracking)

        env = {
            "MEMOSERVE_MODEL_URI": "models:/iris@champion",
            "MEMOSERVE_MLFLOW_TRACKING_URI": tracking,
            "MEMOSERVE_WORKERS": str(workers),
            "MEMOSERVE_MODEL_CACHE_DIR": str(root / "model-cache"),
            "MEMOSERVE_MODEL_POLL_SECONDS": "15",
            # Sample every looked-up row into the hot set, so that the few rows a demo sends are
            # warmed on the new version before a promotion (production samples 5%).
            "MEMOSERVE_HOT_SAMPLE_RATE": "1",
        }
        redis_note = ""
        if redis_available() and redis == "cluster":
            nodes = RedisClusterProcs(root / "redis-cluster").start()
            stopping.append(nodes)
            env["MEMOSERVE_REDIS_CLUSTER_NODES"] = nodes.nodes
            redis_note = f"Redis Cluster (3 primaries + 3 replicas): {nodes.nodes}"
        elif redis_available():
            cluster = SentinelCluster(root / "redis").start()
            stopping.append(cluster)
            env["MEMOSERVE_REDIS_SENTINELS"] = cluster.sentinel_addresses
            redis_note = f"Redis Sentinels: {cluster.sentinel_addresses} (master 'mymaster')"
        else:
            redis_note = "NO redis-server: each worker caches IN-PROCESS only (not shared)."
            log.warning(BANNER + "\n%s\n" + BANNER, redis_note)

        urls = []
        for i in range(replicas):
            log.info("starting replica %d", i + 1)
            replica = start_replica(
                f"replica-{i + 1}", root / "replicas", env, port=first_port + i, timeout=120
            )
            stopping.append(replica)
            urls.append(replica.url)
        _cli("webhook", tracking, f"{urls[0]}/v1/webhooks/mlflow", "--secret", DEV_WEBHOOK_SECRET)

        print(_usage(urls, tracking, redis_note, root), flush=True)
        while True:
            time.sleep(1)
            for p in stopping:
                proc = p.proc if isinstance(p, Replica) else p
                if isinstance(proc, Proc) and not proc.alive():
                    log.error("%s exited; see %s", proc.name, proc.log)
                    return 1
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    finally:
        # A second Ctrl-C (or make's SIGTERM after the terminal's SIGINT) must not cut the
        # clean-up short and orphan MLflow and Redis; each stop below is bounded.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for p in reversed(stopping):
            p.stop()


def _port_or_free(port: int) -> int:
    """``port`` if nothing listens there (a stable UI address), else any free port."""
    with socket.socket() as s:
        if s.connect_ex((LOOPBACK, port)) != 0:
            return port
    return free_port()


def _cli(*args: str) -> None:
    action, tracking, *rest = args
    cmd = [sys.executable, "-m", "memoserve_models.cli", "--tracking-uri", tracking, action, *rest]
    subprocess.run(cmd, check=True)  # noqa: S603 - fixed argv


def _usage(urls: list[str], tracking: str, redis_note: str, root: Path) -> str:
    first = urls[0]
    body = (
        '{"dataframe_split": {"columns": ["sepal length (cm)", "sepal width (cm)", '
        '"petal length (cm)", "petal width (cm)"], "data": [[5.1, 3.5, 1.4, 0.2]]}}'
    )
    lines = [
        BANNER,
        "memoserve local stack is up",
        *(f"  replica {i + 1}: {u}" for i, u in enumerate(urls)),
        f"  MLflow:    {tracking}   (UI and registry)",
        f"  {redis_note}",
        f"  logs:      {root}",
        "",
        "Try (run twice: MISS, then HIT; the second replica hits too):",
        f"  curl -si {first}/invocations -H 'Content-Type: application/json' -d '{body}'",
        "Promote a new version (every replica switches in about half a second):",
        f"  .venv/bin/memoserve model --tracking-uri {tracking} register iris --label-shift 1",
        f"  .venv/bin/memoserve model --tracking-uri {tracking} promote iris 2",
        "Ctrl-C stops everything.",
        BANNER,
    ]
    return "\n".join(lines)
