"""`helm lint --strict` and Kubernetes schema validation of every rendering of the chart."""

from __future__ import annotations

from collections.abc import Callable

import kubernetes_validate
import pytest
from k8s_manifests import Manifest, Render
from k8s_tools import CHART, CI_DIR, OVERLAYS, SCENARIOS, Tools, run

pytestmark = pytest.mark.k8s

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
# Custom resources have no built-in schema; each is named here, so that a built-in kind whose
# schema is missing (a typo in apiVersion, say) still fails.
CUSTOM_RESOURCE_KINDS = {"ServiceMonitor"}


def validate(manifests: list[Manifest], version: str) -> list[str]:
    errors = []
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] in CUSTOM_RESOURCE_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{name}: {error.message}")
    return errors


def test_every_scenario_is_a_file() -> None:
    assert set(SCENARIOS) >= {"default", "external-redis", "no-autoscaling", "production"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(tools: Tools, scenario: str) -> None:
    values = CI_DIR / f"{scenario}-values.yaml"
    output = run(tools.helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_chart_is_valid_kubernetes(render: Render, scenario: str, version: str) -> None:
    manifests = render(scenario)
    assert manifests
    assert validate(manifests, version) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes(
    kustomize: Callable[[str], list[Manifest]], overlay: str, version: str
) -> None:
    manifests = kustomize(overlay)
    assert manifests
    assert validate(manifests, version) == []


def test_dev_sync_rendering_is_valid_kubernetes(render: Render) -> None:
    manifests = render(None, "devSync.enabled=true", "autoscaling.enabled=false")
    assert validate(manifests, KUBERNETES_VERSIONS[0]) == []


def test_validation_catches_an_unknown_field() -> None:
    broken = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selectr": {}},
    }
    assert validate([broken], KUBERNETES_VERSIONS[0])
    unknown = {"apiVersion": "apps/v2", "kind": "Deployment", "metadata": {"name": "x"}}
    assert "Couldn't find schema" in validate([unknown], KUBERNETES_VERSIONS[0])[0]
