"""Settings refuse unsafe production values and two Redis modes, and parse node lists."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_production_refuses_the_dev_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="MEMOSERVE_WEBHOOK_SECRET"):
        Settings(environment="production", redis_url="redis://r:6379")


def test_production_needs_a_shared_cache() -> None:
    with pytest.raises(ValidationError, match="REDIS"):
        Settings(environment="production", webhook_secret="s" * 32)


def test_production_refuses_a_webhook_secret_under_32_bytes() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(environment="production", redis_url="redis://r:6379", webhook_secret="s" * 31)
    for secret in ("s" * 32, "é" * 16):  # bytes count, not characters
        Settings(environment="production", redis_url="redis://r:6379", webhook_secret=secret)
    assert Settings(webhook_secret="short").webhook_secret.get_secret_value() == "short"  # dev


def test_sentinel_addresses_and_empty_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOSERVE_REDIS_SENTINELS", "a:26379, [::1]:26380")
    monkeypatch.setenv("MEMOSERVE_REDIS_PASSWORD", "")
    s = Settings()
    assert s.sentinel_addresses == [("a", 26379), ("::1", 26380)]
    assert s.redis_password is None


def test_unknown_output_is_refused() -> None:
    with pytest.raises(ValidationError, match="model_output"):
        Settings(model_output="transform")


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="_KEY_FILE together"):
        Settings(redis_tls_cert_file="/c.pem")


def test_tls_in_url_mode_needs_rediss() -> None:
    with pytest.raises(ValidationError, match="rediss://"):
        Settings(redis_url="redis://r:6379", redis_tls=True)
    assert Settings(redis_url="rediss://r:6379", redis_tls=True).redis_tls


def test_canary_and_shadow_are_other_aliases_of_a_registry_model() -> None:
    ok = Settings(
        model_uri="models:/iris@champion",
        model_canary_alias="challenger",
        model_shadow_alias="shadow",
    )
    assert (ok.model_canary_alias, ok.model_canary_percent) == ("challenger", 0.0)
    for bad, says in [
        ({"model_uri": "/models/iris.skops", "model_canary_alias": "c"}, "models:/name@alias"),
        ({"model_uri": "models:/iris/3", "model_shadow_alias": "s"}, "models:/name@alias"),
        ({"model_uri": "models:/iris@champion", "model_canary_alias": "champion"}, "differ"),
        (
            {"model_uri": "models:/iris@a", "model_canary_alias": "b", "model_shadow_alias": "b"},
            "differ",
        ),
        ({"model_uri": "models:/iris@a", "model_canary_percent": 101}, "less than or equal"),
    ]:
        with pytest.raises(ValidationError, match=says):
            Settings(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"redis_url": "redis://r", "redis_sentinels": "s:1"}, "URL and MEMOSERVE_REDIS_SENTINELS"),
        (
            {"redis_sentinels": "s:1", "redis_cluster_nodes": "c:1"},
            "SENTINELS and MEMOSERVE_REDIS_C",
        ),
        (
            {"redis_url": "redis://r", "redis_cluster_nodes": "c:1"},
            "URL and MEMOSERVE_REDIS_CLUSTER",
        ),
    ],
)
def test_two_redis_modes_are_refused_by_name(given: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError, match=f"set only one of MEMOSERVE_REDIS_{named}"):
        Settings(**given)


def test_cluster_nodes_are_parsed_and_count_as_a_shared_cache() -> None:
    s = Settings(
        environment="production",
        webhook_secret="s" * 32,
        redis_cluster_nodes="c1:7000, [::1]:7001",
    )
    assert s.cluster_addresses == [("c1", 7000), ("::1", 7001)]
