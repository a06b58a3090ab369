"""Shared pieces of the benchmarks: wrk runs, servers on loopback, medians."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    free_port,
    spawn,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]

_LUA = """
wrk.method = %(method)s
wrk.body = %(body)s
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50_us\\":%%d,\\"p99_us\\":%%d," ..
    "\\"errors\\":%%d,\\"non2xx\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Result:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(
    url: str,
    *,
    method: str = "GET",
    body: str = "",
    headers: Mapping[str, str] | None = None,
    seconds: float = 5.0,
    connections: int = 16,
    threads: int = 1,
) -> Result:
    """Run wrk against ``url`` (loopback only) and parse its summary."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError("benchmarks only send traffic to loopback")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (make bench installs it as root)")
    header_lines = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()
    )
    script = _LUA % {
        "method": json.dumps(method),
        "body": json.dumps(body),
        "headers": header_lines,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"] + data["non2xx"],
    )


@contextmanager
def gunicorn(app: str, env: Mapping[str, str], workdir: Path, name: str) -> Iterator[str]:
    """Serve ``app`` (``module:factory()``) with memoserve's gunicorn config; yields the URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MEMOSERVE_BIND": f"{LOOPBACK}:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"{name}-prom"),
        **env,
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", app]
    proc: Proc = spawn(name, argv, workdir, port, full_env)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: _ready(url), 90, f"{name} ready")
        yield url
    finally:
        proc.stop()


@contextmanager
def mlflow_models_serve(model_dir: Path, workdir: Path, name: str) -> Iterator[str]:
    """The same model behind ``mlflow models serve`` (one worker, this environment): the
    server memoserve is a drop-in for. Yields the URL."""
    port = free_port()
    argv = [
        str(Path(sys.executable).with_name("mlflow")),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-h",
        LOOPBACK,
        "-p",
        str(port),
        "-w",
        "1",
    ]
    # mlflow execs `uvicorn` by name: the venv's bin must be on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore"}
    proc: Proc = spawn(name, argv, workdir, port, env)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: _ready(url), 120, f"{name} ready", proc=proc)
        yield url
    finally:
        proc.stop()


def _ready(url: str) -> bool:
    import urllib.request

    for path in ("/readyz", "/ping", "/"):
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return True
        except Exception:  # noqa: BLE001, S112 - try the next path
            continue
    return False


def median(values: list[float]) -> float:
    """Median, for quoting noisy runs."""
    return statistics.median(values)


RESULTS = REPO / "loadtest" / "results"


def save_results(
    bench: str, args: object, cases: Mapping[str, Mapping[str, list[float]]], **extra: object
) -> Path:
    """Write ``loadtest/results/<bench>.json``: the arguments, every round of every case and its
    medians (what ``loadtest.report`` turns into the README's Performance tables)."""
    import datetime
    import platform

    RESULTS.mkdir(exist_ok=True)
    data = {
        "bench": bench,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "args": vars(args) if hasattr(args, "__dict__") else args,
        "cases": {
            name: {
                **{f"median_{k}": median(v) for k, v in metrics.items() if v},
                "rounds": dict(metrics),
            }
            for name, metrics in cases.items()
        },
        **extra,
    }
    path = RESULTS / f"{bench}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    return path
