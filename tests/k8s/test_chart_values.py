"""values.schema.json: closed draft-07, its $defs hold the Kubernetes shapes, helm applies it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from k8s_manifests import HelmTemplate
from k8s_tools import CHART, CI_DIR, SCENARIOS

pytestmark = pytest.mark.k8s

VALUES_FILE = CHART / "values.yaml"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def test_values_yaml_points_editors_at_the_schema() -> None:
    first_line = VALUES_FILE.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=values.schema.json"


def test_schema_is_valid_draft_07() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def closed_objects(node: Any, path: str = "<root>") -> list[tuple[str, dict[str, Any]]]:
    """Every object schema with known keys, in `properties` and `$defs` alike."""
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((path, node))
        for key, child in node.items():
            found += closed_objects(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += closed_objects(child, f"{path}/{index}")
    return found


def test_objects_with_known_keys_are_closed() -> None:
    found = closed_objects(SCHEMA)
    assert any(path.startswith("<root>/$defs/") for path, _ in found)
    for path, node in found:
        assert node.get("additionalProperties") is False, path


def test_every_shared_definition_says_what_it_is() -> None:
    assert set(SCHEMA["$defs"]) >= {
        "podSecurityContext",
        "containerSecurityContext",
        "resources",
        "probe",
        "image",
    }
    for name, definition in SCHEMA["$defs"].items():
        assert definition.get("description"), name


def test_kubernetes_shapes_use_the_shared_definitions() -> None:
    properties = SCHEMA["properties"]
    for section in (
        properties,
        properties["redis"]["properties"],
        properties["mlflow"]["properties"],
    ):
        assert section["podSecurityContext"] == {"$ref": "#/$defs/podSecurityContext"}
        assert section["securityContext"] == {"$ref": "#/$defs/containerSecurityContext"}
        assert section["resources"] == {"$ref": "#/$defs/resources"}
        assert section["image"] == {"$ref": "#/$defs/image"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert properties[probe] == {"$ref": "#/$defs/probe"}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Values as Helm merges them: maps key by key, anything else replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ci_values_match_the_schema(scenario: str) -> None:
    defaults = yaml.safe_load(VALUES_FILE.read_text())
    override = yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text()) or {}
    jsonschema.Draft7Validator(SCHEMA).validate(merged(defaults, override))


def test_defaults_match_the_schema_and_the_schema_refuses_typos() -> None:
    values = yaml.safe_load(VALUES_FILE.read_text())
    validator = jsonschema.Draft7Validator(SCHEMA)
    validator.validate(values)
    assert not validator.is_valid({**values, "replicaCont": 2})
    assert not validator.is_valid({**values, "config": {**values["config"], "ttl": 1}})


# Each is wrong in one way the schema's $defs catch, and where helm says it is wrong.
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "a boolean as a string": (
        {"securityContext": {"readOnlyRootFilesystem": "false"}},
        "/securityContext/readOnlyRootFilesystem",
    ),
    "capabilities.drop not a list": (
        {"securityContext": {"capabilities": {"drop": "ALL"}}},
        "/securityContext/capabilities/drop",
    ),
    "a uid as a string": (
        {"redis": {"securityContext": {"runAsUser": "999"}}},
        "/redis/securityContext/runAsUser",
    ),
    "a misspelt pod security key": (
        {"mlflow": {"podSecurityContext": {"runAsNonroot": True}}},
        "/mlflow/podSecurityContext",
    ),
    "an unknown seccomp profile type": (
        {"podSecurityContext": {"seccompProfile": {"type": "runtime/default"}}},
        "/podSecurityContext/seccompProfile/type",
    ),
    "a misspelt resource name": (
        {"resources": {"requests": {"memroy": "1Gi"}}},
        "/resources/requests",
    ),
    "a quantity that is not one": (
        {"redis": {"resources": {"limits": {"memory": "lots"}}}},
        "/redis/resources/limits/memory",
    ),
    "a quantity that is a list": (
        {"demo": {"resources": {"limits": {"cpu": [1]}}}},
        "/demo/resources/limits/cpu",
    ),
    "a misspelt resources key": (
        {"tests": {"resources": {"request": {"cpu": "50m"}}}},
        "/tests/resources",
    ),
    "a misspelt probe key": (
        {"livenessProbe": {"periodSecond": 5}},
        "/livenessProbe",
    ),
    "a probe port that is a list": (
        {"readinessProbe": {"httpGet": {"port": [8080]}}},
        "/readinessProbe/httpGet/port",
    ),
    "a probe threshold as a string": (
        {"startupProbe": {"failureThreshold": "60"}},
        "/startupProbe/failureThreshold",
    ),
    "an unknown pull policy": (
        {"mlflow": {"image": {"pullPolicy": "Sometimes"}}},
        "/mlflow/image/pullPolicy",
    ),
    "a test payload that is a number": ({"tests": {"payload": 5}}, "/tests/payload"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_helm_refuses_a_malformed_value(helm_template: HelmTemplate, case: str) -> None:
    values, location = MALFORMED[case]
    result = helm_template(values)
    assert result.returncode != 0, f"helm rendered {values}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert f"at '{location}'" in result.stderr, result.stderr


# Shapes the schema must let through: it checks types and keys, not how strict a setting is.
ACCEPTED: dict[str, dict[str, Any]] = {
    "a writable root filesystem": {"securityContext": {"readOnlyRootFilesystem": False}},
    "an added capability": {"redis": {"securityContext": {"capabilities": {"add": ["NET_RAW"]}}}},
    "an AppArmor profile": {
        "mlflow": {"podSecurityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}
    },
    "a GPU and huge pages": {
        "resources": {"limits": {"nvidia.com/gpu": 1, "hugepages-2Mi": "64Mi"}}
    },
    "numbers as quantities": {"resources": {"requests": {"cpu": 0.5, "memory": 536870912}}},
    "a tcpSocket probe": {"livenessProbe": {"httpGet": None, "tcpSocket": {"port": "http"}}},
    "a test payload as a map": {"tests": {"payload": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}},
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_helm_accepts_a_well_formed_value(helm_template: HelmTemplate, case: str) -> None:
    result = helm_template(ACCEPTED[case])
    assert result.returncode == 0, result.stderr
