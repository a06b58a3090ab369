"""gunicorn configuration from ``MEMOSERVE_*`` settings (``-c python:service.gunicorn_conf``)."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from service.models.replica_fence import REPLICA_FENCE_ENV
from service.observability.logs import gunicorn_logconfig
from service.settings import Settings

_settings = Settings()
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>

bind = [_settings.bind] + ([_settings.metrics_bind] if _settings.metrics_bind else [])
workers = _settings.workers
worker_class = "service.workers.MemoserveWorker"
graceful_timeout = _settings.graceful_timeout
timeout = 120  # a model load in a fresh worker may take a while
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = gunicorn_logconfig(_settings.log_level)  # gunicorn's own lines as JSON too
# Several gunicorns on one host (replicas in `make run`, tests) must not share one socket.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Give the workers one Prometheus multiprocess directory, emptied of a previous run."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="memoserve-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    # The workers of this replica share the version the newest of them serves (see
    # service.models.replica_fence), one file per arm; a previous run's are not this one's.
    fence = directory / "replica-fence"
    for stale in directory.glob("replica-fence*"):
        stale.unlink(missing_ok=True)
    os.environ[REPLICA_FENCE_ENV] = str(fence)
    if _settings.preload_libraries:
        preload_libraries()


# What loading and serving a model imports; none of it starts a thread (checked in its test),
# so it is safe to import before the fork. The app itself is not preloaded: each worker builds
# its own event loop, Redis pools and model.
PRELOADED = ("numpy", "pandas", "sklearn.ensemble", "skops.io", "mlflow.sklearn", "mlflow.pyfunc")


def preload_libraries() -> None:
    """Import the model libraries in the master, so every worker forks with them loaded."""
    for name in PRELOADED:
        importlib.import_module(name)


def post_fork(server: Any, worker: Any) -> None:
    """Per-worker set-up that is not fork-safe (tracing exporters) goes here."""
    from service.observability import setup_worker

    exit_with_master(server.pid)
    setup_worker(_settings)


def exit_with_master(master_pid: int) -> None:
    """Have the kernel send this worker SIGTERM (a graceful stop) when its master dies: a
    master killed with SIGKILL would otherwise leave it serving, orphaned (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: gunicorn's own checks remain
        return
    if os.getppid() != master_pid:  # the master died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
