"""Every Redis key and channel memoserve uses, from one ``KeySpace``.

The second segment says what a key is, so row entries and the keys that steer them never share
a prefix: a SCAN of one version's rows sees rows only, and a test can count them by prefix.

=========================================  =============================================
``{ns}:row:{model}:{version}:{output}:{d}``  one row's cached output (``d`` = BLAKE2b-128)
``{ns}:lock:{model}:{version}:{output}:{d}`` distributed single-flight lock of that row
``{ns}:hot:{model}:{version}:{output}``      sorted set of the version's hottest rows
``{ns}:active:{model}``                      the version the champion arm serves
``{ns}:active:{model}:{arm}``                the version another arm (canary, shadow) serves
``{ns}:purge:{model}:{version}:{attempt}``   lock of the replica purging a version
``{ns}:delivery:{d}``                        a webhook delivery id seen (``d`` = BLAKE2b-128)
``{ns}:events``                              the pub/sub channel of promotion events
=========================================  =============================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b

OUTPUTS = ("predict", "predict_proba")
"""Output kinds a model may offer; each has its own rows and hot set."""

ARMS = ("champion", "canary", "shadow")
"""Arms a replica may serve (``service.models.arms.Arm``); each publishes its own ``active``."""


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The key layout of one namespace (``MEMOSERVE_NAMESPACE``)."""

    namespace: str
    _row: str = field(init=False, repr=False, compare=False)
    _lock: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_row", f"{self.namespace}:row:")
        object.__setattr__(self, "_lock", f"{self.namespace}:lock:")

    def row_prefix(self, model: str, version: str, output: str) -> str:
        """The part of a row key shared by every row of one model version and output."""
        return f"{self._row}{model}:{version}:{output}:"

    @staticmethod
    def rows(prefix: str, row_bytes: Iterable[bytes]) -> list[str]:
        """One key per canonical row under ``prefix`` (from :meth:`row_prefix`)."""
        return [prefix + blake2b(r, digest_size=16).hexdigest() for r in row_bytes]

    def version_prefix(self, model: str, version: str) -> str:
        """The prefix of every row key of one model version (all outputs)."""
        return f"{self._row}{model}:{version}:"

    def version_pattern(self, model: str, version: str) -> str:
        """A SCAN MATCH pattern of exactly the row keys of one model version."""
        return f"{_escape(self.version_prefix(model, version))}*"

    def lock(self, row_key: str) -> str:
        """The distributed compute lock of a row key."""
        return self._lock + row_key.removeprefix(self._row)

    def hot(self, model: str, version: str, output: str) -> str:
        """The sorted set of one version's hottest rows."""
        return f"{self.namespace}:hot:{model}:{version}:{output}"

    def active(self, model: str, arm: str = "champion") -> str:
        """Where the version an arm of the replicas serves is published. The champion's key is
        the one of the layout before arms, so pods of both layouts see each other's."""
        if arm == "champion":
            return f"{self.namespace}:active:{model}"
        return f"{self.namespace}:active:{model}:{arm}"

    def actives(self, model: str) -> list[str]:
        """Every arm's ``active`` key of ``model``: a version named by any is not purged."""
        return [self.active(model, arm) for arm in ARMS]

    def purge_lock(self, model: str, version: str, attempt: str) -> str:
        """Held by the one replica purging ``version`` in that ``attempt``."""
        return f"{self.namespace}:purge:{model}:{version}:{attempt}"

    def delivery(self, delivery_id: str) -> str:
        """Marks a webhook delivery as handled (its id is hashed: any bytes make a key)."""
        digest = blake2b(delivery_id.encode(), digest_size=16).hexdigest()
        return f"{self.namespace}:delivery:{digest}"

    @property
    def events(self) -> str:
        """The pub/sub channel every worker of every replica listens on."""
        return f"{self.namespace}:events"


def _escape(part: str) -> str:
    """Escape glob metacharacters so a name like ``a*b`` matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in part)
