"""MLflow scoring and KServe V1 payloads parse into rows; malformed ones say why."""

from __future__ import annotations

import asyncio

import pytest

from service.api.protocol import decode_json, parse_kserve_v1, parse_mlflow
from service.errors import InvalidInput, PayloadTooLarge


def test_dataframe_split() -> None:
    raw = parse_mlflow({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}})
    assert raw.columns == ["a", "b"]
    assert raw.data == [[1, 2]]


def test_dataframe_records() -> None:
    assert parse_mlflow({"dataframe_records": [{"a": 1}]}).data == [{"a": 1}]


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_instances_and_inputs_rows_and_columnar(key: str) -> None:
    assert parse_mlflow({key: [[1, 2]]}).data == [[1, 2]]
    raw = parse_mlflow({key: {"a": [1, 3], "b": [2, 4]}})
    assert raw.columns == ["a", "b"]
    assert raw.data == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "expected a JSON object"),
        ({"rows": []}, "expected exactly one of"),
        ({"instances": [], "inputs": []}, "expected exactly one of"),
        ({"dataframe_split": [[1]]}, "dataframe_split needs"),
        ({"dataframe_records": [1]}, "list of objects"),
        ({"instances": 3}, "must be a list"),
        ({"inputs": {"a": [1], "b": [1, 2]}}, "same number"),
        ({"instances": [[1]], "params": {"k": 1}}, "params are not supported"),
    ],
)
def test_malformed_payloads(payload: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_mlflow(payload)


def test_kserve_v1() -> None:
    assert parse_kserve_v1({"instances": [[1, 2]]}).data == [[1, 2]]
    with pytest.raises(InvalidInput, match="KServe V1"):
        parse_kserve_v1({"dataframe_split": {}})


def test_decode_json_limits_and_errors() -> None:
    assert decode_json(b'{"a": 1}', 100) == {"a": 1}
    with pytest.raises(PayloadTooLarge):
        decode_json(b" " * 101, 100)
    with pytest.raises(InvalidInput, match="empty"):
        decode_json(b"  ", 100)
    with pytest.raises(InvalidInput, match="not valid JSON"):
        decode_json(b"{nope", 100)
    with pytest.raises(InvalidInput, match="not valid JSON"):
        decode_json(b'{"a": NaN}', 100)


async def test_a_body_still_trickling_at_the_deadline_is_a_408(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that sends its body a byte now and then must not hold the request for ever."""
    from starlette.requests import Request

    from service.api import protocol
    from service.errors import RequestTimeout

    monkeypatch.setattr(protocol, "BODY_READ_SECONDS", 0.1)
    sent = asyncio.Event()

    async def receive() -> dict[str, object]:
        if not sent.is_set():
            sent.set()
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(10)  # the rest never comes
        return {"type": "http.request", "body": b"}", "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(RequestTimeout):
        await protocol.read_body(request, 1000)
