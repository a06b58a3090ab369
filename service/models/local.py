"""A model from the local filesystem: an MLflow model directory, a ``.skops`` or joblib file."""

from __future__ import annotations

from pathlib import Path

from service.models.artifact import content_digest, load_artifact
from service.models.loaded import LoadedModel
from service.models.source import ModelSource
from service.models.trust import TrustPolicy


class LocalModelSource(ModelSource):
    """Serves one path; its version is a digest of its bytes unless pinned, so edits re-key."""

    def __init__(
        self, path: str, *, name: str = "", version: str = "", policy: TrustPolicy | None = None
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self._pinned = version
        self.policy = policy or TrustPolicy()

    def resolve(self) -> str:
        return self._pinned or content_digest(self.path)

    def load(self, version: str) -> LoadedModel:
        predictor, schema = load_artifact(self.path, self.policy)
        return LoadedModel(self.name, version, schema, predictor, uri=str(self.path))
