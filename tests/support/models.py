"""Test models that a gunicorn worker can unpickle (the repo root is on its PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np


class CountingModel:
    """Predicts the row sum after ``delay`` seconds and appends one line per call to a file,
    so a test can count model calls across processes."""

    n_features_in_ = 4

    def __init__(self, calls_file: str, delay: float = 0.3) -> None:
        self.calls_file = calls_file
        self.delay = delay

    def predict(self, x: Any) -> Any:
        time.sleep(self.delay)
        with open(self.calls_file, "a") as f:
            f.write(f"{os.getpid()} {len(x)}\n")
        return np.asarray(x, dtype=float).sum(axis=1)


def calls(path: str | Path) -> list[int]:
    """Rows per recorded call."""
    p = Path(path)
    if not p.exists():
        return []
    return [int(line.split()[1]) for line in p.read_text().splitlines() if line.strip()]


class HangingModel:
    """Predicts the row sum at once, except for a row whose first value is ``trigger``: then
    the call blocks for ``hang_seconds`` (a model stuck in native code, say)."""

    n_features_in_ = 4

    def __init__(self, trigger: float = 666.0, hang_seconds: float = 5.0) -> None:
        self.trigger = trigger
        self.hang_seconds = hang_seconds

    def predict(self, x: Any) -> Any:
        values = np.asarray(x, dtype=float)
        if (values[:, 0] == self.trigger).any():
            time.sleep(self.hang_seconds)
        return values.sum(axis=1)
