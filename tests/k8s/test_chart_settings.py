"""The environment the chart gives memoserve is exactly what `service/settings.py` reads.

`Settings` is imported at test time, so a field added to the service without the chart (or a
chart variable the service no longer reads) fails here.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
import yaml
from k8s_manifests import (
    HelmTemplate,
    Manifest,
    Render,
    containers,
    env_names,
    get,
    pod_template,
)
from k8s_tools import CHART, SCENARIOS

from service.settings import Settings

pytestmark = pytest.mark.k8s

PREFIX = "MEMOSERVE_"
SETTINGS_ENV = {PREFIX + field.upper() for field in Settings.model_fields}
# Variables the chart sets that are not memoserve settings, each for a reason.
ALLOWED_OTHER_ENV = {
    "MLFLOW_TRACKING_URI",  # mlflow's client, and Settings' fallback for the tracking URI
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus_client's multiprocess registry
    "PYTHONUNBUFFERED",
    # mlflow's client sends these as basic auth to an MLflow with `mlflow.auth` (its own
    # variables, so no Settings field: the registry client is mlflow's, not memoserve's)
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
}
ALLOWED_OTHER_PREFIXES = ("OTEL_",)  # the OpenTelemetry SDK's standard variables
# Settings the chart computes from other values instead of taking them from `config:`.
DERIVED = {
    "bind": "containerPort",
    "metrics_bind": "metricsPort",
    "model_cache_dir": "modelCache.mountPath",
    "mlflow_tracking_uri": "mlflow.enabled / mlflow.external.trackingUri",
    "webhook_secret": "webhookSecret / existingSecret",
    "redis_url": "redis.external.url / existingSecret",
    "redis_sentinels": "redis.mode / redis.external.sentinels",
    "redis_cluster_nodes": "redis.mode / redis.external.clusterNodes",
    "redis_master_name": "redis.sentinel.masterName / redis.external.masterName",
    "redis_password": "redis.auth.password / redis.external.password / existingSecret",
    "redis_sentinel_password": "redis.auth.password / redis.external.sentinelPassword",
    "redis_tls": "redis.tls.enabled / redis.external.tls",
    "redis_username": "redis.acl.username / redis.external.username",
    "redis_sentinel_username": "redis.external.sentinelUsername",
    "redis_sentinel_tls": "redis.tls.enabled / redis.external.sentinelTls",
    "redis_tls_ca_file": "the mounted ca.crt of redis.tls.existingSecret / external.tlsCaSecret",
    # the in-chart Redis asks for no client certificate; another can get them through extraEnv
    "redis_tls_cert_file": "always empty",
    "redis_tls_key_file": "always empty",
}
SECRET_SETTINGS = {"webhook_secret", "redis_url", "redis_password", "redis_sentinel_password"}


def memoserve_env(manifests: list[Manifest]) -> set[str]:
    deployment = get(manifests, "Deployment", "memoserve")
    (server,) = [
        c for c in containers(pod_template(deployment)["spec"]) if c["name"] == "memoserve"
    ]
    return env_names(server, manifests)


def test_default_render_sets_exactly_the_settings_fields(default: list[Manifest]) -> None:
    env = memoserve_env(default)
    memoserve = {name for name in env if name.startswith(PREFIX)}
    assert sorted(SETTINGS_ENV - memoserve) == [], "settings the chart never sets"
    assert sorted(memoserve - SETTINGS_ENV) == [], "variables the service ignores"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_scenario_sets_a_variable_nobody_reads(render: Render, scenario: str) -> None:
    env = memoserve_env(render(scenario))
    unknown = {
        name
        for name in env - SETTINGS_ENV
        if name not in ALLOWED_OTHER_ENV and not name.startswith(ALLOWED_OTHER_PREFIXES)
    }
    assert unknown == set()


def test_secrets_come_from_the_secret_and_the_rest_from_the_configmap(
    default: list[Manifest],
) -> None:
    deployment = get(default, "Deployment", "memoserve")
    (server,) = pod_template(deployment)["spec"]["containers"]
    from_secret = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in server["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    mlflow_auth = {
        name: from_secret.pop(name)
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    }
    assert {ref["name"] for ref in mlflow_auth.values()} == {"memoserve-mlflow-auth"}
    assert set(from_secret) == {PREFIX + name.upper() for name in SECRET_SETTINGS}
    assert all(ref["name"] == "memoserve" for ref in from_secret.values())
    data = get(default, "ConfigMap", "memoserve")["data"]
    assert not any(PREFIX + name.upper() in data for name in SECRET_SETTINGS)


def test_every_settings_field_is_settable_from_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    configurable = set(schema["properties"]["config"]["properties"])
    assert schema["properties"]["config"]["additionalProperties"] is False
    assert configurable == set(values["config"]), "values.yaml and its schema disagree"
    assert configurable.isdisjoint(DERIVED)
    assert sorted(set(Settings.model_fields) - configurable - set(DERIVED)) == []
    assert sorted((configurable | set(DERIVED)) - set(Settings.model_fields)) == []


def settings_from(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings() as the pod would build them (Secrets decoded as the kubelet does)."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for key, value in get(manifests, "ConfigMap", "memoserve")["data"].items():
        monkeypatch.setenv(key, value)
    deployment = get(manifests, "Deployment", "memoserve")
    (server,) = pod_template(deployment)["spec"]["containers"]
    secrets = {s["metadata"]["name"]: s.get("data", {}) for s in manifests if s["kind"] == "Secret"}
    for item in server["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["key"] in secrets.get(ref["name"], {}):
            monkeypatch.setenv(
                item["name"], base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
            )
    return Settings()


def test_default_values_parse_as_settings(
    default: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(default, monkeypatch)
    assert settings.max_body_bytes == 1_048_576  # not "1.048576e+06"
    assert settings.model_uri == "models:/iris@champion"
    assert len(settings.sentinel_addresses) == 3
    assert settings.redis_password is not None
    assert settings.redis_password == settings.redis_sentinel_password
    assert settings.redis_url == ""


def test_production_settings_pass_the_production_checks(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render(None, "config.environment=production")
    settings = settings_from(manifests, monkeypatch)
    assert settings.environment == "production"
    assert settings.webhook_secret.get_secret_value() != "memoserve-dev-webhook-secret"


def test_external_cluster_nodes_select_the_cluster_mode(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = "redis.external.clusterNodes={c0:7000,c1:7001}"
    settings = settings_from(render(None, "redis.mode=external", nodes), monkeypatch)
    assert settings.cluster_addresses == [("c0", 7000), ("c1", 7001)]
    assert (settings.redis_sentinels, settings.redis_url) == ("", "")


def test_two_external_redis_modes_fail_the_render(helm_template: HelmTemplate) -> None:
    external = {"clusterNodes": ["c0:7000"], "sentinels": ["s0:26379"]}
    done = helm_template({"redis": {"mode": "external", "external": external}})
    assert done.returncode != 0
    assert "set one of sentinels, clusterNodes and url" in done.stderr


def test_cluster_mode_runs_a_cluster_and_points_memoserve_at_its_nodes(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render("redis-cluster")
    settings = settings_from(manifests, monkeypatch)
    hosts = [host for host, _ in settings.cluster_addresses]
    assert hosts == [
        f"memoserve-redis-cluster-{i}.memoserve-redis-cluster-headless" for i in range(6)
    ]
    assert settings.redis_sentinels == "" and settings.redis_password is not None
    cluster = get(manifests, "StatefulSet", "memoserve-redis-cluster")
    assert cluster["spec"]["replicas"] == 6
    job = get(manifests, "Job", "memoserve-redis-cluster-bootstrap")
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    script = get(manifests, "ConfigMap", "memoserve-redis-cluster-scripts")["data"]
    assert "--cluster-replicas 1 --cluster-yes" in script["bootstrap.sh"]
    assert "requirepass ${REDIS_PASSWORD}" in script["init.sh"]  # never on a command line
    assert not [m for m in manifests if m["metadata"]["name"] == "memoserve-redis"]
