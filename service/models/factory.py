"""Pick the model source a URI names."""

from __future__ import annotations

from service.models.local import LocalModelSource
from service.models.source import ModelSource
from service.models.trust import TrustPolicy
from service.settings import Settings


def build_source(settings: Settings) -> ModelSource:
    """``models:/...`` → the MLflow registry; anything else → a local path."""
    uri = settings.model_uri
    if not uri:
        raise ValueError("set MEMOSERVE_MODEL_URI (models:/name@alias, or a local model path)")
    policy = TrustPolicy.from_settings(settings)
    policy.apply_to_process()
    if uri.startswith("models:/"):
        from service.models.mlflow import MlflowModelSource

        return MlflowModelSource.from_settings(settings, policy)
    return LocalModelSource(
        uri, name=settings.model_name, version=settings.model_version, policy=policy
    )
