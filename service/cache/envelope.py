"""The frame of a value in a shared cache: a marker, a checksum, then the row's JSON.

A garbled, truncated or foreign value (written by another program, by hand, or torn by a
fault) fails the check and is a miss, recomputed and overwritten; a hit never decodes JSON.
"""

from __future__ import annotations

from zlib import crc32

MAGIC = b"\xa5\x01"
"""Marker and format version 1."""

_HEADER = len(MAGIC) + 4


def seal(payload: bytes) -> bytes:
    """``payload`` framed for storage."""
    return MAGIC + crc32(payload).to_bytes(4, "big") + payload


def unseal(value: bytes) -> bytes | None:
    """The payload of a framed value, or None when the value is not one intact frame."""
    if value[:2] != MAGIC or len(value) <= _HEADER:
        return None
    payload = value[_HEADER:]
    if crc32(payload).to_bytes(4, "big") != value[2:_HEADER]:
        return None
    return payload
