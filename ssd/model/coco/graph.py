"""Reading a frozen TensorFlow ``GraphDef`` (``.pb``) without TensorFlow.

A frozen graph is one ``GraphDef`` protobuf message whose weights are ``Const`` nodes
holding a ``TensorProto``. We parse it with the maintained protobuf runtime
(``google.protobuf``) and a minimal subset of TensorFlow's schema, built at run time with
``descriptor_pb2`` + ``message_factory``. Why not hand-decode the wire format: protobuf's
C parser (upb) reads the 70 MB graph in well under a second, handles packed/unpacked
repeated fields, varints and unknown fields (``versions``, ``library``, ...) for us, and the
schema below reads like the ``.proto`` files it copies, so it is checkable line by line.

Field numbers, from tensorflow/tensorflow ``tensorflow/core/framework/``:

- ``graph.proto``:        GraphDef { repeated NodeDef node = 1; }
- ``node_def.proto``:     NodeDef { string name = 1; string op = 2; repeated string input = 3;
                          string device = 4; map<string, AttrValue> attr = 5; }
- ``attr_value.proto``:   AttrValue { ListValue list = 1; bytes s = 2; int64 i = 3;
                          float f = 4; bool b = 5; DataType type = 6;
                          TensorShapeProto shape = 7; TensorProto tensor = 8; }
                          ListValue { repeated bytes s = 2; repeated int64 i = 3;
                          repeated float f = 4; }
- ``tensor.proto``:       TensorProto { DataType dtype = 1; TensorShapeProto tensor_shape = 2;
                          bytes tensor_content = 4; repeated float float_val = 5;
                          repeated int32 int_val = 7; }
- ``tensor_shape.proto``: TensorShapeProto { repeated Dim dim = 2; } Dim { int64 size = 1; }
- ``types.proto``:        DT_FLOAT = 1, DT_INT32 = 3.

A ``map<string, AttrValue>`` is on the wire a repeated ``{string key = 1; AttrValue value =
2;}`` message, which is how it is declared here. Fields not declared (``device``,
``AttrValue.func``, ``GraphDef.versions``, ...) are kept by protobuf as unknown fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

DT_FLOAT = 1
DT_INT32 = 3
_NUMPY = {DT_FLOAT: np.dtype("<f4"), DT_INT32: np.dtype("<i4")}

_F = descriptor_pb2.FieldDescriptorProto
_SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    # message: [(field, number, type, label, message type)]
    "Dim": [("size", 1, _F.TYPE_INT64, _F.LABEL_OPTIONAL, "")],
    "TensorShapeProto": [("dim", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Dim")],
    "TensorProto": [
        ("dtype", 1, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),  # an enum on the wire = varint
        ("tensor_shape", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "TensorShapeProto"),
        ("tensor_content", 4, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, ""),
        ("float_val", 5, _F.TYPE_FLOAT, _F.LABEL_REPEATED, ""),
        ("int_val", 7, _F.TYPE_INT32, _F.LABEL_REPEATED, ""),
    ],
    "ListValue": [
        ("s", 2, _F.TYPE_BYTES, _F.LABEL_REPEATED, ""),
        ("i", 3, _F.TYPE_INT64, _F.LABEL_REPEATED, ""),
        ("f", 4, _F.TYPE_FLOAT, _F.LABEL_REPEATED, ""),
    ],
    "AttrValue": [
        ("list", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "ListValue"),
        ("s", 2, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, ""),
        ("i", 3, _F.TYPE_INT64, _F.LABEL_OPTIONAL, ""),
        ("f", 4, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, ""),
        ("b", 5, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
        ("type", 6, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
        ("shape", 7, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "TensorShapeProto"),
        ("tensor", 8, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "TensorProto"),
    ],
    "AttrEntry": [
        ("key", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("value", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "AttrValue"),
    ],
    "NodeDef": [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("op", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("input", 3, _F.TYPE_STRING, _F.LABEL_REPEATED, ""),
        ("attr", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "AttrEntry"),
    ],
    "GraphDef": [("node", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "NodeDef")],
}
_PACKAGE = "ssd_tf_subset"  # not "tensorflow": never clashes with a real TF in the process


@cache
def _graph_def_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(
        name="ssd_tf_subset.proto", package=_PACKAGE, syntax="proto3"
    )
    for message, fields in _SCHEMA.items():
        msg = file.message_type.add(name=message)
        for name, number, type_, label, type_name in fields:
            field = msg.field.add(name=name, number=number, type=type_, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.GraphDef"))


@dataclass(frozen=True)
class Node:
    """One graph node: its name, op type, inputs and attributes (``AttrValue`` messages)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any]


def read_graph(path: str | Path) -> list[Node]:
    """The nodes of a frozen ``GraphDef`` file, in file order."""
    graph = _graph_def_class()()
    graph.ParseFromString(Path(path).read_bytes())
    return [
        Node(n.name, n.op, tuple(n.input), {a.key: a.value for a in n.attr}) for n in graph.node
    ]


def tensor_value(tensor: Any) -> np.ndarray:
    """A ``TensorProto`` (float32 or int32) as a numpy array of its shape.

    Values are either raw little-endian bytes (``tensor_content``) or a typed list; a list
    of one value fills the whole shape (tensor.proto, "version 0").
    """
    dtype = _NUMPY.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"tensor dtype {tensor.dtype} is not DT_FLOAT or DT_INT32")
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype=dtype)
    else:
        values = np.asarray(
            tensor.float_val if tensor.dtype == DT_FLOAT else tensor.int_val, dtype=dtype
        )
        if values.size == 1:
            values = np.full(shape, values[0], dtype=dtype)
    return values.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def const_tensors(nodes: list[Node], dtype: int = DT_FLOAT) -> dict[str, np.ndarray]:
    """``{node name: array}`` of every ``Const`` node of the given dtype (float32 default)."""
    out = {}
    for node in nodes:
        value = node.attrs.get("value")
        if node.op == "Const" and value is not None and value.tensor.dtype == dtype:
            out[node.name] = tensor_value(value.tensor)
    return out
