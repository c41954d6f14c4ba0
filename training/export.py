"""Export a classifier to the model-file contract and check the file against the torch reference.

The exported graph takes uint8 NHWC BGR ``image`` and returns softmax ``probs``; the metadata written is
``edge.metadata.ModelInfo``. The export fails loudly when ONNX Runtime disagrees with torch.
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
from torch import nn

from edge.errors import EdgerecError
from edge.files import atomic_path
from edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelInfo
from edge.model import Model
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

    ``check_batch`` is uint8 [N, H, W, 3] BGR images already fitted (edge.preprocess.fit); the file is only
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
    """Replace the file's edgerec metadata with ``info`` and save ``proto`` to ``path`` atomically."""
    keep = [p for p in proto.metadata_props if not p.key.startswith("edgerec.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "edgerec"
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def compare_with_torch(deployable: nn.Module, path: Path, batch: np.ndarray) -> ExportCheck:
    model = Model.load(path, device="cpu")
    with torch.no_grad():
        reference = deployable(torch.from_numpy(batch)).numpy()
    got = np.concatenate([model.infer(batch[i:i + 16]) for i in range(0, len(batch), 16)])
    return ExportCheck(max_abs_diff=float(np.abs(got - reference).max()),
                       top1_agreement=float((got.argmax(1) == reference.argmax(1)).mean()),
                       num_images=len(batch))
