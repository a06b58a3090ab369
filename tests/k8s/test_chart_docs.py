"""The chart README is generated from values.yaml's `# --` comments, and is up to date."""

from __future__ import annotations

from pathlib import Path

import chart_docs
import pytest
from chart_docs import Row

pytestmark = pytest.mark.k8s


def test_readme_is_generated_from_the_values() -> None:
    expected = chart_docs.render(chart_docs.TEMPLATE.read_text(), chart_docs.VALUES.read_text())
    assert chart_docs.README.read_text() == expected, (
        "charts/memoserve/README.md is stale: run `python tests/k8s/chart_docs.py`"
    )


def test_every_value_has_a_description() -> None:
    rows = chart_docs.value_rows(chart_docs.VALUES.read_text())
    assert len(rows) > 100
    assert [row.key for row in rows if not row.description] == []
    keys = {row.key for row in rows}
    assert {
        "existingSecret",
        "mlflow.existingSecret",
        "tests.payload",
        "podSecurityContext",
    } <= keys


def test_check_fails_on_a_stale_readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    monkeypatch.setattr(chart_docs, "README", readme)
    assert chart_docs.main(["--check"]) == 1  # missing
    assert chart_docs.main([]) == 0
    assert chart_docs.main(["--check"]) == 0
    readme.write_text(readme.read_text().replace("| `replicaCount` |", "| `replicas` |"))
    assert chart_docs.main(["--check"]) == 1


VALUES = """\
# yaml-language-server: $schema=values.schema.json
# A file comment is no description.

# -- A number.
replicas: 2
section:
  # -- A leaf of an undocumented map,
  # described over two lines.
  leaf: "x"
  empty: {}
# -- A documented map is one row, and its keys none.
resources:
  requests: {cpu: 100m}
# -- A documented map with documented keys is a section.
# @default -- see below
settings:
  # -- One.
  one: 1
  # -- Two.
  two: [2]
# -- (int) A null takes its type from the description.
target: null
# -- An | is escaped.
flags: [a, b]
"""


def test_rows_follow_the_helm_docs_rules() -> None:
    assert chart_docs.value_rows(VALUES) == [
        Row("replicas", "int", "`2`", "A number."),
        Row(
            "section.leaf",
            "string",
            '`"x"`',
            "A leaf of an undocumented map, described over two lines.",
        ),
        Row("section.empty", "object", "`{}`", ""),
        Row(
            "resources",
            "object",
            '`{"requests":{"cpu":"100m"}}`',
            "A documented map is one row, and its keys none.",
        ),
        Row(
            "settings", "object", "see below", "A documented map with documented keys is a section."
        ),
        Row("settings.one", "int", "`1`", "One."),
        Row("settings.two", "list", "`[2]`", "Two."),
        Row("target", "int", "`nil`", "A null takes its type from the description."),
        Row("flags", "list", '`["a","b"]`', "An | is escaped."),
    ]
    assert "| An \\| is escaped. |" in chart_docs.values_table(chart_docs.value_rows(VALUES))


def test_a_value_without_a_description_is_refused() -> None:
    with pytest.raises(ValueError, match="section.empty"):
        chart_docs.render(chart_docs.TABLE_ACTION, VALUES)
    described = VALUES.replace("  empty: {}\n", "  # -- Now described.\n  empty: {}\n")
    readme = chart_docs.render(chart_docs.TABLE_ACTION, described)
    assert "| `section.empty` | object | `{}` | Now described. |" in readme


def test_a_section_wants_every_key_described() -> None:
    described = VALUES.replace("  empty: {}\n", "  # -- Now described.\n  empty: {}\n")
    with pytest.raises(ValueError, match="settings.two"):
        chart_docs.render(chart_docs.TABLE_ACTION, described.replace("  # -- Two.\n", ""))


def test_a_template_action_it_does_not_know_is_refused() -> None:
    values = "# -- A number.\nreplicas: 2\n"
    with pytest.raises(ValueError, match="exactly once"):
        chart_docs.render("# no table\n", values)
    with pytest.raises(ValueError, match="does not know"):
        chart_docs.render(f'{{{{ template "chart.header" . }}}}\n{chart_docs.TABLE_ACTION}', values)
