"""The lock files: one resolution, hash-pinned, and in step with pyproject.toml.

requirements/dev.txt is what `make setup` installs, runtime.txt and build.txt what the image
installs (`make lock` writes all three). No engine is needed for these checks.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The interpreters the locks are for: the image's (Debian bookworm's 3.11.2) and a developer's.
PYTHONS = ("3.11.2", "3.11.7")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, python: str) -> bool:
        env = {"python_full_version": python, "python_version": "3.11", "sys_platform": "linux"}
        return self.marker is None or self.marker.evaluate(env)


def pins(lock: str) -> list[Pin]:
    """Every ``name==version ; marker`` of a lock file with its hashes."""
    text = (LOCKS / lock).read_text()
    found = []
    for entry in re.split(r"\n(?=[A-Za-z0-9])", re.sub(r"(?m)^\s*#.*\n", "", text)):
        head, *_ = entry.split("\\", 1)
        requirement, _, marker = head.partition(";")
        name, _, version = requirement.strip().partition("==")
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry))
        condition = Marker(marker) if marker.strip() else None
        found.append(Pin(canonicalize_name(name), version, condition, hashes))
    return found


def pinned(lock: str, python: str) -> dict[str, str]:
    return {p.name: p.version for p in pins(lock) if p.applies(python)}


@pytest.mark.parametrize("lock", ["build.txt", "runtime.txt", "dev.txt"])
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    found = pins(lock)
    assert found, f"requirements/{lock} pins nothing"
    for pin in found:
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", pin.version), pin
        assert pin.hashes, f"{pin.name} has no --hash in requirements/{lock}"


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("lock", ["build.txt", "runtime.txt"])
def test_the_image_gets_the_versions_the_tests_run_with(lock: str, python: str) -> None:
    dev = pinned("dev.txt", python)
    locked = pinned(lock, python)
    if lock == "runtime.txt":
        missing = sorted(set(locked) - set(dev))
        assert not missing, f"dev.txt lacks what the image runs with: {missing}"
    differ = {n: (v, dev[n]) for n, v in locked.items() if n in dev and dev[n] != v}
    assert not differ, f"requirements/{lock} and dev.txt disagree (run `make lock`): {differ}"


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.txt", PYPROJECT["project"]["dependencies"]),
        ("dev.txt", PYPROJECT["project"]["dependencies"]),
        ("dev.txt", PYPROJECT["project"]["optional-dependencies"]["test"]),
        ("dev.txt", PYPROJECT["project"]["optional-dependencies"]["dev"]),
        ("build.txt", PYPROJECT["build-system"]["requires"]),
    ],
    ids=["runtime", "dev-runtime", "dev-test", "dev-dev", "build"],
)
def test_the_lock_satisfies_pyproject(lock: str, requirements: list[str], python: str) -> None:
    locked = pinned(lock, python)
    unmet = []
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "memoserve":  # the project's own extras, checked by their own lists
            continue
        version = locked.get(name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{text} (locked: {version})")
    assert not unmet, f"requirements/{lock} is behind pyproject.toml, run `make lock`: {unmet}"
