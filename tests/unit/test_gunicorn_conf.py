"""The gunicorn master's start-up hook, in a fresh interpreter (imports are process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys, threading
import service.gunicorn_conf as conf
conf.on_starting(None)
print(json.dumps({
    "loaded": [name for name in conf.PRELOADED if name in sys.modules],
    "threads": [t.name for t in threading.enumerate()],
}))
"""


def start_master(tmp_path: Path, preload: str) -> dict[str, list[str]]:
    env = {
        **os.environ,
        "MEMOSERVE_PRELOAD_LIBRARIES": preload,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("preload", ["true", "false"])
def test_the_master_imports_the_model_libraries_only_when_asked(
    tmp_path: Path, preload: str
) -> None:
    from service.gunicorn_conf import PRELOADED

    seen = start_master(tmp_path, preload)
    if preload == "true":
        assert seen["loaded"] == list(PRELOADED)
    else:
        assert not {"sklearn.ensemble", "mlflow.sklearn", "skops.io"} & set(seen["loaded"])
    # a thread running in the master at the fork would not exist in the workers (fork safety)
    assert seen["threads"] == ["MainThread"]
