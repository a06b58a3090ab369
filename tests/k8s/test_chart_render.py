"""What the rendered chart promises: autoscaling, selectors, hardening, probes, Sentinel."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_manifests import (
    WORKLOAD_KINDS,
    Manifest,
    Render,
    containers,
    get,
    load_all,
    matches,
    of_kind,
    pod_template,
    workloads,
)
from k8s_tools import CHART, RELEASE, SCENARIOS, Tools, run

pytestmark = pytest.mark.k8s

NAME = "memoserve"
REDIS = "memoserve-redis"
MLFLOW = "memoserve-mlflow"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def server(manifests: list[Manifest]) -> Manifest:
    return get(manifests, "Deployment", NAME)


def container(workload: Manifest, name: str) -> Manifest:
    (found,) = [c for c in containers(pod_template(workload)["spec"]) if c["name"] == name]
    return found


def configmap(manifests: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = get(manifests, "ConfigMap", NAME)["data"]
    return data


# --- autoscaling -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["default", "production", "external-redis"])
def test_no_replicas_while_the_hpa_is_on(render: Render, scenario: str) -> None:
    manifests = render(scenario)
    assert "replicas" not in server(manifests)["spec"]
    hpa = get(manifests, "HorizontalPodAutoscaler", NAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] >= 2


def test_replicas_without_the_hpa(render: Render) -> None:
    manifests = render("no-autoscaling")
    assert server(manifests)["spec"]["replicas"] == 3
    assert of_kind(manifests, "HorizontalPodAutoscaler") == []


def test_hpa_targets_the_deployment_on_cpu_and_passes_behavior(default: list[Manifest]) -> None:
    spec = get(default, "HorizontalPodAutoscaler", NAME)["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    (cpu,) = spec["metrics"]
    assert cpu["resource"]["name"] == "cpu"
    assert cpu["resource"]["target"]["averageUtilization"] == 70
    assert spec["behavior"] == VALUES["autoscaling"]["behavior"]
    # the HPA computes utilization against requests: the target container must have them
    assert container(server(default), "memoserve")["resources"]["requests"]["cpu"]


def test_hpa_behavior_is_passed_through_as_given(render: Render) -> None:
    manifests = render(None, "autoscaling.behavior.scaleDown.stabilizationWindowSeconds=42")
    behavior = get(manifests, "HorizontalPodAutoscaler", NAME)["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 42


# --- selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_pick_exactly_their_own_pods(render: Render, scenario: str) -> None:
    """Service, PDB and NetworkPolicy selectors match their workload's pods and no other's."""
    manifests = render(scenario)
    pods = {
        w["metadata"]["name"]: pod_template(w)["metadata"]["labels"] for w in workloads(manifests)
    }
    expected = {
        ("Service", NAME): NAME,
        ("PodDisruptionBudget", NAME): NAME,
        ("NetworkPolicy", NAME): NAME,
        ("Service", f"{REDIS}-headless"): REDIS,
        ("PodDisruptionBudget", REDIS): REDIS,
        ("NetworkPolicy", REDIS): REDIS,
        ("Service", MLFLOW): MLFLOW,
    }
    checked = 0
    for (kind, name), owner in expected.items():
        found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
        if not found:
            continue
        spec = found[0]["spec"]
        selector = spec.get("selector") or spec.get("podSelector")
        selector = selector.get("matchLabels", selector)
        selected = {pod for pod, labels in pods.items() if matches(selector, labels)}
        assert selected == {owner}, f"{kind}/{name} selects {selected}"
        checked += 1
    assert checked >= 3
    for workload in of_kind(manifests, "Deployment") + of_kind(manifests, "StatefulSet"):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert matches(selector, pod_template(workload)["metadata"]["labels"])


# The scaffold's labels, on every resource; `component` on all but the shared ServiceAccount,
# Secret and dashboard.
CHART_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
}
COMPONENTS = {
    REDIS: "redis",
    f"{REDIS}-headless": "redis",
    f"{REDIS}-scripts": "redis",
    f"{REDIS}-cluster": "redis-cluster",
    f"{REDIS}-cluster-headless": "redis-cluster",
    f"{REDIS}-cluster-scripts": "redis-cluster",
    f"{REDIS}-cluster-bootstrap": "redis-cluster-bootstrap",
    MLFLOW: "mlflow",
    f"{MLFLOW}-auth": "mlflow",
    f"{NAME}-registry-setup": "registry-setup",
    f"{NAME}-test-cache-hit": "test",
    f"{NAME}-test": "test",
}
SHARED = {("ServiceAccount", NAME), ("Secret", NAME), ("ConfigMap", f"{NAME}-dashboard")}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_resource_carries_the_chart_labels_and_its_component(
    render: Render, scenario: str
) -> None:
    for manifest in render(scenario):
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        labels = manifest["metadata"]["labels"]
        assert CHART_LABELS <= set(labels), f"{kind}/{name}"
        component = labels.get("app.kubernetes.io/component")
        if (kind, name) in SHARED:
            assert component is None, f"{kind}/{name}"
            continue
        assert component == COMPONENTS.get(name, "server"), f"{kind}/{name}"
        if kind in WORKLOAD_KINDS:
            pod_labels = pod_template(manifest)["metadata"]["labels"]
            assert labels.items() <= pod_labels.items(), f"{kind}/{name}: its pods lack its labels"


def test_service_exposes_the_named_http_and_metrics_ports(default: list[Manifest]) -> None:
    port, metrics = get(default, "Service", NAME)["spec"]["ports"]
    assert port["name"] == "http"
    assert port["targetPort"] == "http"
    assert (metrics["name"], metrics["targetPort"], metrics["port"]) == ("metrics", "metrics", 9090)
    container_port, metrics_port = container(server(default), "memoserve")["ports"]
    assert container_port == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    assert metrics_port == {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
    assert configmap(default)["MEMOSERVE_METRICS_BIND"] == "0.0.0.0:9090"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_topology_spread_selects_the_pods_it_spreads(render: Render, scenario: str) -> None:
    for workload in [server(render(scenario)), *of_kind(render(scenario), "StatefulSet")]:
        template = pod_template(workload)
        constraints = template["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} >= {"kubernetes.io/hostname"}
        for constraint in constraints:
            selector = constraint["labelSelector"]["matchLabels"]
            assert matches(selector, template["metadata"]["labels"])


def test_pod_disruption_budgets(default: list[Manifest]) -> None:
    for name in (NAME, REDIS):
        assert get(default, "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1


# --- hardening ---------------------------------------------------------------------------

# Where each container writes; every one of these must be a mounted volume, not the image.
WRITABLE_PATHS = {
    "memoserve": {"/tmp", "/var/cache/memoserve", "/var/run/memoserve/prometheus"},
    "cache-hit": {"/tmp"},
    "registry-setup": {"/tmp"},
    "bootstrap": set(),
    "seed-source": {"/seed"},
    "config": {"/usr/local/etc/redis"},
    "redis": {"/usr/local/etc/redis", "/data"},
    "sentinel": {"/usr/local/etc/redis", "/data"},
    "mlflow": {"/tmp", "/mlflow"},
}


def hardened_pods(render: Render) -> list[tuple[str, Manifest, set[str]]]:
    """(where, pod template, names of its volume claim templates) of every workload."""
    pods = []
    for scenario in SCENARIOS:
        for workload in workloads(render(scenario)):
            claims = workload["spec"].get("volumeClaimTemplates", [])
            where = f"{scenario}:{workload['metadata']['name']}"
            pods.append((where, pod_template(workload), {c["metadata"]["name"] for c in claims}))
    dev = render(None, "devSync.enabled=true")
    pods.append(("devSync", pod_template(server(dev)), set()))
    return pods


def test_every_container_runs_as_non_root_on_a_read_only_root(render: Render) -> None:
    for where, template, _ in hardened_pods(render):
        spec = template["spec"]
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, where
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for item in containers(spec):
            context = item["securityContext"]
            label = f"{where}/{item['name']}"
            assert context["runAsNonRoot"] is True, label
            assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0, label
            assert context["readOnlyRootFilesystem"] is True, label
            assert context["allowPrivilegeEscalation"] is False, label
            assert context["capabilities"] == {"drop": ["ALL"]}, label
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, label
            assert item["resources"]["requests"], label
            assert "limits" in item["resources"] and "memory" in item["resources"]["limits"], label


def test_memoserve_runs_as_uid_10001(default: list[Manifest]) -> None:
    context = container(server(default), "memoserve")["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)


def test_every_writable_path_is_a_volume(render: Render) -> None:
    for where, template, claims in hardened_pods(render):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for item in containers(template["spec"]):
            label = f"{where}/{item['name']}"
            mounts = {m["mountPath"]: m["name"] for m in item.get("volumeMounts", [])}
            assert WRITABLE_PATHS[item["name"]] <= set(mounts), label
            for path in WRITABLE_PATHS[item["name"]]:
                volume = volumes.get(mounts[path], {})
                on_volume = "emptyDir" in volume or "persistentVolumeClaim" in volume
                assert on_volume or mounts[path] in claims, f"{label}: {path} is in the image"


def test_redis_data_moves_to_claims_with_persistence(render: Render) -> None:
    statefulset = get(render("no-autoscaling"), "StatefulSet", REDIS)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    volumes = {v["name"] for v in pod_template(statefulset)["spec"]["volumes"]}
    assert "data" not in volumes
    assert (
        "appendonly yes"
        in get(render("no-autoscaling"), "ConfigMap", f"{REDIS}-scripts")["data"]["init.sh"]
    )


def test_service_env_points_into_its_volumes(default: list[Manifest]) -> None:
    data = configmap(default)
    mounts = {m["mountPath"] for m in container(server(default), "memoserve")["volumeMounts"]}
    assert data["PROMETHEUS_MULTIPROC_DIR"] in mounts
    assert any(data["MEMOSERVE_MODEL_CACHE_DIR"].startswith(f"{m}/") for m in mounts)


def test_probes_use_the_named_port(render: Render) -> None:
    for scenario in SCENARIOS:
        for workload in workloads(render(scenario)):
            for item in containers(pod_template(workload)["spec"]):
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if "httpGet" in item.get(probe, {}):
                        assert item[probe]["httpGet"]["port"] == "http", item["name"]


def test_memoserve_probes(default: list[Manifest]) -> None:
    item = container(server(default), "memoserve")
    assert item["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert item["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # ready = a model is loaded; Redis is deliberately not part of it
    assert item["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_graceful_shutdown_fits_the_grace_period(default: list[Manifest]) -> None:
    spec = pod_template(server(default))["spec"]
    pre_stop = container(server(default), "memoserve")["lifecycle"]["preStop"]["exec"]["command"]
    graceful = int(configmap(default)["MEMOSERVE_GRACEFUL_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] > graceful + int(pre_stop[-1])


# --- config rolls the pods ---------------------------------------------------------------


def test_config_and_secret_changes_roll_the_pods(render: Render) -> None:
    def annotations(*sets: str) -> dict[str, str]:
        manifests = render(None, "webhookSecret=fixed", "redis.auth.password=fixed", *sets)
        return {
            f"{w['metadata']['name']}/{key}": value
            for w in (server(manifests), get(manifests, "StatefulSet", REDIS))
            for key, value in pod_template(w)["metadata"]["annotations"].items()
        }

    before = annotations()
    assert {"memoserve/checksum/config", "memoserve/checksum/secret"} <= set(before)
    assert before == annotations()
    after_config = annotations("config.log_level=DEBUG")
    assert after_config["memoserve/checksum/config"] != before["memoserve/checksum/config"]
    after_secret = annotations("webhookSecret=other")
    assert after_secret["memoserve/checksum/secret"] != before["memoserve/checksum/secret"]
    assert after_secret["memoserve-redis/checksum/auth"] == before["memoserve-redis/checksum/auth"]
    after_password = annotations("redis.auth.password=other")
    assert (
        after_password["memoserve-redis/checksum/auth"] != before["memoserve-redis/checksum/auth"]
    )
    after_redis = annotations("redis.sentinel.quorum=3")
    assert (
        after_redis["memoserve-redis/checksum/scripts"]
        != before["memoserve-redis/checksum/scripts"]
    )


# --- Secrets, and GitOps -----------------------------------------------------------------


def secret_refs(manifests: list[Manifest]) -> dict[str, set[str]]:
    """Secret names each container reads, by `<workload>/<container>`."""
    refs: dict[str, set[str]] = {}
    for workload in workloads(manifests):
        for item in containers(pod_template(workload)["spec"]):
            names = {
                env["valueFrom"]["secretKeyRef"]["name"]
                for env in item.get("env", [])
                if "secretKeyRef" in env.get("valueFrom", {})
            }
            names |= {s["secretRef"]["name"] for s in item.get("envFrom", []) if "secretRef" in s}
            if names:
                refs[f"{workload['metadata']['name']}/{item['name']}"] = names
    return refs


def test_generated_secrets_change_on_every_render(tools: Tools) -> None:
    """Why GitOps wants `existingSecret`: `helm template` cannot read generated values back."""
    command = [tools.helm, "template", RELEASE, str(CHART)]
    assert run(*command) != run(*command)


def test_existing_secrets_render_no_secret_and_the_same_manifests(tools: Tools) -> None:
    command = [tools.helm, "template", RELEASE, str(CHART)]
    command += ["--set", "existingSecret=creds", "--set", "mlflow.existingSecret=mlflow-creds"]
    command += ["--set", "mlflow.auth.existingSecret=mlflow-auth"]
    first = run(*command)
    assert run(*command) == first
    manifests = load_all(first)
    assert of_kind(manifests, "Secret") == []
    refs = secret_refs(manifests)
    assert refs.pop(f"{MLFLOW}/mlflow") == {"mlflow-creds", "mlflow-auth"}
    assert {f"{NAME}/memoserve", f"{REDIS}/redis", f"{NAME}-registry-setup/registry-setup"} <= set(
        refs
    )
    assert set().union(*refs.values()) == {"creds", "mlflow-auth"}
    for workload in (server(manifests), get(manifests, "Deployment", MLFLOW)):
        annotations = pod_template(workload)["metadata"].get("annotations") or {}
        assert "checksum/secret" not in annotations


# --- Redis Sentinel ----------------------------------------------------------------------


def init_script(manifests: list[Manifest]) -> str:
    script: str = get(manifests, "ConfigMap", f"{REDIS}-scripts")["data"]["init.sh"]
    return script


def test_sentinel_quorum_and_master_name(default: list[Manifest]) -> None:
    script = init_script(default)
    master_name = configmap(default)["MEMOSERVE_REDIS_MASTER_NAME"]
    assert master_name == VALUES["redis"]["sentinel"]["masterName"] == "mymaster"
    assert f'master_name="{master_name}"' in script
    monitor = re.search(r"sentinel monitor \$master_name \$master \$redis_port (\d+)", script)
    assert monitor is not None and monitor.group(1) == "2"
    assert "sentinel down-after-milliseconds $master_name 1000" in script
    assert "sentinel auth-pass $master_name $REDIS_PASSWORD" in script
    assert "SENTINEL get-master-addr-by-name" in script


def test_service_is_given_every_sentinel(default: list[Manifest]) -> None:
    statefulset = get(default, "StatefulSet", REDIS)
    assert statefulset["spec"]["replicas"] == 3
    headless = statefulset["spec"]["serviceName"]
    assert get(default, "Service", headless)["spec"]["clusterIP"] == "None"
    expected = [f"{REDIS}-{i}.{headless}:26379" for i in range(3)]
    assert configmap(default)["MEMOSERVE_REDIS_SENTINELS"].split(",") == expected
    assert container(statefulset, "sentinel")["ports"][0]["containerPort"] == 26379


def test_redis_auth_comes_from_the_secret(default: list[Manifest]) -> None:
    statefulset = get(default, "StatefulSet", REDIS)
    secret = get(default, "Secret", NAME)
    for name in ("config", "redis", "sentinel"):
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container(statefulset, name)["env"]
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }
        # the default user's (replication, Sentinels, probes), which memoserve never gets
        assert refs["REDIS_PASSWORD"] == {"name": NAME, "key": "redis-admin-password"}
        assert refs["REDISCLI_AUTH"] == refs["REDIS_PASSWORD"] or name == "config"
    assert secret["data"]["redis-password"] == secret["data"]["redis-sentinel-password"]
    assert secret["data"]["redis-admin-password"] != secret["data"]["redis-password"]
    memoserve_keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in container(server(default), "memoserve")["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert "redis-admin-password" not in memoserve_keys


ACL_RULE = (
    "memoserve reset on ~memoserve:* &memoserve:events -@all +get +mget +set +del +unlink "
    "+scan +expire +zadd +zincrby +zrevrange +zremrangebyrank +publish +subscribe +ping"
)


SENTINEL_ACL_RULE = "memoserve reset on -@all +sentinel|masters +sentinel|get-master-addr-by-name"


def test_memoserve_has_an_acl_user_of_its_own(
    default: list[Manifest], fake_redis_tools: Path
) -> None:
    scripts = get(default, "ConfigMap", f"{REDIS}-scripts")["data"]
    assert scripts["memoserve.acl"] == ACL_RULE
    assert scripts["memoserve-sentinel.acl"] == SENTINEL_ACL_RULE
    data = configmap(default)
    assert data["MEMOSERVE_REDIS_USERNAME"] == data["MEMOSERVE_REDIS_SENTINEL_USERNAME"]
    assert data["MEMOSERVE_REDIS_USERNAME"] == "memoserve"
    lines = run_init_script(default, fake_redis_tools, pod=0, answer="").splitlines()
    assert f"user {ACL_RULE} >memoserve-pw" in lines
    assert f"user {SENTINEL_ACL_RULE} >sentinel-pw" in lines
    # the default user of Redis and of the Sentinels: the admin password
    assert lines.count("requirepass pw") == 2 and "masterauth pw" in lines


def test_the_acl_rule_follows_the_namespace_and_commands(render: Render) -> None:
    manifests = render(None, "config.namespace=ns1", "redis.acl.commands={get,set}")
    rule = get(manifests, "ConfigMap", f"{REDIS}-scripts")["data"]["memoserve.acl"]
    assert rule == "memoserve reset on ~ns1:* &ns1:events -@all +get +set"


def test_without_the_acl_memoserve_is_the_default_user(render: Render) -> None:
    manifests = render(None, "redis.acl.enabled=false")
    assert "memoserve.acl" not in get(manifests, "ConfigMap", f"{REDIS}-scripts")["data"]
    assert configmap(manifests)["MEMOSERVE_REDIS_USERNAME"] == ""
    assert "redis-admin-password" not in get(manifests, "Secret", NAME)["data"]
    env = container(get(manifests, "StatefulSet", REDIS), "redis")["env"]
    assert {"name": NAME, "key": "redis-password"} in [e["valueFrom"]["secretKeyRef"] for e in env]


TLS = ("redis.tls.enabled=true", "redis.tls.existingSecret=redis-certs")


def test_tls_closes_the_plain_ports_and_memoserve_verifies_with_the_ca(
    render: Render, fake_redis_tools: Path
) -> None:
    manifests = render(None, *TLS)
    data = configmap(manifests)
    assert data["MEMOSERVE_REDIS_TLS"] == data["MEMOSERVE_REDIS_SENTINEL_TLS"] == "true"
    assert data["MEMOSERVE_REDIS_TLS_CA_FILE"] == "/etc/memoserve/redis-tls/ca.crt"
    pod = pod_template(server(manifests))["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "redis-tls"]
    assert volume["secret"] == {
        "secretName": "redis-certs",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    statefulset = get(manifests, "StatefulSet", REDIS)
    volumes = pod_template(statefulset)["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "redis-certs", "defaultMode": 0o440}} in volumes
    for name in ("redis", "sentinel"):
        probe = container(statefulset, name)["readinessProbe"]["exec"]["command"][-1]
        assert probe.startswith("redis-cli --tls --cacert /tls/ca.crt -p ")
    config = run_init_script(manifests, fake_redis_tools, pod=0, answer="")
    lines = config.splitlines()
    assert lines.count("port 0") == 2 and "tls-port 6379" in lines and "tls-port 26379" in lines
    assert "tls-replication yes" in lines and "tls-ca-cert-file /tls/ca.crt" in lines


def test_tls_is_off_by_default_and_needs_a_secret(default: list[Manifest], tools: Tools) -> None:
    data = configmap(default)
    assert data["MEMOSERVE_REDIS_TLS"] == data["MEMOSERVE_REDIS_SENTINEL_TLS"] == "false"
    assert data["MEMOSERVE_REDIS_TLS_CA_FILE"] == ""
    command = [tools.helm, "template", RELEASE, str(CHART), "--set", TLS[0]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "redis.tls.existingSecret is required" in result.stderr


@pytest.fixture()
def fake_redis_tools(tmp_path: Path) -> Path:
    """`redis-cli` answering from $FAKE_SENTINEL_ANSWER, and a `getent` that always resolves."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-cli").write_text('#!/bin/sh\nprintf "%s" "$FAKE_SENTINEL_ANSWER"\n')
    (bin_dir / "getent").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def run_init_script(default: list[Manifest], bin_dir: Path, pod: int, answer: str) -> str:
    conf = bin_dir.parent / f"conf-{pod}"
    conf.mkdir()
    script = bin_dir.parent / "init.sh"
    script.write_text(init_script(default))
    scripts = get(default, "ConfigMap", f"{REDIS}-scripts")["data"]
    for name in ("memoserve.acl", "memoserve-sentinel.acl"):
        if name in scripts:
            (bin_dir.parent / name).write_text(scripts[name])
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOSTNAME": f"{REDIS}-{pod}",
        "POD_NAMESPACE": "ns",
        "REDIS_PASSWORD": "pw",
        "SENTINEL_PASSWORD": "sentinel-pw",
        "MEMOSERVE_PASSWORD": "memoserve-pw",
        "REDIS_CONF_DIR": str(conf),
        "FAKE_SENTINEL_ANSWER": answer,
    }
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True, timeout=30)
    return (conf / "redis.conf").read_text() + (conf / "sentinel.conf").read_text()


def test_init_script_makes_pod_0_the_first_master(
    default: list[Manifest], fake_redis_tools: Path
) -> None:
    config = run_init_script(default, fake_redis_tools, pod=0, answer="")
    pod0 = f"{REDIS}-0.{REDIS}-headless.ns.svc.cluster.local"
    assert "replicaof" not in config
    assert f"sentinel monitor mymaster {pod0} 6379 2" in config
    assert "requirepass pw" in config and "masterauth pw" in config


def test_init_script_follows_the_master_the_sentinels_name(
    default: list[Manifest], fake_redis_tools: Path
) -> None:
    master = f"{REDIS}-2.{REDIS}-headless.ns.svc.cluster.local"
    config = run_init_script(default, fake_redis_tools, pod=0, answer=f"{master}\n6379\n")
    assert f"replicaof {master} 6379" in config
    assert f"sentinel monitor mymaster {master} 6379 2" in config
    assert f"replica-announce-ip {REDIS}-0.{REDIS}-headless.ns.svc.cluster.local" in config


def test_later_pods_replicate_pod_0_when_no_sentinel_answers(
    default: list[Manifest], fake_redis_tools: Path
) -> None:
    config = run_init_script(default, fake_redis_tools, pod=1, answer="")
    assert f"replicaof {REDIS}-0.{REDIS}-headless.ns.svc.cluster.local 6379" in config


def test_only_memoserve_and_redis_pods_reach_redis(default: list[Manifest]) -> None:
    policy = get(default, "NetworkPolicy", REDIS)["spec"]
    (rule,) = policy["ingress"]
    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    server_labels = pod_template(server(default))["metadata"]["labels"]
    redis_labels = pod_template(get(default, "StatefulSet", REDIS))["metadata"]["labels"]
    mlflow_labels = pod_template(get(default, "Deployment", MLFLOW))["metadata"]["labels"]
    assert any(matches(p, server_labels) for p in peers)
    assert any(matches(p, redis_labels) for p in peers)
    assert not any(matches(p, mlflow_labels) for p in peers)
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # no namespace-wide peers
    assert {p["port"] for p in rule["ports"]} == {"redis", "sentinel"}


def test_the_service_and_metrics_ports_are_the_only_ingress_ports(default: list[Manifest]) -> None:
    service, metrics = get(default, "NetworkPolicy", NAME)["spec"]["ingress"]
    assert service["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_external_redis_runs_no_redis(render: Render) -> None:
    manifests = render("external-redis")
    assert of_kind(manifests, "StatefulSet") == []
    data = configmap(manifests)
    assert data["MEMOSERVE_REDIS_SENTINELS"] == ",".join(
        [f"redis-sentinel-{i}.redis.cache.svc:26379" for i in range(3)]
    )
    assert data["MEMOSERVE_REDIS_MASTER_NAME"] == "cache"
    assert data["MEMOSERVE_REDIS_TLS"] == data["MEMOSERVE_REDIS_SENTINEL_TLS"] == "true"
    assert data["MEMOSERVE_REDIS_TLS_CA_FILE"] == "/etc/memoserve/redis-tls/ca.crt"
    assert data["MEMOSERVE_REDIS_USERNAME"] == "memoserve"
    volumes = pod_template(server(manifests))["spec"]["volumes"]
    assert {v["name"]: v for v in volumes}["redis-tls"]["secret"]["secretName"] == "cache-ca"
    assert data["MEMOSERVE_MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc:5000"
    assert set(get(manifests, "Secret", NAME)["data"]) == {
        "webhook-secret",
        "redis-password",
        "redis-sentinel-password",
    }


# --- MLflow and the registry-setup job ---------------------------------------------------


def test_mlflow_server(default: list[Manifest]) -> None:
    deployment = get(default, "Deployment", MLFLOW)
    item = container(deployment, "mlflow")
    assert item["image"].startswith("ghcr.io/mlflow/mlflow:v3.")
    assert item["command"] == ["mlflow", "server"]
    args = item["args"]
    assert "--workers=1" in args and "--serve-artifacts" in args
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in args
    allowed = next(a for a in args if a.startswith("--allowed-hosts="))
    assert f"{MLFLOW}:*" in allowed.split("=", 1)[1].split(",")
    env = {e["name"]: e for e in item["env"]}
    assert env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"]["value"] == "http,https"
    assert env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"]["value"] == "true"
    assert env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": MLFLOW,
        "key": "webhook-encryption-key",
    }
    volumes = {v["name"]: v for v in pod_template(deployment)["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == MLFLOW
    assert get(default, "PersistentVolumeClaim", MLFLOW)
    assert configmap(default)["MLFLOW_TRACKING_URI"] == f"http://{MLFLOW}:5000"


def test_mlflow_webhook_key_is_a_fernet_key(default: list[Manifest]) -> None:
    import base64

    encoded = get(default, "Secret", MLFLOW)["data"]["webhook-encryption-key"]
    key = base64.b64decode(encoded)
    assert len(base64.urlsafe_b64decode(key)) == 32


def test_mlflow_on_postgres_and_s3(render: Render) -> None:
    manifests = render("production")
    item = container(get(manifests, "Deployment", MLFLOW), "mlflow")
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in item["args"]
    assert "--artifacts-destination=s3://ml-artifacts/mlflow" in item["args"]
    assert item["envFrom"] == [{"secretRef": {"name": "memoserve-mlflow-s3"}}]
    assert of_kind(manifests, "PersistentVolumeClaim") == []
    assert [s["metadata"]["name"] for s in of_kind(manifests, "Secret")] == []


def test_registry_setup_job_registers_the_demo_and_the_webhook(default: list[Manifest]) -> None:
    job = get(default, "Job", f"{NAME}-registry-setup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    item = container(job, "registry-setup")
    assert item["image"] == container(server(default), "memoserve")["image"]
    script = item["args"][0]
    assert 'memoserve model --tracking-uri "$MLFLOW_TRACKING_URI" demo' in script
    assert 'memoserve model --tracking-uri "$MLFLOW_TRACKING_URI" webhook "$WEBHOOK_URL"' in script
    env = {e["name"]: e for e in item["env"]}
    assert (
        env["MLFLOW_TRACKING_URI"]["value"] == configmap(default)["MEMOSERVE_MLFLOW_TRACKING_URI"]
    )
    assert env["WEBHOOK_URL"]["value"] == f"http://{NAME}:8080/v1/webhooks/mlflow"
    assert env["MEMOSERVE_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "webhook-secret"


def test_no_registry_setup_without_demo_and_webhook(render: Render) -> None:
    manifests = render(None, "demo.enabled=false", "webhook.register=false")
    assert of_kind(manifests, "Job") == []


# --- monitoring --------------------------------------------------------------------------


def test_service_monitor_only_on_request(default: list[Manifest], render: Render) -> None:
    assert of_kind(default, "ServiceMonitor") == []
    monitor = get(render("production"), "ServiceMonitor", NAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


METRICS = {
    "memoserve_cache_results_total",
    "memoserve_requests_total",
    "memoserve_request_duration_seconds_bucket",
    "memoserve_predict_batch_rows_bucket",
    "memoserve_model_info",
    "memoserve_breaker_state",
    "memoserve_arm_requests_total",
    "memoserve_arm_rows_total",
    "memoserve_arm_predict_duration_seconds_bucket",
    "memoserve_shadow_rows_total",
}


def test_grafana_dashboard(default: list[Manifest], render: Render) -> None:
    assert not [
        m for m in of_kind(default, "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]
    ]
    configmap = get(render("production"), "ConfigMap", f"{NAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["memoserve.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "memoserve.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert {metric for metric in METRICS if metric in exprs} == METRICS
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in (
        "hit ratio",
        "request rate",
        "p50",
        "p99",
        "batch size",
        "model version",
        "breaker",
        "traffic per arm",
        "hit ratio per arm",
        "latency p50 / p99 per arm",
        "shadow agreement",
    ):
        assert topic in titles


def test_registry_setup_without_a_registry_is_refused(tools: Tools) -> None:
    command = [tools.helm, "template", "memoserve", str(CHART), "--set", "mlflow.enabled=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "need a registry: mlflow.enabled or mlflow.external.trackingUri" in result.stderr


@pytest.mark.parametrize(
    ("sets", "limit"),
    [
        ((), "900Mi"),
        (("modelCache.modelSizeMi=50",), "150Mi"),
        (("modelCache.sizeLimit=2Gi",), "2Gi"),
    ],
)
def test_the_model_cache_holds_three_models(
    render: Render, sets: tuple[str, ...], limit: str
) -> None:
    """Serving version, rollback target and one download in progress: a promotion must not
    fill the emptyDir (every pod would be evicted at the same promotion)."""
    deployment = get(render(None, *sets), "Deployment", RELEASE)
    volumes = {v["name"]: v for v in pod_template(deployment)["spec"]["volumes"]}
    assert volumes["model-cache"]["emptyDir"]["sizeLimit"] == limit
