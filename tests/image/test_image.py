"""The built image itself: its size and where the bytes go, what it ships and what it does not,
the locked packages, the pinned base, the user and entry point the chart relies on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.image import image_tools
from tests.image.conftest import record
from tests.image.image_tools import Built, Engine
from tests.image.test_lock import pins

pytestmark = pytest.mark.image

MAX_BYTES = 450_000_000


def in_image(engine: Engine, image: str, code: str) -> Any:
    """What ``python -c code`` prints as JSON, run in a throw-away container of ``image``."""
    return json.loads(
        engine.docker(
            "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", code
        ).stdout
    )


def test_the_image_is_under_450_mb(engine: Engine, built: Built) -> None:
    report = image_tools.size_report(engine, built.image_id)
    record(f"image: {built.size_bytes / 1e6:.0f} MB (limit {MAX_BYTES / 1e6:.0f} MB)")
    for line in report.splitlines():
        record("  " + line)
    assert built.size_bytes < MAX_BYTES, report


def test_it_ships_the_service_and_no_tooling(engine: Engine, image: str) -> None:
    found = in_image(
        engine,
        image,
        "import importlib.metadata as m, importlib.util as u, json, pathlib, shutil\n"
        "dists = {d.metadata['Name'].lower() for d in m.distributions()}\n"
        "site = next(pathlib.Path('/opt/venv/lib').glob('python3.*/site-packages'))\n"
        "print(json.dumps({\n"
        "  'dists': sorted(dists),\n"
        "  'modules': {n: u.find_spec(n) is not None for n in\n"
        "              ['service', 'memoserve_models', 'devtools', 'tests', 'pip']},\n"
        "  'tools': {t: shutil.which(t) for t in ['gcc', 'cc', 'strip', 'pip', 'memoserve']},\n"
        "  'tests': [str(p) for p in site.glob('*/**/tests') if p.is_dir()][:5],\n"
        "  'app': sorted(p.name for p in pathlib.Path('/app').iterdir()),\n"
        "}))",
    )
    assert {"mlflow-skinny", "skops", "scikit-learn", "memoserve"} <= set(found["dists"])
    for absent in ("mlflow", "pytest", "httpx", "mypy", "ruff", "pip", "setuptools"):
        assert absent not in found["dists"], f"{absent} is in the image"
    assert found["modules"] == {
        "service": True,
        "memoserve_models": True,
        "devtools": False,
        "tests": False,
        "pip": False,
    }
    assert found["tools"] == {
        "gcc": None,
        "cc": None,
        "strip": None,
        "pip": None,
        "memoserve": "/opt/memoserve/bin/memoserve",
    }
    assert found["tests"] == [], "the packages' test suites are shipped"
    assert found["app"] == ["memoserve_models", "service"]


def test_its_packages_are_the_lock_files(engine: Engine, image: str) -> None:
    installed = in_image(
        engine,
        image,
        "import importlib.metadata as m, json, platform, re\n"
        "print(json.dumps({'python': platform.python_version(), 'dists': {\n"
        "  re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version\n"
        "  for d in m.distributions() if d.metadata['Name'] != 'memoserve'}}))",
    )
    python = installed["python"]
    assert python.startswith("3.11."), python
    wanted = {
        p.name: p.version
        for p in pins("runtime.txt")
        if p.applies(python) and p.name not in ("setuptools", "wheel")
    }
    assert installed["dists"] == wanted


def test_it_is_built_on_the_pinned_base_or_its_recorded_stand_in(
    engine: Engine, built: Built
) -> None:
    labels = json.loads(
        engine.docker(
            "image", "inspect", "--format", "{{json .Config.Labels}}", built.image_id
        ).stdout
    )
    assert labels["org.opencontainers.image.base.name"] == built.base
    default = image_tools.default_base()
    assert "@sha256:" in default, "the Dockerfile's BASE_IMAGE is not pinned by digest"
    if built.base != default:  # the local stand-in, by its content-addressed ID
        assert built.base.startswith("sha256:"), built.base
        tags = engine.docker("image", "inspect", "--format", "{{json .RepoTags}}", built.base)
        assert f"memoserve-base:{image_tools.SUITE}-" in tags.stdout
    record(f"base: {built.base}")


def test_it_runs_as_the_chart_expects(engine: Engine, image: str) -> None:
    config = json.loads(
        engine.docker("image", "inspect", "--format", "{{json .Config}}", image).stdout
    )
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["memoserve"]
    assert config["Cmd"] == ["serve"]
    assert "8080/tcp" in config["ExposedPorts"]
