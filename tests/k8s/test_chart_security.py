"""The chart's defaults restrict the network and the registry: every pod is selected by a
NetworkPolicy, each admits only its clients, and MLflow requires the login its clients send."""

from __future__ import annotations

import base64

import pytest
from k8s_manifests import (
    Manifest,
    Render,
    containers,
    get,
    matches,
    of_kind,
    pod_template,
    workloads,
)
from k8s_tools import CHART, SCENARIOS

pytestmark = pytest.mark.k8s

NAME = "memoserve"
MLFLOW = "memoserve-mlflow"
AUTH = f"{MLFLOW}-auth"
JOB = f"{NAME}-registry-setup"
DNS = {"kubernetes.io/metadata.name": "kube-system"}


def policy(manifests: list[Manifest], name: str) -> Manifest:
    spec: Manifest = get(manifests, "NetworkPolicy", name)["spec"]
    return spec


def labels(manifests: list[Manifest], kind: str, name: str) -> dict[str, str]:
    found: dict[str, str] = pod_template(get(manifests, kind, name))["metadata"]["labels"]
    return found


def env(manifests: list[Manifest], kind: str, name: str, container: str) -> dict[str, Manifest]:
    (item,) = [
        c
        for c in containers(pod_template(get(manifests, kind, name))["spec"])
        if c["name"] == container
    ]
    return {e["name"]: e for e in item.get("env", [])}


def peers_admit(peers: list[Manifest], pod_labels: dict[str, str]) -> bool:
    """Whether a same-namespace pod with `pod_labels` is among `peers`."""
    return any(
        set(peer) == {"podSelector"} and matches(peer["podSelector"]["matchLabels"], pod_labels)
        for peer in peers
    )


# --- network policies ----------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_is_selected_by_a_network_policy(render: Render, scenario: str) -> None:
    manifests = render(scenario)
    selectors = [
        p["spec"]["podSelector"]["matchLabels"] for p in of_kind(manifests, "NetworkPolicy")
    ]
    pods = [pod_template(w)["metadata"]["labels"] for w in workloads(manifests)]
    pods += [p["metadata"]["labels"] for p in of_kind(manifests, "Pod")]
    assert pods
    assert [pod for pod in pods if not any(matches(s, pod) for s in selectors)] == []


def test_mlflow_admits_only_memoserve_and_the_setup_job(default: list[Manifest]) -> None:
    spec = policy(default, MLFLOW)
    assert matches(spec["podSelector"]["matchLabels"], labels(default, "Deployment", MLFLOW))
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert peers_admit(rule["from"], labels(default, "Deployment", NAME))
    assert peers_admit(rule["from"], labels(default, "Job", JOB))
    assert len(rule["from"]) == 2
    assert not peers_admit(rule["from"], labels(default, "StatefulSet", "memoserve-redis"))


def test_memoserve_egress_is_dns_redis_and_mlflow(default: list[Manifest]) -> None:
    spec = policy(default, NAME)
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, redis, mlflow = spec["egress"]
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == DNS
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert peers_admit(redis["to"], labels(default, "StatefulSet", "memoserve-redis"))
    assert {p["port"] for p in redis["ports"]} == {6379, 26379}
    assert peers_admit(mlflow["to"], labels(default, "Deployment", MLFLOW))


def test_egress_to_external_services_and_the_collector(render: Render) -> None:
    rules = policy(render("external-redis"), NAME)["egress"][1:]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in rules] == [[6379, 26379], [5000]]
    assert all("to" not in rule for rule in rules)  # networkPolicy.*Peers narrow them
    production = policy(render("production"), NAME)["egress"]
    assert production[-1]["ports"] == [{"port": 4318, "protocol": "TCP"}]  # otel.endpoint
    extra = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 443}]}
    manifests = render(
        None,
        "networkPolicy.extraEgress[0].to[0].ipBlock.cidr=10.0.0.0/8",
        "networkPolicy.extraEgress[0].ports[0].port=443",
    )
    assert policy(manifests, NAME)["egress"][-1] == extra


def test_memoserve_ingress_admits_mlflow_the_test_pod_and_monitoring(
    default: list[Manifest], render: Render
) -> None:
    rule, metrics = policy(default, NAME)["ingress"]
    peers = rule["from"]
    assert peers_admit(peers, labels(default, "Deployment", MLFLOW))  # webhook deliveries
    assert peers_admit(peers, get(default, "Pod", f"{NAME}-test-cache-hit")["metadata"]["labels"])
    assert len(peers) == 2  # nothing else reaches predictions
    assert not peers_admit(peers, labels(default, "Job", JOB))
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [monitoring]}
    # without a metrics port, Prometheus needs (and gets) the service port
    (rule,) = policy(render(None, "metricsPort=0"), NAME)["ingress"]
    assert rule["from"][2:] == [monitoring]
    opened = render(
        None,
        "networkPolicy.ingressNamespace=ingress-nginx",
        "networkPolicy.metrics.namespaceSelector=null",
        "networkPolicy.ingressFrom[0].podSelector.matchLabels.app=gateway",
    )
    (rule,) = policy(opened, NAME)["ingress"]
    assert rule["from"][2:] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"podSelector": {"matchLabels": {"app": "gateway"}}},
    ]


def test_the_setup_job_and_the_test_pod_reach_only_what_they_call(
    default: list[Manifest],
) -> None:
    job = policy(default, JOB)
    assert job["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in job
    dns, mlflow = job["egress"]
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == DNS
    assert peers_admit(mlflow["to"], labels(default, "Deployment", MLFLOW))
    test = policy(default, f"{NAME}-test")
    assert "ingress" not in test
    assert peers_admit(test["egress"][1]["to"], labels(default, "Deployment", NAME))


def test_network_policies_off(render: Render) -> None:
    assert of_kind(render(None, "networkPolicy.enabled=false"), "NetworkPolicy") == []
    spec = policy(render(None, "networkPolicy.restrictEgress=false"), NAME)
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec


# --- MLflow authentication -----------------------------------------------------------


def test_mlflow_runs_basic_auth_with_the_charts_ini(default: list[Manifest]) -> None:
    (mlflow,) = pod_template(get(default, "Deployment", MLFLOW))["spec"]["containers"]
    assert "--app-name=basic-auth" in mlflow["args"]
    assert mlflow["workingDir"] == "/mlflow"  # the ini's relative sqlite path: the volume
    variables = {e["name"]: e for e in mlflow["env"]}
    path = variables["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    mount = next(m for m in mlflow["volumeMounts"] if m["name"] == "auth-config")
    assert path == f"{mount['mountPath']}/basic_auth.ini"
    ini = get(default, "ConfigMap", AUTH)["data"]["basic_auth.ini"]
    assert ini.strip() == (CHART / "files" / "mlflow-basic-auth.ini").read_text().strip()
    assert "default_permission = NO_PERMISSIONS" in ini
    keys = {
        name: variables[name]["valueFrom"]["secretKeyRef"]
        for name in (
            "MLFLOW_AUTH_ADMIN_USERNAME",
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY",
        )
    }
    assert {ref["name"] for ref in keys.values()} == {AUTH}
    data = get(default, "Secret", AUTH)["data"]
    assert {ref["key"] for ref in keys.values()} == set(data)
    assert base64.b64decode(data["username"]) == b"admin"
    assert len(base64.b64decode(data["password"])) == 32


def test_memoserve_and_the_setup_job_send_the_admin_login(default: list[Manifest]) -> None:
    for kind, name, container in (
        ("Deployment", NAME, "memoserve"),
        ("Job", JOB, "registry-setup"),
    ):
        variables = env(default, kind, name, container)
        refs = {
            k: variables[k]["valueFrom"]["secretKeyRef"]
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        }
        assert refs == {
            "MLFLOW_TRACKING_USERNAME": {"name": AUTH, "key": "username"},
            "MLFLOW_TRACKING_PASSWORD": {"name": AUTH, "key": "password"},
        }, name


def test_mlflow_auth_off_and_external(render: Render) -> None:
    off = render(None, "mlflow.auth.enabled=false")
    (mlflow,) = pod_template(get(off, "Deployment", MLFLOW))["spec"]["containers"]
    assert not any(a.startswith("--app-name") for a in mlflow["args"])
    assert {m["metadata"]["name"] for m in of_kind(off, "Secret")} == {NAME, MLFLOW}
    assert "MLFLOW_TRACKING_USERNAME" not in env(off, "Deployment", NAME, "memoserve")
    external = ("mlflow.enabled=false", "mlflow.external.trackingUri=http://mlflow.mlops:5000")
    plain = render(None, *external)
    assert "MLFLOW_TRACKING_PASSWORD" not in env(plain, "Deployment", NAME, "memoserve")
    login = render(None, *external, "mlflow.auth.existingSecret=registry-login")
    for kind, name, container in (
        ("Deployment", NAME, "memoserve"),
        ("Job", JOB, "registry-setup"),
    ):
        ref = env(login, kind, name, container)["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]
        assert ref["secretKeyRef"] == {"name": "registry-login", "key": "password"}
