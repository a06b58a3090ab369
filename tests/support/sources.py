"""A model source whose alias a test moves, and whose reads or loads a test can hold."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.models.loaded import LoadedModel
from service.models.source import ModelSource
from service.rows.canonical import CanonicalRows
from service.rows.schema import InputSchema


class VersionTimesSum:
    """Answers (row sum) × version, so every version gives its own answers."""

    outputs = ("predict",)

    def __init__(self, version: str, go: threading.Event | None = None) -> None:
        self.factor = float(version)
        self.go = go
        self.entered = threading.Event()
        """Set once a call has begun (it then waits for ``go``)."""

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]:
        self.entered.set()
        if self.go is not None:
            self.go.wait(5)
        return np.asarray(rows.values).sum(axis=1) * self.factor


class MovableAlias(ModelSource):
    """``m@champion`` in a registry the test controls; ``unreachable`` makes reads fail."""

    def __init__(self, version: str, *, width: int = 1) -> None:
        self.name = "m"
        self.registry_name = "m"
        self.alias = "champion"
        self.version = version
        self.width = width
        self.unreachable = False
        self.gates: dict[str, threading.Event] = {}
        self.slow_read: threading.Event | None = None
        self.reading = threading.Event()
        """Set once a slow read has begun."""
        self.reads = 0
        """Times the alias was read."""
        self._counting = threading.Lock()
        self.go = threading.Event()
        """Cleared, model calls of the versions this source loads wait until it is set."""
        self.go.set()
        self.siblings: dict[str, MovableAlias] = {}
        """The same model under other aliases (canary, shadow arms), by alias."""

    def resolve(self) -> str:
        with self._counting:  # reads come from threads
            self.reads += 1
        if self.unreachable:
            raise ConnectionError("registry unreachable")
        version = self.version  # what the registry said when asked...
        if self.slow_read is not None:
            gate, self.slow_read = self.slow_read, None
            self.reading.set()
            gate.wait(5)  # ...arrives late
        return version

    def for_alias(self, alias: str) -> MovableAlias:
        """``m@alias``: a test sets ``siblings[alias]`` first, or gets one on this version."""
        sibling = self.siblings.setdefault(alias, MovableAlias(self.version, width=self.width))
        sibling.alias = alias
        return sibling

    def load(self, version: str) -> LoadedModel:
        gate = self.gates.get(version)
        if gate is not None:
            gate.wait(5)
        schema = InputSchema.positional(self.width)
        return LoadedModel("m", version, schema, VersionTimesSum(version, self.go))
