"""values.yaml is documented (helm-docs `# --`); values.schema.json is closed draft-07."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
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


def closed_objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if "properties" in schema:
        found.append((path or "<root>", schema))
        for key, child in schema["properties"].items():
            found += closed_objects(child, f"{path}.{key}" if path else key)
    return found


def test_objects_with_known_keys_are_closed() -> None:
    for path, node in closed_objects(SCHEMA):
        assert node.get("additionalProperties") is False, path


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


def documented_keys() -> list[tuple[str, int]]:
    """(dotted key, line) of every value that helm-docs should describe."""
    root = yaml.compose(VALUES_FILE.read_text())
    keys: list[tuple[str, int]] = []

    def walk(node: yaml.Node, schema: dict[str, Any], path: str) -> None:
        assert isinstance(node, yaml.MappingNode)
        for key_node, value_node in node.value:
            key = key_node.value
            child = schema["properties"][key]
            dotted = f"{path}.{key}" if path else key
            if "properties" in child and isinstance(value_node, yaml.MappingNode):
                walk(value_node, child, dotted)  # a section: its leaves carry the docs
            else:
                keys.append((dotted, key_node.start_mark.line))

    assert root is not None
    walk(root, SCHEMA, "")
    return keys


def test_every_value_has_a_helm_docs_comment() -> None:
    lines = VALUES_FILE.read_text().splitlines()
    undocumented = []
    for key, line in documented_keys():
        comment = []
        index = line - 1
        while index >= 0 and lines[index].lstrip().startswith("#"):
            comment.append(lines[index].strip())
            index -= 1
        if not any(text.startswith("# --") for text in comment):
            undocumented.append(key)
    assert undocumented == []
