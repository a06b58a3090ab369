"""The image suite: the real image, built here and run by a real container engine as the chart
runs it (marker `image`; `make image-test`, and part of `make test`).

The engine and the build are `image_tools`' (the same as `make image`). Without an engine the
tests that need one skip, saying why; the lock-file checks run anyway. Figures (size, build
time, cold start, request counts) are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image import image_tools, pods
from tests.image.image_tools import Built, Engine, Unavailable

FIGURES: list[str] = []


def record(line: str) -> None:
    """A figure for the end-of-run summary."""
    FIGURES.append(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.image)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("memoserve image")
        for line in FIGURES:
            terminalreporter.write_line(line)


class _Log:
    """image_tools' progress lines, into the figures when they say something happened."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith(">> ") and ("debootstrap" in line or "tarball" in line):
                record(line[3:])
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """A container engine for the session (memoserve's own dockerd, stopped after, if none
    ran); every container the session started is removed before it stops."""
    with contextlib.ExitStack() as stack:
        try:
            eng = stack.enter_context(image_tools.engine(_Log()))
        except Unavailable as exc:
            pytest.skip(f"no container engine can be had here: {exc}")
        stack.callback(pods.remove_all, eng)
        record(f"engine: {eng.describe()}")
        yield eng


@pytest.fixture(scope="session")
def built(engine: Engine) -> Built:
    """The image, built now from the work tree (a failed build fails the tests, never skips)."""
    try:
        base = image_tools.base_image(engine, _Log())
    except Unavailable as exc:
        pytest.skip(f"no base image can be had here: {exc}")
    result = image_tools.build(engine, base, log=None)
    record(
        f"build: {result.seconds:.0f} s ({result.cached_steps} of {result.steps} steps from the "
        f"layer cache), base {base[:40]}"
    )
    return result


@pytest.fixture(scope="session")
def image(built: Built) -> str:
    """The built image's ID (not the tag, which another build may move meanwhile)."""
    return built.image_id
