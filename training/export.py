"""Export a classifier to the model-file contract and check the file against the torch reference.

The exported graph takes uint8 NHWC BGR ``image`` and returns softmax ``probs`` and ``features`` (the pooled
embedding its classifier reads); the metadata written is ``edge.core.metadata.ModelInfo``. The export fails
loudly when ONNX Runtime disagrees with torch.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch import nn

from edge.core.metadata import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME, FeaturesInfo, ModelInfo
from edge.core.model import Model
from edge.core.novelty import NoveltyInfo
from edge.errors import EdgerecError
from edge.files import atomic_path
from training.models import Deployable

OPSET = 17
FP32_TOLERANCE = 1e-4  # max abs probability difference, ORT vs torch


@dataclass(frozen=True)
class ExportCheck:
    """How the exported file compares with the torch reference on the check images."""

    max_abs_diff: float
    top1_agreement: float
    num_images: int


def export_onnx(net: nn.Module, info: ModelInfo, path: str | Path, check_batch: np.ndarray) -> ExportCheck:
    """Write ``net`` (float NCHW classifier) wrapped in the in-graph preprocessing to ``path``, atomically.

    ``check_batch`` is uint8 [N, H, W, 3] BGR images already fitted (edge.core.preprocess.fit); the file is only
    moved into place when ORT matches torch within ``FP32_TOLERANCE``.
    """
    path = Path(path)
    deployable = Deployable(net).eval()
    height, width = info.input_size
    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on folding and deprecation are not errors
            torch.onnx.export(deployable, (example,), str(raw), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=False,
                              dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}})
        optimized = Path(tmp) / "optimized.onnx"
        fold_constants(raw, optimized)
        staged = Path(tmp) / path.name
        write_with_metadata(onnx.load(str(optimized)), info, staged)
        check = compare_with_torch(deployable, staged, check_batch)
        if check.max_abs_diff > FP32_TOLERANCE:
            raise EdgerecError(f"export check failed: ONNX Runtime differs from torch by {check.max_abs_diff:.2e} "
                               f"(> {FP32_TOLERANCE:.0e}) on {check.num_images} images; {path} not written")
        os.replace(staged, path)
    return check


def fold_constants(source: Path, target: Path) -> None:
    """Save ORT's basic (provider-independent) optimisation of ``source``: constant folding turns the padding
    arithmetic the exporter writes into constants that then fuse into the convolutions, and batch norms fold
    into them. Every runtime, not only ONNX Runtime, then loads the lean graph."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def write_with_metadata(proto: onnx.ModelProto, info: ModelInfo, path: str | Path) -> None:
    """Replace the file's edgerec metadata with ``info`` and save ``proto`` to ``path`` atomically, adding
    the ``features`` output first where the graph lacks it: every file training writes carries it."""
    info = info.with_updates(features=FeaturesInfo(FEATURES_NAME, add_features_output(proto)))
    keep = [p for p in proto.metadata_props if not p.key.startswith("edgerec.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "edgerec"
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def add_metrics(path: str | Path, metrics: dict[str, float]) -> None:
    """Merge ``metrics`` into the metrics of the model file at ``path``, atomically: the new file is staged
    beside it, loaded as the runtime loads it (which checks the contract) and only then moved into place."""
    path = Path(path)
    info = Model.load(path, device="cpu").info
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        write_with_metadata(onnx.load(str(path)), info.with_updates(metrics={**info.metrics, **metrics}), staged)
        if Model.load(staged, device="cpu").info.metrics != {**info.metrics, **metrics}:
            raise EdgerecError(f"{path}: the metrics written do not read back; file left as it was")
        os.replace(staged, path)


def add_novelty(path: str | Path, novelty: NoveltyInfo) -> None:
    """Store ``novelty`` (what says `unknown`) in the model file at ``path``, atomically and checked as
    ``add_metrics`` does."""
    path = Path(path)
    info = Model.load(path, device="cpu").info
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        write_with_metadata(onnx.load(str(path)), info.with_updates(novelty=novelty), staged)
        stored = Model.load(staged, device="cpu").info.novelty
        if stored is None or stored.threshold != novelty.threshold:
            raise EdgerecError(f"{path}: the novelty data written does not read back; file left as it was")
        os.replace(staged, path)


def add_features_to_file(path: str | Path) -> int:
    """Give an existing model file (e.g. the shipped default) its ``features`` output in place, atomically,
    without touching anything else in the graph; return D."""
    proto = onnx.load(str(path))
    dim = add_features_output(proto)
    write_with_metadata(proto, Model.load(path, device="cpu").info, path)
    return dim


def add_features_output(proto: onnx.ModelProto) -> int:
    """Make the tensor the classifier reads a second graph output, ``features`` float32 [N, D]; return D.

    The classifier is the Gemm (or MatMul) whose result becomes ``probs``. In a QDQ INT8 graph it reads
    DequantizeLinear(q): a second DequantizeLinear of the same q gives ``features``, so that ONNX Runtime
    still fuses the first into a QGemm and ``probs`` stay bit for bit what they were. In a float graph an
    Identity names the classifier's input. A graph that already has the output is left as it is.
    """
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    existing = [o for o in graph.output if o.name == FEATURES_NAME]
    if existing:
        return existing[0].type.tensor_type.shape.dim[1].dim_value
    classifier = _classifier(producers)
    source = classifier.input[0]
    dim = _classifier_inputs(proto, producers, classifier)
    feeder = producers.get(source)
    if feeder is not None and feeder.op_type == "DequantizeLinear":
        node = helper.make_node("DequantizeLinear", list(feeder.input), [FEATURES_NAME],
                                name="/features/DequantizeLinear")
        node.attribute.extend(feeder.attribute)
    else:
        node = helper.make_node("Identity", [source], [FEATURES_NAME], name="/features/Identity")
    graph.node.append(node)
    batch = graph.output[[o.name for o in graph.output].index(OUTPUT_NAME)].type.tensor_type.shape.dim[0]
    output = helper.make_tensor_value_info(FEATURES_NAME, TensorProto.FLOAT, [None, dim])
    output.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.output.append(output)
    return dim


PASS_THROUGH = ("Softmax", "QuantizeLinear", "DequantizeLinear", "Identity")


def _classifier(producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto:
    """The Gemm or MatMul that ``probs`` is the softmax of (through Q/DQ pairs)."""
    node = producers.get(OUTPUT_NAME)
    while node is not None and node.op_type in PASS_THROUGH:
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        raise EdgerecError(f"no Gemm or MatMul classifier found before '{OUTPUT_NAME}'; cannot add '{FEATURES_NAME}'")
    return node


def _classifier_inputs(proto: onnx.ModelProto, producers: dict[str, onnx.NodeProto], node: onnx.NodeProto) -> int:
    """D, the classifier's input width, from its weight initializer (dequantized or not)."""
    weight = node.input[1]
    if weight in producers and producers[weight].op_type == "DequantizeLinear":
        weight = producers[weight].input[0]
    initializers = {t.name: t for t in proto.graph.initializer}
    if weight not in initializers:
        raise EdgerecError(f"the classifier's weight {weight!r} is not a constant; cannot add '{FEATURES_NAME}'")
    shape = list(initializers[weight].dims)
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return int(shape[1] if trans_b else shape[0])


def compare_with_torch(deployable: nn.Module, path: Path, batch: np.ndarray) -> ExportCheck:
    model = Model.load(path, device="cpu")
    with torch.no_grad():
        reference = deployable(torch.from_numpy(batch)).numpy()
    got = np.concatenate([model.infer(batch[i:i + 16]) for i in range(0, len(batch), 16)])
    return ExportCheck(max_abs_diff=float(np.abs(got - reference).max()),
                       top1_agreement=float((got.argmax(1) == reference.argmax(1)).mean()),
                       num_images=len(batch))
