"""Where model versions come from: the seam between the manager and a registry."""

from __future__ import annotations

from abc import ABC, abstractmethod

from service.models.loaded import LoadedModel


class ModelSource(ABC):
    """Resolves which version should serve and loads it; both may block, so run off the loop."""

    #: The model name requests address (``/v1/models/{name}``) and keys carry.
    name: str
    #: The registered model and alias a promotion event must name to concern this source.
    registry_name: str | None = None
    alias: str | None = None

    @abstractmethod
    def resolve(self) -> str:
        """The version that should serve now (cheap; called by the poll)."""

    @abstractmethod
    def load(self, version: str) -> LoadedModel:
        """Load ``version`` fully, ready to predict."""

    def for_alias(self, alias: str) -> ModelSource:
        """The same model under another alias (a canary or shadow arm); only a registry has
        aliases."""
        raise ValueError(f"{self.name!r} is not a registry model: it has no alias {alias!r}")
