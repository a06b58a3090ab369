"""Small helpers over rendered Kubernetes manifests (lists of dicts)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import yaml

Manifest = dict[str, Any]
# `render(scenario=None, *--set pairs, skip_tests=False)`: the chart rendered by `helm template`
Render = Callable[..., list[Manifest]]
# `helm_template(values)`: `helm template` with a values file, the completed process either way
HelmTemplate = Callable[[dict[str, Any]], subprocess.CompletedProcess[str]]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def load_all(text: str) -> list[Manifest]:
    """Every non-empty document of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def get(manifests: Iterable[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(workload: Manifest) -> Manifest:
    """`{metadata, spec}` of the pods a workload runs (a Pod is its own template)."""
    if workload["kind"] == "Pod":
        return {"metadata": workload["metadata"], "spec": workload["spec"]}
    template: Manifest = workload["spec"]["template"]
    return template


def workloads(manifests: Iterable[Manifest]) -> Iterator[Manifest]:
    return (m for m in manifests if m["kind"] in WORKLOAD_KINDS)


def containers(pod_spec: Manifest) -> list[Manifest]:
    """Init containers and containers of a pod spec."""
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def env_names(container: Manifest, manifests: Iterable[Manifest]) -> set[str]:
    """Variables a container gets from `env` and from the ConfigMaps/Secrets in `envFrom`."""
    manifests = list(manifests)
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                referenced = get(manifests, kind, source[key]["name"])
                names |= set(referenced.get("data", {})) | set(referenced.get("stringData", {}))
    return names
