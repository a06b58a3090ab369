"""Open Inference Protocol (KServe V2) tensors: a request parsed into the same ``RawRows`` the
other protocols give (so equal rows share cache entries), and predictions encoded as tensors,
in JSON or with the binary tensor data extension. No pydantic: this is the hot path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.errors import InvalidInput
from service.rows.canonical import RawRows
from service.rows.schema import InputSchema

HEADER_LENGTH = "inference-header-content-length"
"""Header giving the JSON part's length of a binary tensor body (request and response)."""

_NUMPY: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*_NUMPY, "BYTES")
"""Tensor datatypes this server reads (BF16 is not one)."""
_INTS = {d: np.iinfo(np.dtype(t)) for d, t in _NUMPY.items() if d[0] in "UI"}
_JSON_TYPES: dict[str, frozenset[type]] = {
    **{d: frozenset({int, float}) for d in ("FP16", "FP32", "FP64")},
    **{d: frozenset({int}) for d in _INTS},
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
}
_REQUEST_CONTENT_TYPES = ("np", "pd")
_INPUT_CONTENT_TYPES = ("np", "str")
# MLflow column types, by the tensor datatypes that may fill them.
_MLFLOW_OF = {"BYTES": frozenset({"string"}), "BOOL": frozenset({"boolean"})}
_NUMERIC_COLUMNS = frozenset({"double", "float", "long", "integer"})


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output kind to answer, and whether its data goes as binary."""

    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed V2 request: its id, its rows, and the outputs asked for (None: the default)."""

    id: str | None
    rows: RawRows
    outputs: list[RequestedOutput] | None
    binary_default: bool


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    values: list[Any]  # flat, row-major
    content_type: str | None


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """The JSON header and, with the binary extension, the tensor bytes after it."""
    if header_length is None:
        return body, None
    digits = header_length.strip()
    if not (digits.isascii() and digits.isdigit()) or int(digits) > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within "
            f"the body of {len(body)} bytes"
        )
    n = int(digits)
    return body[:n], memoryview(body)[n:]


def parse_infer(payload: Any, binary: memoryview | None, schema: InputSchema) -> InferRequest:
    """The rows and output choices of a V2 infer request; InvalidInput names any fault."""
    if not isinstance(payload, dict):
        raise InvalidInput('expected a JSON object {"inputs": [...]} (Open Inference Protocol)')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput('"inputs" must be a non-empty list of tensors')
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string')
    params = _parameters(payload, "the request")
    content_type = params.get("content_type")
    if content_type is not None and content_type not in _REQUEST_CONTENT_TYPES:
        raise InvalidInput(
            f"content_type {content_type!r} is not supported; use one of "
            f"{list(_REQUEST_CONTENT_TYPES)}"
        )
    reader = _BinaryReader(binary)
    tensors = [_tensor(t, i, reader) for i, t in enumerate(inputs)]
    reader.finish()
    rows = _rows(tensors, schema, content_type)
    binary_default = params.get("binary_data_output") is True
    return InferRequest(request_id, rows, _outputs(payload, binary_default), binary_default)


def _parameters(obj: dict[str, Any], what: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f'"parameters" of {what} must be an object')
    return params


def _outputs(payload: dict[str, Any], binary_default: bool) -> list[RequestedOutput] | None:
    outputs = payload.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
    wanted: list[RequestedOutput] = []
    for o in outputs:
        name = o.get("name")
        if not isinstance(name, str):
            raise InvalidInput('every requested output needs a "name" string')
        if any(w.name == name for w in wanted):
            raise InvalidInput(f"output {name!r} is requested twice")
        binary = _parameters(o, f"output {name!r}").get("binary_data", binary_default)
        wanted.append(RequestedOutput(name, binary is True))
    return wanted or None


class _BinaryReader:
    """Hands out the tensor bytes after the JSON header, in input order."""

    def __init__(self, data: memoryview | None) -> None:
        self.data = data
        self.offset = 0

    def take(self, name: str, size: Any) -> memoryview:
        if self.data is None:
            raise InvalidInput(
                f"input {name!r} has binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
        end = self.offset + size
        if end > len(self.data):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} runs past the body's "
                f"{len(self.data) - self.offset} remaining bytes"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def finish(self) -> None:
        if self.data is not None and self.offset != len(self.data):
            raise InvalidInput(
                f"{len(self.data) - self.offset} bytes after the last input's binary data"
            )


def _tensor(t: Any, i: int, reader: _BinaryReader) -> _Tensor:
    if not isinstance(t, dict):
        raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype, data")
    name = t.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f'inputs[{i}] needs a "name" string')
    shape = t.get("shape")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d > 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of positive integers")
    if len(shape) > 2:
        raise InvalidInput(
            f"input {name!r} has shape {shape}; this server takes [rows] per column or "
            "[rows, features]"
        )
    datatype = t.get("datatype")
    if not isinstance(datatype, str) or datatype not in _JSON_TYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported; use one of {list(DATATYPES)}"
        )
    params = _parameters(t, f"input {name!r}")
    content_type = params.get("content_type")
    if content_type is not None and content_type not in _INPUT_CONTENT_TYPES:
        raise InvalidInput(
            f"input {name!r}: content_type {content_type!r} is not supported; use one of "
            f"{list(_INPUT_CONTENT_TYPES)}"
        )
    count = math.prod(shape)
    if "binary_data_size" in params:
        if t.get("data") is not None:
            raise InvalidInput(f"input {name!r} has both data and binary_data_size")
        values = _from_binary(name, datatype, reader.take(name, params["binary_data_size"]))
    else:
        values = _from_json(name, datatype, t.get("data"), len(shape))
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r} has {len(values)} values; shape {shape} needs {count}",
            {"input": name, "shape": shape, "values": len(values)},
        )
    return _Tensor(name, shape, datatype, values, content_type)


def _from_json(name: str, datatype: str, data: Any, dims: int) -> list[Any]:
    """The flat values of JSON tensor data, flat or nested as deep as the shape (no deeper)."""
    if not isinstance(data, list):
        raise InvalidInput(f'input {name!r} needs "data" as a list (or binary_data_size)')
    flat = data
    if data and type(data[0]) is list:
        if dims < 2 or not all(type(r) is list for r in data):
            raise InvalidInput(f"input {name!r}: data is nested deeper than its shape")
        flat = [v for row in data for v in row]
    types = set(map(type, flat))
    allowed = _JSON_TYPES[datatype]
    if not types <= allowed:
        got = sorted(t.__name__ for t in types - allowed)
        raise InvalidInput(
            f"input {name!r}: {datatype} data holds {', '.join(got)} values",
            {"input": name, "datatype": datatype, "got": got},
        )
    bounds = _INTS.get(datatype)
    if bounds is not None and flat and (min(flat) < bounds.min or max(flat) > bounds.max):
        raise InvalidInput(f"input {name!r}: a value is outside the range of {datatype}")
    return flat


def _from_binary(name: str, datatype: str, chunk: memoryview) -> list[Any]:
    if datatype == "BYTES":
        return _bytes_elements(name, chunk)
    dtype = np.dtype(_NUMPY[datatype])
    if len(chunk) % dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} values"
        )
    if datatype == "BOOL":
        values: list[Any] = (np.frombuffer(chunk, np.uint8) != 0).tolist()
    else:
        values = np.frombuffer(chunk, dtype).tolist()
    return values


def _bytes_elements(name: str, chunk: memoryview) -> list[Any]:
    """BYTES elements, each a 4-byte little-endian length then its bytes, as strings."""
    out: list[Any] = []
    data, offset = bytes(chunk), 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput(f"input {name!r}: a BYTES element's length prefix is cut short")
        size = int.from_bytes(data[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(data):
            raise InvalidInput(f"input {name!r}: a BYTES element runs past its binary data")
        try:
            out.append(data[offset : offset + size].decode())
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r}: a BYTES element is not UTF-8 text") from None
        offset += size
    return out


def _rows(tensors: list[_Tensor], schema: InputSchema, content_type: str | None) -> RawRows:
    """One tensor [rows, features] as positional rows, or one tensor per column."""
    names = schema.names
    first = tensors[0]
    matrix = content_type == "np" or (
        content_type != "pd"
        and len(tensors) == 1
        and (first.content_type == "np" or names is None or first.name not in names)
    )
    if matrix:
        return _matrix(tensors, schema)
    return _columns(tensors, schema)


def _matrix(tensors: list[_Tensor], schema: InputSchema) -> RawRows:
    if len(tensors) != 1:
        raise InvalidInput(f"expected one tensor [rows, features], got {len(tensors)} inputs")
    (t,) = tensors
    width = schema.width
    if len(t.shape) == 1:
        if width not in (None, 1):
            raise InvalidInput(
                f"input {t.name!r} has shape {t.shape}; the model takes [rows, {width}] "
                "(or one tensor per column, named after the columns)",
                {"input": t.name, "shape": t.shape, "expected": [-1, width]},
            )
        shape = [t.shape[0], 1]
    else:
        shape = t.shape
    rows, cols = shape
    if width is not None and cols != width:
        raise InvalidInput(
            f"input {t.name!r} has shape {t.shape}; the model takes [rows, {width}]",
            {"input": t.name, "shape": t.shape, "expected": [-1, width]},
        )
    for j, spec in enumerate(schema.columns):
        _check_datatype(t, spec.dtype, spec.name if spec.name is not None else str(j))
    if not schema.columns:
        _check_datatype(t, "double", "any")
    v = t.values
    return RawRows([v[i * cols : (i + 1) * cols] for i in range(rows)])


def _columns(tensors: list[_Tensor], schema: InputSchema) -> RawRows:
    names = schema.names
    if names is None:
        raise InvalidInput(
            "this model has no column names: send one tensor of shape [rows, features]"
        )
    seen: set[str] = set()
    rows: int | None = None
    dtypes = {c.name: c.dtype for c in schema.columns}
    for t in tensors:
        if t.name in seen:
            raise InvalidInput(f"input {t.name!r} is given twice")
        seen.add(t.name)
        if t.name not in dtypes:
            raise InvalidInput(
                f"input {t.name!r} is not a column of this model",
                {"unexpected": t.name, "expected": list(names)},
            )
        if len(t.shape) == 2 and t.shape[1] != 1:
            raise InvalidInput(
                f"input {t.name!r} has shape {t.shape}; a column tensor is [rows] or [rows, 1]"
            )
        if rows is not None and t.shape[0] != rows:
            raise InvalidInput(
                f"input {t.name!r} has {t.shape[0]} rows, the inputs before it {rows}"
            )
        rows = t.shape[0]
        _check_datatype(t, dtypes[t.name], t.name)
    missing = [n for n in names if n not in seen]
    if missing:
        raise InvalidInput(
            f"missing input tensors for columns {missing}",
            {"missing": missing, "expected": list(names)},
        )
    columns = [t.values for t in tensors]
    return RawRows([list(r) for r in zip(*columns, strict=True)], [t.name for t in tensors])


def _check_datatype(t: _Tensor, column_type: str, column: str) -> None:
    allowed = _MLFLOW_OF.get(t.datatype, _NUMERIC_COLUMNS)
    if column_type not in allowed:
        raise InvalidInput(
            f"input {t.name!r} is {t.datatype}, but column {column!r} is {column_type}",
            {"input": t.name, "datatype": t.datatype, "column": column, "expected": column_type},
        )


def datatype_of(column_type: str) -> str:
    """The V2 datatype of an MLflow column type."""
    return _V2_OF.get(column_type, "BYTES")


_V2_OF = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}


# --- answers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output's JSON description (with ``data`` unless binary) and its binary bytes."""

    meta: dict[str, Any]
    binary: bytes | None


def output_tensor(name: str, rows: Sequence[bytes], binary: bool) -> OutputTensor:
    """A tensor of one output kind from its per-row cached JSON values: [rows] of scalars,
    [rows, k] of equal-length lists, else [rows] of JSON text (BYTES)."""
    values: list[Any] = orjson.loads(b"[" + b",".join(rows) + b"]")
    shape = [len(values)]
    flat = values
    if values and all(type(v) is list for v in values):
        widths = {len(v) for v in values}
        if len(widths) == 1:
            shape.append(widths.pop())
            flat = [x for v in values for x in v]
    datatype = _datatype(flat)
    if datatype == "BYTES":
        flat = [x if type(x) is str else orjson.dumps(x).decode() for x in flat]
    meta: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if not binary:
        meta["data"] = flat
        return OutputTensor(meta, None)
    data = _binary(datatype, flat)
    meta["parameters"] = {"binary_data_size": len(data)}
    return OutputTensor(meta, data)


def _datatype(flat: list[Any]) -> str:
    types = set(map(type, flat))
    if types == {bool}:
        return "BOOL"
    if types == {int} and all(-(2**63) <= v < 2**63 for v in (min(flat), max(flat))):
        return "INT64"
    if types and types <= {int, float, type(None)}:  # None: NaN, as orjson writes it
        return "FP64"
    return "BYTES"


def _binary(datatype: str, flat: list[Any]) -> bytes:
    if datatype == "BYTES":
        parts = [s.encode() for s in flat]
        return b"".join(len(p).to_bytes(4, "little") + p for p in parts)
    if datatype == "FP64":
        flat = [math.nan if v is None else v for v in flat]
    return np.asarray(flat, dtype=_NUMPY[datatype]).tobytes()
