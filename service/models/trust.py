"""What a model artifact may make this process run: the model loading policy.

A registry write must not become code on every replica. With ``MEMOSERVE_MODEL_TRUST=skops``
(the default) only scikit-learn models saved with skops load, and memoserve loads the
``.skops`` file itself, trusting only ``MEMOSERVE_MODEL_SKOPS_TRUSTED_TYPES`` (never the types
an artifact's own MLmodel names). Pickle and cloudpickle models, the pyfunc flavour (its
``python_model`` or ``loader_module`` is code) and joblib/pickle files are refused.
``MEMOSERVE_MODEL_TRUST=pickle`` loads them all, as MLflow does: only for a registry whose
every writer may run code on the replicas.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

#: Types the demo's trees, forests and linear models need beyond what skops trusts itself.
DEFAULT_SKOPS_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)


class ModelTrust(StrEnum):
    """``skops``: data-only artifacts; ``pickle``: anything MLflow or joblib can load."""

    SKOPS = "skops"
    PICKLE = "pickle"


class ModelRefused(ValueError):
    """The artifact is not loaded: the policy or its digest says no (a load failure)."""


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """How artifacts may be loaded; built from settings, applied once per process."""

    trust: ModelTrust = ModelTrust.SKOPS
    skops_trusted_types: tuple[str, ...] = DEFAULT_SKOPS_TRUSTED_TYPES
    require_digest: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> TrustPolicy:
        """The policy ``MEMOSERVE_MODEL_TRUST`` and its companions name."""
        return cls(
            trust=ModelTrust(settings.model_trust),
            skops_trusted_types=parse_types(settings.model_skops_trusted_types),
            require_digest=settings.model_require_digest,
        )

    @property
    def allows_pickle(self) -> bool:
        """Whether pickle, cloudpickle, pyfunc code and joblib files may load."""
        return self.trust is ModelTrust.PICKLE

    def apply_to_process(self) -> None:
        """Tell MLflow itself not to unpickle anything unless pickle is trusted (MLflow reads
        ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` at each load)."""
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = (
            "true" if self.allows_pickle else "false"
        )

    def refuse_unless_pickle(self, what: str) -> None:
        """Raise ``ModelRefused`` for ``what`` (an artifact that is code) unless trusted."""
        if not self.allows_pickle:
            raise ModelRefused(
                f"refusing to load {what}: loading it runs code the artifact carries. "
                f"MEMOSERVE_MODEL_TRUST is {self.trust.value!r}; save the model with skops "
                "(mlflow.sklearn.log_model(..., serialization_format='skops')) or set "
                "MEMOSERVE_MODEL_TRUST=pickle if every registry writer may run code here"
            )

    def load_skops(self, file: Path) -> Any:
        """The object in a ``.skops`` file, if every type it needs is trusted here."""
        import skops.io

        untrusted = list(skops.io.get_untrusted_types(file=str(file)))
        refused = sorted(t for t in untrusted if t not in self.skops_trusted_types)
        if refused and not self.allows_pickle:
            raise ModelRefused(
                f"refusing to load {file.name}: it needs types that are not trusted: "
                f"{', '.join(refused)}. Add them to MEMOSERVE_MODEL_SKOPS_TRUSTED_TYPES "
                f"(now {','.join(self.skops_trusted_types) or 'empty'}) only if loading them "
                f"runs no code (MEMOSERVE_MODEL_TRUST is {self.trust.value!r})"
            )
        return skops.io.load(str(file), trusted=untrusted)


def parse_types(value: str | Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list of type names (or a list), blanks dropped."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(t.strip() for t in items if t.strip())
