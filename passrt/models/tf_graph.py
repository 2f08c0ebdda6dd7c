"""A minimal reader for TensorFlow ``GraphDef`` files (frozen graphs), without TensorFlow.

Only the protobuf wire format is decoded, and only the fields a frozen inference graph
needs: node name, op, inputs and attributes (tensors, shapes, scalars, lists).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from passrt.errors import PassrtError

# TensorFlow DataType enum -> numpy
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_}


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one message; value is int or bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, value


def _packed_or_single(values: list, wire: int, value, fmt: str | None):
    """Repeated numeric fields come packed (wire 2) or one per field."""
    if wire == 2:
        if fmt is None:  # packed varints
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos)
                values.append(v)
        else:
            values.extend(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt}", value))
    elif wire == 5:
        values.append(struct.unpack("<f", value)[0])
    else:
        values.append(value)


def _shape(buf: bytes) -> list[int]:
    dims = []
    for num, _, value in _fields(buf):
        if num == 2:  # Dim
            size = 0
            for n2, _, v2 in _fields(value):
                if n2 == 1:
                    size = v2 - (1 << 64) if v2 >= 1 << 63 else v2
            dims.append(size)
    return dims


def _tensor(buf: bytes) -> np.ndarray:
    dtype, shape, content, floats, ints = 1, [], None, [], []
    for num, wire, value in _fields(buf):
        if num == 1:
            dtype = value
        elif num == 2:
            shape = _shape(value)
        elif num == 4:
            content = value
        elif num == 5:
            _packed_or_single(floats, wire, value, "f")
        elif num in (7, 10):  # int_val, int64_val (two's complement varints)
            _packed_or_single(ints, wire, value, None)
    ints = [v - (1 << 64) if v >= 1 << 63 else v for v in ints]
    np_dtype = _DTYPES.get(dtype)
    if np_dtype is None:  # strings etc.: not needed by the conv layers
        return None
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=np_dtype).reshape(shape).copy()
    values = floats if np_dtype in (np.float32, np.float64) else ints
    arr = np.array(values or [0], dtype=np_dtype)
    return (np.full(count, arr[0], dtype=np_dtype) if arr.size == 1 else arr).reshape(shape)


def _attr(buf: bytes):
    for num, wire, value in _fields(buf):
        if num == 2:
            return value.decode()
        if num == 3:
            return value - (1 << 64) if value >= 1 << 63 else value
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
        if num == 1:  # ListValue: s=2, i=3 (packed), f=4 (packed)
            items: list = []
            for n2, w2, v2 in _fields(value):
                if n2 == 2:
                    items.append(v2.decode())
                elif n2 == 3:
                    _packed_or_single(items, w2, v2, None)
                elif n2 == 4:
                    _packed_or_single(items, w2, v2, "f")
            return items
    return None


def read_graph(path) -> dict[str, Node]:
    """Nodes of a frozen GraphDef by name, in file order."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise PassrtError(f"cannot read TensorFlow graph {path}: {e.strerror}") from None
    nodes: dict[str, Node] = {}
    try:
        for num, _, value in _fields(data):
            if num != 1:  # GraphDef.node
                continue
            node = Node("", "")
            for n2, _, v2 in _fields(value):
                if n2 == 1:
                    node.name = v2.decode()
                elif n2 == 2:
                    node.op = v2.decode()
                elif n2 == 3:
                    node.inputs.append(v2.decode())
                elif n2 == 5:  # map entry: key=1, value=2
                    key, val = None, None
                    for n3, _, v3 in _fields(v2):
                        if n3 == 1:
                            key = v3.decode()
                        elif n3 == 2:
                            val = _attr(v3)
                    node.attrs[key] = val
            nodes[node.name] = node
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as e:
        raise PassrtError(f"{path} is not a valid TensorFlow frozen graph ({e})") from None
    if not nodes:
        raise PassrtError(f"{path} is not a valid TensorFlow frozen graph (no nodes)")
    return nodes
