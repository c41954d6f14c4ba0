"""Static INT8 quantization of a contract model file, checked against its FP32 source.

ONNX Runtime's ``quantize_static`` with per-channel signed weights and unsigned activations (the pair with
fused VNNI/NEON kernels), calibrated on real images that went through the same ``edge.core.preprocess.fit``
as at run time. The in-graph preprocessing, the stem convolution and the softmax stay in float: they are
cheap, quantizing the pixel normalisation only adds rounding, and the stem is where x86 CPUs without VNNI
saturate their 16-bit u8*s8 sums. Weights use 7 bits (reduce_range) for the same reason. docs/quantization.md
holds the variants measured and why these defaults won.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from edge.core.metadata import INPUT_NAME, ModelInfo
from edge.core.model import Model
from edge.errors import EdgerecError
from training.export import write_with_metadata

METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}
FLOAT_PARTS = ("preprocess", "softmax", "stem", "classifier", "depthwise", "tail")
TAIL_CONVS = 4  # "tail": the last four convolutions (EfficientNet-Lite's last block and its 1x1 head)
CLEAR = 0.5  # an image is "clear" when FP32's top-1 probability is at least this

WEIGHT_TYPES = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}
ACTIVATION_TYPES = WEIGHT_TYPES
FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}


@dataclass(frozen=True)
class QuantOptions:
    """How to quantize; the defaults are the fastest variant that kept FP32's labels (docs/quantization.md)."""

    method: str = "minmax"  # minmax | percentile | entropy
    format: str = "qdq"  # qdq | qoperator
    per_channel: bool = True
    weights: str = "s8"  # s8 | u8 (u8 avoids the u8s8 saturation of AVX2-only x86 kernels, but is slow there)
    activations: str = "u8"  # u8 | s8 (s8 ran at FP32's speed on AVX2 x86: docs/quantization.md)
    reduce_range: bool = False  # 7-bit weights: less u8s8 saturation on AVX2 x86 (docs/quantization.md)
    keep_float: tuple[str, ...] = ("preprocess", "softmax", "stem")  # also: classifier, depthwise, tail
    percentile: float = 99.999


@dataclass(frozen=True)
class QuantReport:
    """How the INT8 file compares with its FP32 source on the check images."""

    options: QuantOptions
    calibration_images: int
    check_images: int
    top1_agreement: float  # fraction of check images with the same top-1 label as FP32
    max_abs_diff: float  # largest probability difference
    mean_abs_diff: float
    clear_images: int  # check images FP32 labels with probability >= CLEAR
    clear_agreement: float  # top-1 agreement on those: the figure a user can hold INT8 to


class _Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 1):  # histogram methods need equal batches
        self.batches = iter([images[i:i + batch] for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_model(fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray, check: np.ndarray,
                   options: QuantOptions | None = None) -> QuantReport:
    """Write an INT8 copy of ``fp32_path`` to ``out_path`` (atomically) and compare it with the FP32 file.

    ``calibration`` and ``check`` are uint8 [N, H, W, 3] BGR images fitted with edge.core.preprocess.fit.
    """
    options = options or QuantOptions()
    _validate(options)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if options.method in HISTOGRAM_METHODS:
        _check_histogram_memory(onnx.load(str(fp32_path)), options.method, len(calibration))
    source = Model.load(fp32_path, device="cpu")
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        raw = Path(tmp) / "int8.onnx"
        quantize_static(str(fp32_path), str(raw), _Images(calibration), quant_format=FORMATS[options.format],
                        per_channel=options.per_channel, reduce_range=options.reduce_range,
                        weight_type=WEIGHT_TYPES[options.weights],
                        activation_type=ACTIVATION_TYPES[options.activations], calibrate_method=METHODS[options.method],
                        nodes_to_exclude=float_nodes(onnx.load(str(fp32_path)), options.keep_float),
                        extra_options={"CalibPercentile": options.percentile})
        staged = Path(tmp) / out_path.name
        info = int8_info(source.info, options, len(calibration))
        write_with_metadata(onnx.load(str(raw)), info, staged)
        report = compare(source, Model.load(staged, device="cpu"), check, options, len(calibration))
        os.replace(staged, out_path)
    return report


def _validate(options: QuantOptions) -> None:
    if options.method not in METHODS:
        raise EdgerecError(f"calibration method {options.method!r}; valid: {', '.join(METHODS)}")
    if options.format not in FORMATS:
        raise EdgerecError(f"quantization format {options.format!r}; valid: {', '.join(FORMATS)}")
    if options.weights not in WEIGHT_TYPES:
        raise EdgerecError(f"weight type {options.weights!r}; valid: {', '.join(WEIGHT_TYPES)}")
    unknown = set(options.keep_float) - set(FLOAT_PARTS)
    if unknown:
        raise EdgerecError(f"keep_float {sorted(unknown)}; valid: {', '.join(FLOAT_PARTS)}")


HISTOGRAM_METHODS = ("percentile", "entropy")
MEMORY_SHARE = 0.8  # of the memory available now that histogram calibration may plan to hold


def image_tensor_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of the float tensors one image makes in ``proto`` (batch 1): what ONNX Runtime's histogram
    calibrators (percentile, entropy) keep of every calibration image until the last; MinMax keeps two numbers
    a tensor. EfficientNet-Lite0 at 224 px: about 55 MB, so 512 images need 28 GB."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    total = 0
    for value in (*inferred.graph.value_info, *inferred.graph.output):
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.FLOAT:
            total += 4 * int(np.prod([d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]))
    return total


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _check_histogram_memory(proto: onnx.ModelProto, method: str, images: int) -> None:
    """Refuse, before the minutes it takes, a histogram calibration the machine cannot hold (it would be
    killed for memory with no word said)."""
    free = available_memory()
    if method not in HISTOGRAM_METHODS or free is None:
        return
    per_image = image_tensor_bytes(proto)
    if images * per_image > MEMORY_SHARE * free:
        fits = int(MEMORY_SHARE * free // max(per_image, 1))
        raise EdgerecError(f"{method} calibration on {images} images would hold about "
                           f"{images * per_image / 1e9:.1f} GB ({per_image / 1e6:.0f} MB an image) and "
                           f"{free / 1e9:.1f} GB is free: calibrate on at most {fits} images, or use minmax")


def float_nodes(proto: onnx.ModelProto, parts: tuple[str, ...]) -> list[str]:
    """Names of the nodes that make up the named parts of the exported graph (see training.models)."""
    nodes = list(proto.graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    chosen = set()
    if "preprocess" in parts:
        chosen |= {n.name for n in nodes if n.name.startswith("/preprocess/")}
    if "softmax" in parts:
        chosen |= {n.name for n in nodes if n.op_type == "Softmax"}
    if "stem" in parts and convs:
        chosen.add(convs[0].name)
    if "depthwise" in parts:
        chosen |= {n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)}
    if "tail" in parts:
        chosen |= {n.name for n in convs[-TAIL_CONVS:]}
    if "classifier" in parts:
        chosen |= {n.name for n in nodes if n.op_type in ("Gemm", "MatMul")}
    return sorted(chosen)


def int8_info(fp32: ModelInfo, options: QuantOptions, calibration_images: int) -> ModelInfo:
    return fp32.with_updates(precision="int8",
                             quantization={**asdict(options), "keep_float": list(options.keep_float),
                                           "calibration_images": calibration_images})


def compare(fp32: Model, int8: Model, images: np.ndarray, options: QuantOptions, calibrated: int) -> QuantReport:
    a = np.concatenate([fp32.infer(images[i:i + 16]) for i in range(0, len(images), 16)])
    b = np.concatenate([int8.infer(images[i:i + 16]) for i in range(0, len(images), 16)])
    diff = np.abs(a - b)
    same = a.argmax(1) == b.argmax(1)
    clear = a.max(1) >= CLEAR
    return QuantReport(options, calibrated, len(images), float(same.mean()), float(diff.max()), float(diff.mean()),
                       int(clear.sum()), float(same[clear].mean()) if clear.any() else 1.0)
