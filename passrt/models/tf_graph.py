"""A minimal reader for TensorFlow ``GraphDef`` files (frozen graphs), without TensorFlow.

Only the protobuf wire format is decoded (no compiled protobuf classes), and only the fields a
frozen inference graph needs::

    GraphDef         node(1): NodeDef, repeated            (library, versions: skipped)
    NodeDef          name(1), op(2), input(3) repeated, device(4), attr(5): map<string, AttrValue>
    AttrValue        oneof list(1), s(2), i(3), f(4), b(5), type(6), shape(7), tensor(8)
    AttrValue.List   s(2), i(3), f(4)                       (packed or not)
    TensorProto      dtype(1), tensor_shape(2), tensor_content(4), float_val(5), int_val(7), int64_val(10)
    TensorShapeProto dim(2) { size(1) }

A map entry is a message with key(1) and value(2). ``read_graph`` returns the nodes by name;
``const`` gives a constant's value as a numpy array (following ``Identity`` nodes, which is how
frozen graphs feed weights: ``.../weights`` (Const) -> ``.../weights/read`` (Identity)).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from passrt.errors import PassrtError

# TensorFlow DataType enum -> numpy (the types a frozen CNN's constants use).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_}


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)  # "node", "node:1" or "^control_dependency"
    attrs: dict = field(default_factory=dict)  # str/int/float/bool, ("type", enum), shape list, ndarray, list


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        b = buf[pos]  # IndexError past the end: a truncated file
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _signed(v: int) -> int:
    """int32/int64 fields are two's complement varints."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one message; value is an int or bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:  # varint
            value, pos = _varint(buf, pos)
        elif wire == 2:  # length-delimited: bytes, strings, sub-messages, packed arrays
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire in (1, 5):  # fixed 64 / 32 bits
            n = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + n], pos + n
        else:  # 3, 4 (groups) are not used by GraphDef; anything else is not protobuf
            raise ValueError(f"unexpected protobuf wire type {wire}")
        if pos > end:
            raise ValueError("a field runs past the end of the data (truncated file?)")
        yield num, wire, value


def _repeated(out: list, wire: int, value, fmt: str | None) -> None:
    """Append a repeated numeric field, packed (wire 2) or one value per field; fmt None = varints."""
    if wire == 2 and fmt is None:
        pos = 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            out.append(_signed(v))
    elif wire == 2:
        out.extend(struct.unpack(f"<{len(value) // 4}{fmt}", value))
    elif wire == 5:
        out.append(struct.unpack("<f", value)[0])
    else:
        out.append(_signed(value))


def _shape(buf: bytes) -> list[int]:
    dims = []
    for num, _, dim in _fields(buf):
        if num == 2:
            dims.append(next((_signed(v) for n, _, v in _fields(dim) if n == 1), 0))
    return dims


def _tensor(buf: bytes) -> np.ndarray | None:
    dtype, shape, content, values = 1, [], None, []
    for num, wire, value in _fields(buf):
        if num == 1:
            dtype = value
        elif num == 2:
            shape = _shape(value)
        elif num == 4:
            content = value  # raw little-endian bytes: how large constants (weights) are stored
        elif num == 5:
            _repeated(values, wire, value, "f")
        elif num in (7, 10):  # int_val, int64_val
            _repeated(values, wire, value, None)
    np_dtype = _DTYPES.get(dtype)
    if np_dtype is None:  # strings, half, ...: no convolution needs them
        return None
    if content is not None:
        return np.frombuffer(content, dtype=np_dtype).reshape(shape).copy()
    # *_val fields: a single value means "fill the whole shape with it".
    count = int(np.prod(shape)) if shape else 1
    arr = np.array(values or [0], dtype=np_dtype)
    return (np.full(count, arr[0], dtype=np_dtype) if arr.size == 1 else arr).reshape(shape)


def _attr(buf: bytes):
    for num, wire, value in _fields(buf):  # a oneof: the first field present is the value
        if num == 1:  # list: s(2), i(3), f(4)
            items: list = []
            for n2, w2, v2 in _fields(value):
                if n2 == 2:
                    items.append(v2.decode())
                elif n2 in (3, 4):
                    _repeated(items, w2, v2, None if n2 == 3 else "f")
            return items
        if num == 2:
            return value.decode()
        if num == 3:
            return _signed(value)
        if num == 4:
            return struct.unpack("<f", value)[0]
        if num == 5:
            return bool(value)
        if num == 6:
            return ("type", value)
        if num == 7:
            return _shape(value)
        if num == 8:
            return _tensor(value)
    return None


def _node(buf: bytes) -> Node:
    node = Node("", "")
    for num, _, value in _fields(buf):
        if num == 1:
            node.name = value.decode()
        elif num == 2:
            node.op = value.decode()
        elif num == 3:
            node.inputs.append(value.decode())
        elif num == 5:  # map<string, AttrValue> entry; device (4) is ignored
            entry = {n: v for n, _, v in _fields(value)}
            node.attrs[entry.get(1, b"").decode()] = _attr(entry.get(2, b""))
    return node


def read_graph(path) -> dict[str, Node]:
    """Nodes of a frozen GraphDef by name, in file order. Raises PassrtError for a bad file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PassrtError(f"cannot read TensorFlow graph {path}: {e.strerror or e}") from None
    try:
        nodes = [_node(value) for num, _, value in _fields(data) if num == 1]
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as e:
        raise PassrtError(f"{path} is not a valid TensorFlow frozen graph ({e})") from None
    if not nodes or any(not n.name or not n.op for n in nodes):
        raise PassrtError(f"{path} is not a valid TensorFlow frozen graph (no well-formed nodes)")
    return {n.name: n for n in nodes}


def const(graph: dict[str, Node], name: str) -> np.ndarray:
    """Value of the constant feeding input ``name`` ("node" or "node:0"), through Identity nodes."""
    node = graph[name.split(":")[0].lstrip("^")]
    while node.op == "Identity":
        node = graph[node.inputs[0].split(":")[0]]
    if node.op != "Const" or not isinstance(node.attrs.get("value"), np.ndarray):
        raise PassrtError(f"expected a numeric constant at {name}, found a {node.op} node")
    return node.attrs["value"]
