"""The ``Cache-Control`` request directives memoserve honours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The request's ``Cache-Control`` directives that matter here."""

    no_cache: bool = False
    no_store: bool = False

    @classmethod
    def parse(cls, header: str | None) -> CacheControl:
        """Directives from a header value (case-insensitive, comma-separated)."""
        if not header:
            return NO_DIRECTIVES
        tokens = {t.strip().lower() for t in header.split(",")}
        return cls("no-cache" in tokens, "no-store" in tokens)


NO_DIRECTIVES = CacheControl()
"""A request without ``Cache-Control``: look up and store."""
