"""The version the newest worker of a replica serves, shared by all its workers in 64 bytes
of a memory-mapped file.

Workers swap independently. A worker about to answer with a new version writes it here first;
every worker reads it before each answer and fences itself when it names another version than
its own. Pub/sub carries the same news between replicas, but a message can arrive after a
client's next request has reached a sibling worker: a read of shared memory cannot.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

REPLICA_FENCE_ENV = "MEMOSERVE_REPLICA_FENCE_FILE"
"""Set by the gunicorn master for its workers; absent (one process, no siblings) means none."""

_SIZE = 64
_MAX_VERSION = _SIZE - 9


def from_environment(arm: str = "champion") -> ReplicaFence | None:
    """The fence of an arm that the gunicorn master set up for its workers, if any (each arm
    swaps on its own, so each has its own file beside the champion's)."""
    path = os.environ.get(REPLICA_FENCE_ENV)
    if not path:
        return None
    return ReplicaFence(Path(path if arm == "champion" else f"{path}.{arm}"))


class ReplicaFence:
    """``publish`` before a swap; ``changed`` before an answer (one 8-byte read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self._seen = -1  # a worker that starts reads what its siblings serve already

    def close(self) -> None:
        """Unmap."""
        self._map.close()

    def publish(self, version: str) -> None:
        """Make ``version`` what this replica serves, before any worker answers with it."""
        data = version.encode()[:_MAX_VERSION]
        with self._locked():
            generation = self._generation() + 1
            self._map[8] = len(data)
            self._map[9 : 9 + len(data)] = data
            self._map[:8] = generation.to_bytes(8, "little")  # last: readers see it complete
        self._seen = generation

    def changed(self) -> str | None:
        """The version published since this worker last looked, or None."""
        generation = self._generation()
        if generation == self._seen:
            return None
        self._seen = generation
        return self.published()

    def published(self) -> str | None:
        """The version last published, whether or not this worker has seen it."""
        if self._generation() == 0:
            return None
        return self._map[9 : 9 + self._map[8]].decode()

    def _generation(self) -> int:
        return int.from_bytes(self._map[:8], "little")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self.path.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
