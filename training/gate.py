"""INT8 or not: quantize the trained FP32 file, measure both on the validation images, pick the deliverable.

Both files are measured on the validation images fitted by ``edge.preprocess.fit``, as at run time. The
INT8 file is measured twice:

* **exact INT8 arithmetic** (the gate's figure): ONNX Runtime with graph optimizations off runs the QDQ
  graph as written, dequantizing each weight and activation and computing in float, which gives what
  every non-saturating INT8 kernel computes: ARM boards (Raspberry Pi, Jetson), x86 CPUs with VNNI,
  GPUs and NPUs;
* **this CPU** (reported beside it): ``edge.model.Model``, ONNX Runtime's fused INT8 kernels on the
  machine that trains. On x86 CPUs with AVX2 but no VNNI those add pairs of u8 x s8 products in a
  saturating 16-bit sum (docs/quantization.md), and a file that is exact elsewhere can lose points here:
  on Fashion-MNIST 91.2% exact against 88.9% with this CPU's kernels (docs/training.md).

The INT8 file passes when its exact top-1 is at most ``max_drop`` percentage points below FP32's. When
the default calibration fails, better (slower to calibrate, or slower to run) settings are tried in turn;
if none passes, the FP32 file is the deliverable and the report says so.
"""

from __future__ import annotations

import io
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edge.files import atomic_path
from edge.model import Model
from training.export import write_with_metadata
from training.quantize import QuantOptions, quantize_model

DEFAULT_FLOAT = QuantOptions().keep_float


@dataclass(frozen=True)
class Recipe:
    """One set of quantization settings the gate may try."""

    name: str
    options: QuantOptions
    calibration_share: float  # of the calibration images handed to the gate


# Tried in this order until one passes: the runtime's default first (the fastest file), then twice the
# calibration images with the classifier kept in float, then the depthwise convolutions in float as well
# (a slower file that matched FP32 where the others did not). Percentile and entropy calibration are not
# tried: on both 5-class photo sets they took 2.5-3x as long as MinMax and changed the same predictions
# (docs/training.md).
RECIPES = (
    Recipe("default", QuantOptions(), 0.5),
    Recipe("classifier-float", QuantOptions(keep_float=(*DEFAULT_FLOAT, "classifier")), 1.0),
    Recipe("depthwise-float", QuantOptions(keep_float=(*DEFAULT_FLOAT, "classifier", "depthwise")), 1.0),
)


@dataclass(frozen=True)
class Attempt:
    """One quantization tried: its settings and how the INT8 file did on the validation images."""

    recipe: str
    calibration_images: int
    val_top1: float  # exact INT8 arithmetic: what the gate decides on
    agreement: float  # share of validation images with FP32's top-1 label (exact INT8)
    seconds: float
    cpu_top1: float  # with this CPU's ONNX Runtime INT8 kernels


@dataclass(frozen=True)
class GateReport:
    """What the gate measured and which file is the deliverable."""

    passed: bool
    max_drop: float  # percentage points
    fp32_top1: float
    int8_top1: float | None  # the best attempt's (exact INT8), None when quantization was not tried
    attempts: tuple[Attempt, ...]
    deliverable: Path
    fp32_path: Path
    int8_path: Path | None  # the best INT8 attempt, kept for inspection even when it failed
    fp32_predictions: np.ndarray = field(repr=False)  # class index per validation image
    int8_predictions: np.ndarray | None = field(repr=False)

    @property
    def drop(self) -> float | None:
        """FP32 minus INT8 validation top-1, in percentage points."""
        return None if self.int8_top1 is None else 100 * (self.fp32_top1 - self.int8_top1)

    @property
    def best_attempt(self) -> Attempt | None:
        """The INT8 attempt kept as model-int8.onnx: the highest exact top-1."""
        return max(self.attempts, key=lambda a: a.val_top1) if self.attempts else None

    @property
    def int8_cpu_top1(self) -> float | None:
        """The best attempt's top-1 with this CPU's ONNX Runtime INT8 kernels."""
        return self.best_attempt.cpu_top1 if self.attempts else None

    @property
    def top1(self) -> float:
        """The deliverable's validation top-1 (exact INT8 when the gate passed, else FP32)."""
        return self.int8_top1 if self.passed else self.fp32_top1

    @property
    def precision(self) -> str:
        return "int8" if self.passed else "fp32"

    @property
    def predictions(self) -> np.ndarray:
        """The deliverable's class index per validation image."""
        return self.int8_predictions if self.passed else self.fp32_predictions


def predict(path: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class index per image, from the model file run by ONNX Runtime on this CPU as at run time."""
    return _classes(Model.load(path, device="cpu").infer, images, batch)


def predict_exact(path: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class index per image with the QDQ graph run as written (no fused INT8 kernels): exact arithmetic."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _classes(lambda x: session.run(None, {name: x})[0], images, batch)


def _classes(infer: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([infer(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])


def gate_int8(
    fp32_path: Path,
    calibration: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    max_drop: float,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> GateReport:
    """Quantize ``fp32_path`` with each recipe until one keeps validation top-1 within ``max_drop`` points.

    Writes ``model-int8.onnx`` (the best attempt) and ``model.onnx`` (the deliverable) beside the FP32 file
    and records the measured accuracies in the metadata of all three.
    """
    out = fp32_path.parent
    int8_path = out / "model-int8.onnx"
    fp32_predictions = predict(fp32_path, val_images)
    fp32_top1 = float((fp32_predictions == val_labels).mean())
    attempts: list[Attempt] = []
    best: tuple[float, np.ndarray] | None = None
    for recipe in RECIPES:
        attempt, predictions = _try(recipe, fp32_path, out / ".model-int8-attempt.onnx", calibration,
                                    val_images, val_labels, fp32_predictions)
        attempts.append(attempt)
        if on_attempt:
            on_attempt(attempt)
        if best is None or attempt.val_top1 > best[0]:
            best = (attempt.val_top1, predictions)
            (out / ".model-int8-attempt.onnx").replace(int8_path)
        if _passes(fp32_top1, attempt.val_top1, max_drop) or not _passes(fp32_top1, 1.0, max_drop):
            break  # passed, or no INT8 file could pass (max_drop below what even 100% top-1 would give)
    (out / ".model-int8-attempt.onnx").unlink(missing_ok=True)
    int8_top1, int8_predictions = best
    passed = _passes(fp32_top1, int8_top1, max_drop)
    report = GateReport(passed, max_drop, fp32_top1, int8_top1, tuple(attempts), out / "model.onnx", fp32_path,
                        int8_path, fp32_predictions, int8_predictions)
    _record_metrics(report)
    return report


def _try(recipe: Recipe, fp32_path: Path, path: Path, calibration: np.ndarray, val_images: np.ndarray,
         val_labels: np.ndarray, fp32_predictions: np.ndarray) -> tuple[Attempt, np.ndarray]:
    start = time.perf_counter()
    n = max(1, round(recipe.calibration_share * len(calibration)))
    with _quiet():
        quantize_model(fp32_path, path, calibration[:n], val_images[:1], recipe.options)
    predictions = predict_exact(path, val_images)
    on_this_cpu = predict(path, val_images)
    attempt = Attempt(recipe.name, n, float((predictions == val_labels).mean()),
                      float((predictions == fp32_predictions).mean()), time.perf_counter() - start,
                      float((on_this_cpu == val_labels).mean()))
    return attempt, predictions


@contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice on the root logger and prints calibration notes on stdout; the
    CLI's output is the summary, so both are held back while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _passes(fp32_top1: float, int8_top1: float, max_drop: float) -> bool:
    return 100 * (fp32_top1 - int8_top1) <= max_drop + 1e-9


def _record_metrics(report: GateReport) -> None:
    """Both accuracies into both files' metadata; then copy the deliverable to model.onnx (atomically)."""
    metrics = {"val_top1_fp32": report.fp32_top1, "val_top1_int8": report.int8_top1,
               "val_top1_int8_training_cpu": report.int8_cpu_top1,
               "int8_max_drop_points": report.max_drop, "int8_gate_passed": float(report.passed)}
    best = report.best_attempt
    for path in (report.fp32_path, report.int8_path):
        proto = onnx.load(str(path))
        info = Model.load(path, device="cpu").info
        quantization = info.quantization
        if info.precision == "int8":
            quantization = {**quantization, "recipe": best.recipe, "val_top1_agreement_with_fp32": best.agreement,
                            "recipes_tried": [a.recipe for a in report.attempts]}
        write_with_metadata(proto, info.with_updates(metrics={**info.metrics, **metrics},
                                                     quantization=quantization), path)
    source = report.int8_path if report.passed else report.fp32_path
    with atomic_path(report.deliverable) as tmp:
        shutil.copyfile(source, tmp)
