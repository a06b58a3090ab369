"""Fuzzing a live replica: schemathesis over every route of its OpenAPI document, and
hand-made hostile bodies. No answer is a 5xx; every 4xx carries the ``{"error": {...}}`` body
and no ``X-Cache`` (nothing was looked up or stored for it)."""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from devtools.localstack.processes import Replica, start_replica
from tests.integration.chaos.conftest import Report
from tests.integration.conftest import REPO
from tests.support.payloads import IRIS_COLUMNS

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

_SEEN = {"requests": 0, "5xx": 0, "bad_4xx": 0}


@pytest.fixture(scope="module")
def fuzzed(
    iris_path: Path, tmp_path_factory: pytest.TempPathFactory, report: Report
) -> Iterator[Replica]:
    env = {
        "MEMOSERVE_MODEL_URI": str(iris_path),
        "MEMOSERVE_WORKERS": "1",
        "MEMOSERVE_MAX_BODY_BYTES": "65536",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    replica = start_replica("fuzzed", tmp_path_factory.mktemp("fuzz"), env)
    yield replica
    replica.stop()
    report.record(
        "Fuzz: schemathesis on every route + hand-made bodies (non-200: 4xx without its body)",
        requests=_SEEN["requests"],
        non_200=_SEEN["bad_4xx"],
        server_errors=_SEEN["5xx"],
    )


def check(
    status: int, headers: httpx.Headers | dict[str, str], body: bytes, *, v2: bool = False
) -> None:
    """The promise for one answer; counted for the report. On ``/v2`` (the Open Inference
    Protocol) the error body is that protocol's ``{"error": "message"}``."""
    _SEEN["requests"] += 1
    if status >= 500:
        _SEEN["5xx"] += 1
    assert status < 500, body[:300]
    if status >= 400:
        try:
            error = orjson.loads(body)["error"]
            if v2:
                assert isinstance(error, str) and error
            else:
                assert set(error) == {"code", "message", "details"}
            assert "x-cache" not in {k.lower() for k in headers}
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            _SEEN["bad_4xx"] += 1
            raise


def test_no_route_answers_5xx_or_an_error_without_its_body(fuzzed: Replica) -> None:
    """Every operation of the live OpenAPI document, with schemathesis's generated cases
    (its pytest plugin does not run on this pytest, so the strategies are driven here)."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            response = case.call(base_url=fuzzed.url, timeout=10)
            v2 = case.path.startswith("/v2")
            check(response.status_code, dict(response.headers), response.content, v2=v2)

        fuzz()


def nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def hostile() -> Iterator[tuple[str, bytes]]:
    row = [5.1, 3.5, 1.4, 0.2]
    for depth in (255, 256, 600, 1023, 1024, 1025, 5000):
        deep = "[" * depth + "1.0" + "]" * depth
        yield f"cell nested {depth} deep", f'{{"instances": [[{deep}, 1, 2, 3]]}}'.encode()
        yield f"body nested {depth} deep", ("[" * depth + "]" * depth).encode()
    # Beyond int64 and int32 is fine in these double columns (tests/unit/rows covers the
    # narrower types); beyond float64 is not, nor beyond float32 for the forest, which refuses
    # it itself (a 422 through the model's own ValueError).
    for value in ("9007199254740993", "2147483648"):
        yield f"double {value}", f'{{"instances": [[{value}, 1, 2, 3]]}}'.encode()
    for value in ("1e39", "1e999", "-1e999", "1" + "0" * 400):
        yield f"number {value[:12]}", f'{{"instances": [[{value}, 1, 2, 3]]}}'.encode()
    for value in ("true", "false", "null", '"5.1"', "{}", "[]"):
        yield f"cell {value}", f'{{"instances": [[{value}, 1, 2, 3]]}}'.encode()
    huge = "x" * 20_000
    cols = [*IRIS_COLUMNS[:3], huge]
    yield "huge column name", orjson.dumps({"dataframe_split": {"columns": cols, "data": [row]}})
    records = {"ä\u0000😀" + c: v for c, v in zip(IRIS_COLUMNS, row, strict=True)}
    yield "unicode and NUL column names", orjson.dumps({"dataframe_records": [records]})
    yield "unicode string cell", '{"instances": [["😀", 1, 2, 3]]}'.encode()
    yield "lone surrogate", b'{"instances": [["\\ud800", 1, 2, 3]]}'
    yield "invalid utf-8", b'{"instances": [[1, 2, 3, 4]], "x": "\xff\xfe"}'
    yield "no rows", b'{"instances": []}'
    yield "ragged rows", b'{"instances": [[1, 2, 3, 4], [1, 2]]}'
    yield "mixed records and lists", b'{"dataframe_records": [{"a": 1}, [1, 2, 3, 4]]}'
    yield "printable junk", string.printable.encode()
    yield "binary junk", bytes(range(256))


@pytest.mark.parametrize(("what", "body"), list(hostile()), ids=[w for w, _ in hostile()])
@pytest.mark.parametrize(
    "route", ["/invocations", "/v1/models/iris:predict", "/v2/models/iris/infer"]
)
def test_hostile_bodies_get_a_readable_4xx(
    fuzzed: Replica, route: str, what: str, body: bytes
) -> None:
    r = httpx.post(
        f"{fuzzed.url}{route}", content=body, headers={"content-type": "application/json"}
    )
    v2 = route.startswith("/v2")
    check(r.status_code, r.headers, r.content, v2=v2)
    if v2:  # not V2 tensors, any of them: a 400 (413 when too large)
        expected: tuple[int, ...] = (400, 413)
    else:
        expected = (200,) if what.startswith("double ") else (413, 422)
    assert r.status_code in expected, (what, r.status_code, r.text[:200])
