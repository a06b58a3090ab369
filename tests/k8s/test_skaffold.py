"""skaffold.yaml: the paths it names exist, its profiles apply, its names line up.

No skaffold binary is to be had here, so its profile rules are applied by hand: a profile's
sections replace the config's (lists wholesale, `deploy` per deployer), then its JSON patches
run, in the order the profiles are listed.
"""

from __future__ import annotations

import copy
import glob
import re
from typing import Any

import pytest
import yaml
from k8s_manifests import Manifest, get
from k8s_tools import CHART, ROOT

pytestmark = pytest.mark.k8s

CONFIG = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
PROFILES = {profile["name"]: profile for profile in CONFIG["profiles"]}
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def apply_patch(config: dict[str, Any], patch: dict[str, Any]) -> None:
    *parents, last = pointer(patch["path"])
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if patch["op"] == "remove":
        del node[int(last) if isinstance(node, list) else last]
    elif patch["op"] in ("add", "replace"):
        if patch["op"] == "replace":
            assert last in node, patch["path"]
        node[last] = patch["value"]
    else:
        raise AssertionError(f"unexpected op {patch['op']}")


def with_profiles(*names: str) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(CONFIG)
    for profile in CONFIG["profiles"]:  # skaffold applies them in the file's order
        if profile["name"] not in names:
            continue
        for section in ("build", "manifests", "deploy", "portForward"):
            if section not in profile:
                continue
            if section == "build":
                config["build"] = {**config["build"], **copy.deepcopy(profile["build"])}
            elif section == "deploy":
                config["deploy"] = {**config["deploy"], **copy.deepcopy(profile["deploy"])}
            else:
                config[section] = copy.deepcopy(profile[section])
        for patch in profile.get("patches", []):
            apply_patch(config, patch)
    return config


def test_schema_version_and_profiles() -> None:
    assert re.fullmatch(r"skaffold/v4beta\d+", CONFIG["apiVersion"])
    assert CONFIG["kind"] == "Config"
    assert list(PROFILES) == ["dev", "kind", "kustomize"]
    assert PROFILES["dev"]["activation"] == [{"command": "dev"}]


def test_one_artifact_and_the_helm_values_it_sets() -> None:
    (artifact,) = CONFIG["build"]["artifacts"]
    name = artifact["image"]
    (release,) = CONFIG["deploy"]["helm"]["releases"]
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{name}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{name}}}}}",
    }
    assert {"repository", "tag"} <= set(VALUES["image"])


@pytest.mark.parametrize("profiles", [(), ("dev",), ("kind",), ("dev", "kind"), ("kustomize",)])
def test_every_path_exists(profiles: tuple[str, ...]) -> None:
    config = with_profiles(*profiles)
    for artifact in config["build"]["artifacts"]:
        context = ROOT / artifact.get("context", ".")
        assert (context / artifact["docker"]["dockerfile"]).is_file()
        for rule in artifact.get("sync", {}).get("manual", []):
            assert glob.glob(rule["src"], root_dir=context, recursive=True), rule["src"]
    for release in config["deploy"].get("helm", {}).get("releases", []):
        assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for path in config.get("manifests", {}).get("kustomize", {}).get("paths", []):
        assert (ROOT / path / "kustomization.yaml").is_file()


def value_exists(dotted: str) -> bool:
    node: Any = VALUES
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("profiles", [("dev",), ("kind",), ("dev", "kind")])
def test_profile_helm_values_exist_in_the_chart(profiles: tuple[str, ...]) -> None:
    (release,) = with_profiles(*profiles)["deploy"]["helm"]["releases"]
    assert release["setValues"]
    for key in release["setValues"]:
        assert value_exists(key), key


def test_dev_profile_syncs_into_the_import_path_and_reloads() -> None:
    (artifact,) = with_profiles("dev")["build"]["artifacts"]
    rules = {rule["src"]: rule for rule in artifact["sync"]["manual"]}
    assert rules["service/**/*.py"]["dest"] == "/app"
    assert rules["mlflow/memoserve_models/**/*.py"]["strip"] == "mlflow/"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "PYTHONPATH=/app" in dockerfile
    assert "COPY --from=builder /src/service /app/service" in dockerfile
    (hook,) = artifact["sync"]["hooks"]["after"]
    assert hook["container"]["command"] == ["sh", "-c", "kill -HUP 1"]
    (release,) = with_profiles("dev")["deploy"]["helm"]["releases"]
    assert release["setValues"]["devSync.enabled"] is True


def test_kustomize_profile_deploys_the_kind_overlay_without_helm_or_sync() -> None:
    config = with_profiles("dev", "kustomize")
    assert "helm" not in config["deploy"]
    assert config["deploy"]["kubectl"] == {}
    assert config["manifests"]["kustomize"]["paths"] == ["k8s/overlays/kind"]
    (artifact,) = config["build"]["artifacts"]
    assert "sync" not in artifact


def test_kind_profile_matches_the_kind_cluster() -> None:
    kind = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    assert PROFILES["kind"]["activation"] == [{"kubeContext": f"kind-{kind['name']}"}]
    assert PROFILES["kind"]["build"]["local"]["push"] is False


@pytest.mark.parametrize("profiles", [(), ("kustomize",)])
def test_port_forward_targets_the_named_http_port(
    profiles: tuple[str, ...], default: list[Manifest]
) -> None:
    (forward,) = with_profiles(*profiles)["portForward"]
    assert forward["resourceType"] == "service"
    assert forward["port"] == "http"
    service = get(default, "Service", forward["resourceName"])
    assert "http" in [port["name"] for port in service["spec"]["ports"]]
