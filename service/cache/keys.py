"""Cache keys: ``{ns}:{model}:{version}:{output}:{digest}``, one per canonical row."""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b


def key_prefix(namespace: str, model: str, version: str, output: str) -> str:
    """The part of a key shared by every row of one model version and output."""
    return f"{namespace}:{model}:{version}:{output}:"


def version_pattern(namespace: str, model: str, version: str) -> str:
    """A SCAN MATCH pattern covering every key of one model version (all outputs)."""
    return f"{_escape(namespace)}:{_escape(model)}:{_escape(version)}:*"


def row_digest(row_bytes: bytes) -> str:
    """BLAKE2b-128 of a row's canonical bytes, hex."""
    return blake2b(row_bytes, digest_size=16).hexdigest()


def row_keys(prefix: str, rows: Iterable[bytes]) -> list[str]:
    """One key per canonical row."""
    return [prefix + blake2b(r, digest_size=16).hexdigest() for r in rows]


def _escape(part: str) -> str:
    """Escape glob metacharacters so a name like ``a*b`` matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in part)
