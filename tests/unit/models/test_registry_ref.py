"""Registry URIs: an alias or a pinned version."""

from __future__ import annotations

import pytest

from service.models.mlflow import RegistryRef


def test_alias_and_version() -> None:
    assert RegistryRef.parse("models:/iris@champion") == RegistryRef("iris", alias="champion")
    assert RegistryRef.parse("models:/iris/3") == RegistryRef("iris", version="3")


@pytest.mark.parametrize("uri", ["models:/iris", "models:/iris/latest", "models:/@a", "s3://x"])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="models:/|registry URI"):
        RegistryRef.parse(uri)
