"""The sha256 digest of a model directory's files: recorded at registration, checked at load.

A leaf module (standard library only): ``memoserve_models.registry`` imports it, so that the
tag it records and the check the loader makes are computed by one function.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: The model-version tag that holds the digest.
DIGEST_TAG = "memoserve.artifact_sha256"
# MLflow writes this file into a download of ``models:/`` (name and version); not the artifact.
_NOT_ARTIFACT = frozenset({"registered_model_meta"})


def artifact_digest(path: Path) -> str:
    """Hex sha256 over every file under ``path`` (sorted relative names, each name and its
    bytes length-prefixed), or over one file's bytes."""
    h = hashlib.sha256()
    if not path.is_dir():
        h.update(path.read_bytes())
        return h.hexdigest()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel in _NOT_ARTIFACT:
            continue
        data = f.read_bytes()
        name = rel.encode()
        h.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
