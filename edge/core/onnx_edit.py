"""Edit an ONNX model file with protobuf alone: what `edgerec teach` needs to write a new head, and what
`Model.load` needs to append the novelty score to a graph in memory (edge/core/novelty_graph.py).

The `onnx` package would add about 25 MB (its aarch64 wheel installs 22.6 MB, plus ml_dtypes) to a
Raspberry Pi's runtime install; protobuf is already there (onnxruntime depends on it). An ONNX file is a
protobuf `ModelProto`, so this module declares the few of its fields that teach reads or writes, with
ONNX's own field numbers (onnx/onnx.proto). Every other field (opsets, attributes, tensor data, doc
strings) is kept as an unknown field and written back byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool

try:
    from google.protobuf.message_factory import GetMessageClass
except ImportError:  # protobuf < 4.21
    from google.protobuf.message_factory import MessageFactory

    GetMessageClass = MessageFactory().GetPrototype  # noqa: N816

FLOAT = 1  # TensorProto.DataType.FLOAT
INT64 = 7  # TensorProto.DataType.INT64
_TENSOR_TYPES = {np.dtype("<f4"): FLOAT, np.dtype("<i8"): INT64}
ATTRIBUTE_INT = 2  # AttributeProto.AttributeType.INT

_F = descriptor_pb2.FieldDescriptorProto
_SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {  # message: (field, number, type, label, type name)
    "StringStringEntryProto": [("key", 1, _F.TYPE_STRING, 1, ""), ("value", 2, _F.TYPE_STRING, 1, "")],
    "Dimension": [("dim_value", 1, _F.TYPE_INT64, 1, ""), ("dim_param", 2, _F.TYPE_STRING, 1, "")],
    "TensorShapeProto": [("dim", 1, _F.TYPE_MESSAGE, 3, "Dimension")],
    "TensorTypeProto": [("elem_type", 1, _F.TYPE_INT32, 1, ""), ("shape", 2, _F.TYPE_MESSAGE, 1, "TensorShapeProto")],
    "TypeProto": [("tensor_type", 1, _F.TYPE_MESSAGE, 1, "TensorTypeProto")],
    "ValueInfoProto": [("name", 1, _F.TYPE_STRING, 1, ""), ("type", 2, _F.TYPE_MESSAGE, 1, "TypeProto")],
    "TensorProto": [("dims", 1, _F.TYPE_INT64, 3, ""), ("data_type", 2, _F.TYPE_INT32, 1, ""),
                    ("name", 8, _F.TYPE_STRING, 1, ""), ("raw_data", 9, _F.TYPE_BYTES, 1, "")],
    "AttributeProto": [("name", 1, _F.TYPE_STRING, 1, ""), ("i", 3, _F.TYPE_INT64, 1, ""),
                       ("type", 20, _F.TYPE_INT32, 1, "")],
    "NodeProto": [("input", 1, _F.TYPE_STRING, 3, ""), ("output", 2, _F.TYPE_STRING, 3, ""),
                  ("name", 3, _F.TYPE_STRING, 1, ""), ("op_type", 4, _F.TYPE_STRING, 1, ""),
                  ("attribute", 5, _F.TYPE_MESSAGE, 3, "AttributeProto"), ("domain", 7, _F.TYPE_STRING, 1, "")],
    "GraphProto": [("node", 1, _F.TYPE_MESSAGE, 3, "NodeProto"), ("name", 2, _F.TYPE_STRING, 1, ""),
                   ("initializer", 5, _F.TYPE_MESSAGE, 3, "TensorProto"),
                   ("input", 11, _F.TYPE_MESSAGE, 3, "ValueInfoProto"),
                   ("output", 12, _F.TYPE_MESSAGE, 3, "ValueInfoProto"),
                   ("value_info", 13, _F.TYPE_MESSAGE, 3, "ValueInfoProto")],
    "OperatorSetIdProto": [("domain", 1, _F.TYPE_STRING, 1, ""), ("version", 2, _F.TYPE_INT64, 1, "")],
    "ModelProto": [("producer_name", 2, _F.TYPE_STRING, 1, ""), ("graph", 7, _F.TYPE_MESSAGE, 1, "GraphProto"),
                   ("opset_import", 8, _F.TYPE_MESSAGE, 3, "OperatorSetIdProto"),
                   ("metadata_props", 14, _F.TYPE_MESSAGE, 3, "StringStringEntryProto")],
}
_PACKAGE = "edgerec_onnx_subset"  # its own pool and package: no clash with the onnx package's classes


def _model_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2")
    for message, fields in _SCHEMA.items():
        described = file.message_type.add(name=message)
        for name, number, kind, label, type_name in fields:
            described.field.add(name=name, number=number, type=kind, label=label,
                                type_name=f".{_PACKAGE}.{type_name}" if type_name else None)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ModelProto"))


ModelProto = _model_class()


def parse(data: bytes) -> Any:
    """A ModelProto (of the fields above) from a file's bytes."""
    return ModelProto.FromString(data)


def keep_only_what_feeds(model: Any, outputs: set[str]) -> None:
    """Drop the nodes, initializers and value infos that none of `outputs` depends on."""
    graph = model.graph
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    needed, wanted = set(), list(outputs)
    while wanted:
        name = wanted.pop()
        index = producer.get(name)
        if index is None or index in needed:
            continue
        needed.add(index)
        wanted.extend(i for i in graph.node[index].input if i)
    kept = [node for i, node in enumerate(graph.node) if i in needed]
    read = {name for node in kept for name in node.input}
    made = {name for node in kept for name in node.output}
    _replace(graph.node, kept)
    _replace(graph.initializer, [t for t in graph.initializer if t.name in read])
    _replace(graph.value_info, [v for v in graph.value_info if v.name in made])


def _replace(field: Any, items: list[Any]) -> None:
    copies = [type(item)() for item in items]
    for copy, item in zip(copies, items):
        copy.CopyFrom(item)
    del field[:]
    field.extend(copies)


def add_initializer(model: Any, name: str, array: np.ndarray) -> None:
    """A constant tensor: float32 unless `array` is int64."""
    dtype = np.dtype("<i8") if array.dtype == np.int64 else np.dtype("<f4")
    tensor = model.graph.initializer.add(name=name, data_type=_TENSOR_TYPES[dtype],
                                         raw_data=np.ascontiguousarray(array, dtype=dtype).tobytes())
    tensor.dims.extend(array.shape)


def add_node(model: Any, op_type: str, inputs: list[str], outputs: list[str], name: str,
             ints: Mapping[str, int] | None = None) -> None:
    node = model.graph.node.add(op_type=op_type, name=name)
    node.input.extend(inputs)
    node.output.extend(outputs)
    for key, value in (ints or {}).items():
        node.attribute.add(name=key, i=value, type=ATTRIBUTE_INT)


def add_output(model: Any, name: str, dims: list[str | int]) -> None:
    """A float32 graph output of the given dims (a str names a free dimension, e.g. the batch)."""
    tensor = model.graph.output.add(name=name).type.tensor_type
    tensor.elem_type = FLOAT
    for dim in dims:
        tensor.shape.dim.add(**({"dim_param": dim} if isinstance(dim, str) else {"dim_value": dim}))


def opset(model: Any) -> int:
    """The version of the default ONNX operator set the graph is written against (0 if it names none)."""
    return max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def output(model: Any, name: str) -> Any:
    """The graph output called `name` (KeyError if none)."""
    for value in model.graph.output:
        if value.name == name:
            return value
    raise KeyError(name)


def set_outputs(model: Any, outputs: list[Any]) -> None:
    _replace(model.graph.output, outputs)


def set_metadata(model: Any, props: Mapping[str, str], prefix: str) -> None:
    """Replace the entries whose key starts with `prefix` by `props`; keep the others."""
    keep = [p for p in model.metadata_props if not p.key.startswith(prefix)]
    _replace(model.metadata_props, keep)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
