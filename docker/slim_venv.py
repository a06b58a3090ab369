"""Slim the image's virtualenv after `pip install`: the Dockerfile's deps stage runs this.

What the service never reads goes, and what it reads at every start is compiled once here:

1. the packages' own test suites, type stubs, Cython and C sources;
2. symbols of shared objects that auditwheel never rewrote (`strip` breaks the ones it did:
   the vendored `*.libs/` and anything with an RPATH, e.g. numpy's OpenBLAS);
3. duplicate files (the same vendored libgfortran in numpy.libs and scipy.libs) as hard links;
4. bytecode for what serving imports: the imports below, run once, write it. Compiling all of
   site-packages would add ~90 MB that no request touches; without any, each worker spends
   ~7 s more compiling at every start (the root filesystem is read-only, so nothing is kept);
5. for the model stack only (numpy, scipy, pandas, scikit-learn, MLflow and their helpers),
   that bytecode *instead of* the source of the modules it covers: ~37 MB less, and a
   traceback through those frames names file, line and function but shows no source text.
   The web and cache stack (FastAPI, Starlette, uvicorn, gunicorn, redis, pydantic,
   OpenTelemetry) keeps its source, as does the service in /app.

Usage: python slim_venv.py /opt/venv
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The serving closure: the app, its gunicorn workers, and loading an MLflow sklearn or pyfunc
# model (what the tests measure as the cold start). A module missing here only costs time.
SERVING_IMPORTS = (
    "fastapi",
    "gunicorn.app.wsgiapp",
    "gunicorn.workers.base",
    "uvicorn.main",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn_worker",
    "redis.asyncio.sentinel",
    "hiredis",
    "orjson",
    "pydantic.v1",
    "pydantic_settings",
    "prometheus_client.multiprocess",
    "numpy",
    "pandas",
    "joblib",
    "sklearn.ensemble",
    "sklearn.datasets",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "mlflow.artifacts",
    "mlflow.models",
    "skops.io",
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.instrumentation.fastapi",
)
BYTECODE_ONLY = ("numpy", "scipy", "pandas", "sklearn", "mlflow", "narwhals", "joblib", "skops")
DEV_ONLY_SUFFIXES = (".pyi", ".pyx", ".pxd", ".c", ".cpp", ".h")


def main(venv: Path) -> None:
    (site,) = venv.glob("lib/python3.*/site-packages")
    steps = [
        ("test suites, stubs, C sources", lambda: drop_dev_files(site)),
        ("symbols of shared objects", lambda: strip_shared_objects(site)),
        ("duplicate files", lambda: link_duplicates(site)),
        ("bytecode of the serving imports", lambda: compile_serving_imports(venv)),
        ("model stack as bytecode only", lambda: bytecode_only(site, BYTECODE_ONLY)),
    ]
    for what, step in steps:
        before = size(site)
        step()
        print(f"slim_venv: {what}: {(size(site) - before) / 1e6:+.1f} MB", flush=True)
    print(f"slim_venv: site-packages is {size(site) / 1e6:.1f} MB", flush=True)


def drop_dev_files(site: Path) -> None:
    for tests in sorted(site.glob("*/**/tests"), key=lambda p: -len(p.parts)):
        if tests.is_dir():
            shutil.rmtree(tests)
    for path in site.rglob("*"):
        if path.suffix in DEV_ONLY_SUFFIXES and path.is_file():
            path.unlink()


def strip_shared_objects(site: Path) -> None:
    for path in site.rglob("*.so*"):
        if not path.is_file() or path.is_symlink() or path.parent.name.endswith(".libs"):
            continue
        dynamic = subprocess.run(
            ["readelf", "-d", str(path)], capture_output=True, text=True, check=True
        ).stdout
        if "(RPATH)" in dynamic or "(RUNPATH)" in dynamic:
            continue
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)


def link_duplicates(site: Path) -> None:
    seen: dict[tuple[int, str], Path] = {}
    for path in sorted(site.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.stat().st_size < 65536:
            continue
        key = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        first = seen.setdefault(key, path)
        if first != path:
            path.unlink()
            os.link(first, path)


def compile_serving_imports(venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import " + ", ".join(SERVING_IMPORTS)
    subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, check=True)


def bytecode_only(site: Path, packages: tuple[str, ...]) -> None:
    """Each compiled module's bytecode moves to where its source was, and the source goes."""
    tag = sys.implementation.cache_tag
    for package in packages:
        for cache in (site / package).rglob("__pycache__"):
            for pyc in cache.glob(f"*.{tag}.pyc"):
                source = cache.parent / (pyc.name.removesuffix(f".{tag}.pyc") + ".py")
                if source.is_file():
                    pyc.rename(source.with_suffix(".pyc"))
                    source.unlink()
            if not any(cache.iterdir()):
                cache.rmdir()


def size(root: Path) -> int:
    seen: set[int] = set()
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            if stat.st_ino not in seen:
                seen.add(stat.st_ino)
                total += stat.st_size
    return total


if __name__ == "__main__":
    main(Path(sys.argv[1]))
