"""The Dockerfile: hadolint-clean, multi-stage, dependencies before source, numeric user.

Static checks of the file; the image suite (tests/image) builds it and runs it as the chart does.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_tools import CHART, ROOT

pytestmark = pytest.mark.k8s

DOCKERFILE = ROOT / "Dockerfile"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            current = found.setdefault(name.strip(), [("FROM", image.strip())])
        else:
            current.append((keyword, rest))
    return found


def build_args() -> dict[str, str]:
    """The ``ARG name=default`` lines before the first FROM."""
    args = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def test_hadolint(hadolint: str) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_is_pinned_by_digest_and_can_be_overridden() -> None:
    base = build_args()["BASE_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    found = stages()
    assert list(found) == ["deps", "builder", "venv", "runtime"]
    assert [steps[0] for steps in found.values()] == [
        ("FROM", "${BASE_IMAGE}"),
        ("FROM", "deps"),
        ("FROM", "deps"),
        ("FROM", "${BASE_IMAGE}"),
    ]


def test_dependencies_install_from_the_lock_files_before_the_source_is_copied() -> None:
    deps = stages()["deps"]
    install = next(i for i, (k, rest) in enumerate(deps) if k == "RUN" and "-r " in rest)
    assert "--require-hashes" in deps[install][1]
    assert "-r requirements/runtime.txt" in deps[install][1]
    copied_before = [rest for k, rest in deps[:install] if k == "COPY"]
    assert copied_before == [
        "requirements/build.txt requirements/runtime.txt requirements/",
        "docker/slim_venv.py docker/",
    ]
    assert not any(k == "COPY" and "service" in rest for k, rest in deps)
    assert any(k == "COPY" and "service" in rest for k, rest in stages()["builder"])


def test_runtime_copies_only_the_virtualenv_and_the_packages() -> None:
    copies = [rest for k, rest in stages()["runtime"] if k == "COPY"]
    assert copies == [
        "--from=venv /opt/venv /opt/venv",
        "--from=builder /opt/memoserve /opt/memoserve",
        "--from=builder /src/service /app/service",
        "--from=builder /src/mlflow/memoserve_models /app/memoserve_models",
    ]


def test_numeric_user_and_exec_form_entrypoint() -> None:
    runtime = dict(stages()["runtime"])
    assert runtime["USER"] == "10001:10001"
    assert json.loads(runtime["ENTRYPOINT"]) == ["memoserve"]
    assert json.loads(runtime["CMD"]) == ["serve"]
    assert runtime["EXPOSE"] == str(VALUES["containerPort"])


def test_runtime_writes_only_where_the_chart_mounts_emptydirs() -> None:
    env = " ".join(rest for k, rest in stages()["runtime"] if k == "ENV")
    assert "HOME=/tmp" in env
    assert f"PROMETHEUS_MULTIPROC_DIR={VALUES['prometheus']['multiprocDir']}" in env
    assert f"MEMOSERVE_MODEL_CACHE_DIR={VALUES['modelCache']['mountPath']}/models" in env


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negated
        return keep

    sources = (
        "pyproject.toml",
        "README.md",
        "requirements/build.txt",
        "requirements/runtime.txt",
        "docker/slim_venv.py",
        "service/cli.py",
        "mlflow/memoserve_models",
    )
    for source in sources:
        assert included(source), source
        assert (ROOT / source).exists(), source
    for excluded in (
        ".venv/bin/python",
        ".tools/bin/helm",
        ".git/HEAD",
        ".cache/image/build.log",
        "charts/memoserve",
        "devtools/localstack/stack.py",
        "tests/image/image_tools.py",
        "requirements/dev.txt",
    ):
        assert not included(excluded), excluded
    assert not included(str(Path("service/__pycache__/cli.cpython-311.pyc")))
