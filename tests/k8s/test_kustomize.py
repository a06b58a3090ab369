"""k8s/: the base is the chart rendered (no drift), the overlays build, kind has its nodes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from k8s_manifests import Manifest, get, load_all, of_kind, pod_template
from k8s_tools import BASE_DIR, BASE_MANIFEST, ROOT, Tools, render_base

pytestmark = pytest.mark.k8s

Kustomize = Callable[[str], list[Manifest]]


def test_base_is_the_chart_rendered(tools: Tools) -> None:
    assert BASE_MANIFEST.read_text() == render_base(tools.helm), (
        "k8s/base/memoserve.yaml has drifted from charts/memoserve: run `make manifests`"
    )


def test_base_kustomization_lists_the_rendered_file() -> None:
    kustomization = yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [BASE_MANIFEST.name]


def test_base_has_no_test_hooks_and_no_credentials() -> None:
    manifests = load_all(BASE_MANIFEST.read_text())
    hooks = [m["metadata"].get("annotations", {}).get("helm.sh/hook") for m in manifests]
    assert "test" not in hooks
    assert of_kind(manifests, "Pod") == []
    assert of_kind(manifests, "Secret") == []


def test_kind_overlay(kustomize: Kustomize) -> None:
    manifests = kustomize("kind")
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {
        "memoserve"
    }
    server = get(manifests, "Deployment", "memoserve")
    (container,) = pod_template(server)["spec"]["containers"]
    assert container["image"] == "memoserve:dev"
    secrets = {s["metadata"]["name"] for s in of_kind(manifests, "Secret")}
    referenced = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert referenced and referenced <= secrets  # the generated (hash-suffixed) names
    assert get(manifests, "HorizontalPodAutoscaler", "memoserve")["spec"]["maxReplicas"] == 4
    assert container["resources"]["requests"]["cpu"] == "100m"


def test_production_overlay(kustomize: Kustomize) -> None:
    manifests = kustomize("production")
    server = get(manifests, "Deployment", "memoserve")
    (container,) = pod_template(server)["spec"]["containers"]
    assert container["image"] == "registry.example.com/ml/memoserve:0.1.0"
    assert container["resources"]["requests"]["cpu"] == "2"
    hpa = get(manifests, "HorizontalPodAutoscaler", "memoserve")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 30)
    assert "replicas" not in server["spec"]
    assert get(manifests, "ConfigMap", "memoserve")["data"]["MEMOSERVE_ENVIRONMENT"] == "production"
    assert of_kind(manifests, "Secret") == []  # created out of band, never committed
    assert of_kind(manifests, "Job") == []  # no demo model in production


def test_kind_cluster_has_one_control_plane_and_two_workers() -> None:
    config = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    assert [node["role"] for node in config["nodes"]] == ["control-plane", "worker", "worker"]
