"""The chaos suite: faults injected between real processes, and one report of what they did.

Every module marks itself ``pytestmark = [pytest.mark.integration, pytest.mark.chaos]``.

Each scenario records what its clients saw (requests, non-200 answers, answers of an older
version after a newer one from the same replica, 5xx); ``make chaos`` and ``make test`` print
the table at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools.localstack.faults import FaultProxy
from devtools.localstack.processes import LOOPBACK, Proc, start_redis


@dataclass
class Row:
    scenario: str
    requests: int
    non_200: int
    stale: int
    server_errors: int


_ROWS: list[Row] = []


class Report:
    """Rows of the chaos table."""

    def record(
        self, scenario: str, *, requests: int, non_200: int, stale: int = 0, server_errors: int = 0
    ) -> None:
        """Add what one scenario's clients saw."""
        _ROWS.append(Row(scenario, requests, non_200, stale, server_errors))


@pytest.fixture(scope="session")
def report() -> Report:
    return Report()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    terminalreporter.section("chaos report")
    for line in table(_ROWS):
        terminalreporter.write_line(line)


def table(rows: list[Row]) -> list[str]:
    """The report as a Markdown table."""
    lines = [
        "| scenario | requests | non-200 | stale-version answers | 5xx |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.requests} | {r.non_200} | {r.stale} | {r.server_errors} |"
        )
    return lines


@pytest.fixture
def redis_behind_proxy(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, FaultProxy]]:
    """A redis-server of this test's own and a fault proxy in front of it."""
    server = start_redis("redis-chaos", tmp_path_factory.mktemp("redis-chaos"))
    proxy = FaultProxy(LOOPBACK, server.port).start()
    yield server, proxy
    proxy.stop()
    server.stop()


@pytest.fixture(scope="session")
def chaos_mlflow(mlflow_proc: Proc) -> Proc:
    """The session's real MLflow server (tests/integration/conftest.py), for the chaos
    scenarios (a proxy goes in front where needed; none stops it)."""
    return mlflow_proc
