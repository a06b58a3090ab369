"""Keys: equal inputs share one, anything that changes the answer changes it."""

from __future__ import annotations

from hashlib import blake2b

import pytest

from service.cache.keys import KeySpace
from service.errors import InvalidInput
from service.rows.canonical import RawRows, canonicalize
from service.rows.schema import ColumnSpec, InputSchema

SCHEMA = InputSchema.named(["a", "b", "c"])
KEYS = KeySpace("ns")


def key(
    data: list[object],
    schema: InputSchema = SCHEMA,
    columns: list[str] | None = None,
    version: str = "7",
    output: str = "predict",
) -> str:
    rows = canonicalize(RawRows(data, columns), schema)
    return KEYS.rows(KEYS.row_prefix("iris", version, output), rows.row_bytes)[0]


def test_key_layout() -> None:
    parts = key([[1, 2, 3]]).split(":")
    assert parts[:5] == ["ns", "row", "iris", "7", "predict"]
    assert len(parts[5]) == 32  # BLAKE2b-128, hex


def test_the_layout_is_pinned() -> None:
    # docs/architecture.md documents these; changing one is a rollout (old keys expire by TTL).
    row = KEYS.row_prefix("iris", "7", "predict") + "d"
    assert row == "ns:row:iris:7:predict:d"
    assert KEYS.lock(row) == "ns:lock:iris:7:predict:d"
    assert KEYS.hot("iris", "7", "predict") == "ns:hot:iris:7:predict"
    assert KEYS.active("iris") == "ns:active:iris"
    assert KEYS.purge_lock("iris", "7", "swap") == "ns:purge:iris:7:swap"
    assert KEYS.events == "ns:events"
    assert KEYS.delivery("id") == "ns:delivery:" + blake2b(b"id", digest_size=16).hexdigest()
    assert KEYS.version_prefix("iris", "7") == "ns:row:iris:7:"


def test_only_row_keys_live_under_a_version_prefix() -> None:
    prefix = KEYS.version_prefix("iris", "7")
    row = KEYS.row_prefix("iris", "7", "predict") + "d"
    steering = [
        KEYS.lock(row),
        KEYS.hot("iris", "7", "predict"),
        KEYS.delivery("iris:7:predict"),
        KEYS.active("iris"),
        KEYS.purge_lock("iris", "7", "swap"),
        KEYS.events,
    ]
    assert row.startswith(prefix)
    assert not [k for k in steering if k.startswith(prefix)]


def test_int_and_float_share_a_key() -> None:
    assert key([[5, 1, 2]]) == key([[5.0, 1.0, 2.0]])


def test_negative_zero_is_zero() -> None:
    assert key([[-0.0, 1, 2]]) == key([[0.0, 1, 2]])


def test_record_column_order_does_not_matter() -> None:
    a = key([{"a": 1, "b": 2, "c": 3}])
    b = key([{"c": 3, "a": 1, "b": 2}])
    assert a == b == key([[1, 2, 3]])


def test_split_columns_are_reordered_by_signature() -> None:
    assert key([[3, 1, 2]], columns=["c", "a", "b"]) == key([[1, 2, 3]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_are_refused(bad: float) -> None:
    with pytest.raises(InvalidInput, match="NaN and infinity"):
        key([[bad, 1, 2]])


def test_other_version_or_output_is_another_key() -> None:
    base = key([[1, 2, 3]])
    assert key([[1, 2, 3]], version="8") != base
    assert key([[1, 2, 3]], output="predict_proba") != base


def test_different_values_differ() -> None:
    assert key([[1, 2, 3]]) != key([[1, 2, 3.0000001]])


def test_integer_column_rejects_fraction_and_accepts_whole_float() -> None:
    schema = InputSchema((ColumnSpec("n", "long"), ColumnSpec("x", "double")))
    assert key([[5.0, 1]], schema) == key([[5, 1.0]], schema)
    with pytest.raises(InvalidInput, match="expected an integer"):
        key([[5.5, 1]], schema)


def test_string_columns_use_the_mixed_path() -> None:
    schema = InputSchema((ColumnSpec("s", "string"), ColumnSpec("x", "double")))
    assert key([["a", 1]], schema) == key([{"x": 1.0, "s": "a"}], schema)
    assert key([["a", 1]], schema) != key([["b", 1]], schema)


def test_version_pattern_escapes_glob_characters() -> None:
    assert KEYS.version_pattern("m*", "3") == "ns:row:m\\*:3:*"
