"""INT8 or not: quantize the trained FP32 file, compare it with FP32 on evidence, pick the deliverable.

The INT8 file is a copy of the FP32 network with rounded weights and activations; the question is whether
it is still the same classifier. Two measurements answer it:

* **agreement**: INT8's top-1 label against FP32's on every labelled image at hand, as many *paired
  predictions* as ``GateOptions.paired`` allows: the validation images, then the training images, then
  cheap deterministic views of both (``VIEWS``: mirror image, two 90% crops scaled back). INT8 is kept only
  when the low end of the 95% Wilson interval of that share is at least ``AGREEMENT_FLOOR``.
* **a paired test of correctness** on the validation images, the only ones whose labels the training did
  not see: the exact one-sided McNemar test on the images that exactly one of the two files gets right.
  INT8 is refused when it is less often right than FP32 with ``p < MCNEMAR_ALPHA``.

Before, the gate refused INT8 when its validation top-1 was more than 0.5 points below FP32's: on a
53-image validation set one image is 1.9 points, so a single flipped image threw away a faster file that
agreed with FP32 everywhere else. Now one image is one disagreement out of hundreds or thousands.

INT8 predictions are measured in **exact INT8 arithmetic**: ONNX Runtime's fused INT8 kernels with
``UNSATURATED`` set, so that every product is summed in 32 bits, as ARM boards (Raspberry Pi, Jetson) and
x86 CPUs with VNNI sum them; since 2026-12-07 that is also what `edgerec run` computes on every CPU unless
told `--fast-int8` (on x86 CPUs with AVX2 but no VNNI the faster kernels add pairs of u8 x s8 products in a
saturating 16-bit sum, docs/quantization.md). The validation top-1 of the file as **this CPU** runs it by
default is reported beside it. (Before, "exact" was the
QDQ graph run as written with graph optimizations off: the same agreement with FP32, about 3x slower;
docs/quantization.md.)

When the default calibration is refused, better (slower to calibrate, or slower to run) recipes are tried
in turn; if none is kept, the FP32 file is the deliverable and the report says why.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from edge.core.devices import INT8_UNSATURATED, int8_sums_saturate
from edge.core.model import Model, inference_session
from edge.files import atomic_path
from edge.tools.evaluate import top1_interval
from training.export import write_with_metadata
from training.quantize import QuantOptions, quantize_model

AGREEMENT_FLOOR = 0.98
"""INT8 is kept only when the low end of the 95% Wilson interval of its top-1 agreement with FP32 is at least
this. Agreement bounds what INT8 can change: at 98% at most 2 labels in 100 differ from FP32's, so no
accuracy can move by more than 2 points, and in practice much less (flips are the images FP32 was unsure
of, and they go both ways). Asking it of the interval's low end, not of the measured share, makes small
evidence count for less: 2,000 paired predictions allow 27 disagreements (98.65% measured), 1,196 (the
photo set of docs/training.md) 14 (98.8%), 300 allow 1, and fewer than 189 cannot show 98% even when
they all agree (the FP32 file is then the deliverable). A broken calibration agrees at chance level and is
far below. --min-int8-agreement sets it."""

MCNEMAR_ALPHA = 0.05
"""INT8 is refused when the exact one-sided McNemar test on the validation images gives p below this:
evidence at the usual 5% level that INT8 is less often right than FP32. Only images that exactly one file
gets right count; with no such evidence (3 images right only in FP32 and none only in INT8 give p = 0.125)
the agreement decides."""

UNSATURATED = INT8_UNSATURATED
"""ONNX Runtime's session setting that makes x86 CPUs without VNNI sum INT8 products in 32 bits
(edge.core.devices.INT8_UNSATURATED); ``exact_session`` sets it only where the kernels saturate."""

PAIRED_PREDICTIONS = 2000
"""How many paired predictions the agreement is measured on (default of --int8-pairs). Each costs one FP32
and, per recipe tried, one exact-INT8 inference: on Fashion-MNIST (160 px) one recipe (calibration, 2,000
exact-INT8 and 1,000 fused-kernel predictions) took 225 s on 2 heavily shared cores (docs/training.md), with
the slower exact arithmetic of then."""

VIEWS = ("image", "mirror", "crop-top-left", "crop-bottom-right")
"""Views of every image, in the order they are added to the paired predictions: the fitted image as the
runtime sees it, its mirror image, and the top-left and bottom-right 90% of it scaled back to the input
size (a small zoom and shift, as a camera gives). Cheap and deterministic."""

CROP_VIEW = 0.9  # side of the two crop views, as a share of the fitted image's side
SPEED_RUNS = 12  # one-image runs per file for the speed figure, interleaved
BATCH = 16
"""Images per inference call of the paired predictions. Inside `edgerec train` on ~200 photos (AMD Zen 3, 2 cores,
`scripts/bench/time_train.py [--gate-batch 64]`) the 788 FP32 predictions took 5.4 s in batches of 16 and
5.7-5.9 s in batches of 64; 8.5-9.1 s at 64 while checkpoints were written after every epoch (docs/training.md);
exact INT8 about 5 s either way."""


def mcnemar_p(fp32_only: int, int8_only: int) -> float:
    """Exact one-sided McNemar test: the probability of at least ``fp32_only`` of the discordant images going
    FP32's way if both files were equally often right (binomial, n = discordant images, p = 1/2)."""
    n = fp32_only + int8_only
    return sum(math.comb(n, k) for k in range(fp32_only, n + 1)) / 2**n


@dataclass(frozen=True)
class GateOptions:
    """The gate's thresholds (docstrings of the constants above say why these defaults)."""

    min_agreement: float = AGREEMENT_FLOOR  # the agreement interval's low end must reach this
    alpha: float = MCNEMAR_ALPHA  # McNemar's one-sided p below this refuses INT8
    paired: int = PAIRED_PREDICTIONS  # paired predictions at most (at least every validation image)


@dataclass(frozen=True)
class Evidence:
    """INT8 against FP32: top-1 agreement over the paired predictions, and who is right on the validation images."""

    paired: int  # predictions compared (images x views)
    agreed: int  # of which INT8's top-1 equals FP32's
    val_images: int
    fp32_only_right: int  # validation images FP32 gets right and INT8 wrong
    int8_only_right: int  # and the other way round
    fp32_paired_right: int | None = None  # paired predictions (all labelled) that FP32 gets right
    int8_paired_right: int | None = None  # and INT8

    @property
    def agreement(self) -> float:
        return self.agreed / self.paired if self.paired else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the agreement."""
        return top1_interval(self.agreement, self.paired)

    @property
    def mcnemar_p(self) -> float:
        return mcnemar_p(self.fp32_only_right, self.int8_only_right)

    def refusal(self, options: GateOptions) -> str | None:
        """Why INT8 is refused on this evidence, or None when it is kept."""
        low = self.interval[0]
        if low < options.min_agreement:
            return (f"agreement's 95% interval reaches down to {100 * low:.1f}%, below the "
                    f"{100 * options.min_agreement:g}% required")
        if self.mcnemar_p < options.alpha:
            return (f"less often right than FP32 on the validation images (McNemar p={self.mcnemar_p:.3g} < "
                    f"{options.alpha:g})")
        return None

    def as_dict(self) -> dict[str, float | int]:
        low, high = self.interval
        return {"paired": self.paired, "agreed": self.agreed, "agreement": self.agreement,
                "agreement_interval95": [low, high], "val_images": self.val_images,
                "fp32_only_right": self.fp32_only_right, "int8_only_right": self.int8_only_right,
                "mcnemar_p": self.mcnemar_p, "fp32_paired_right": self.fp32_paired_right,
                "int8_paired_right": self.int8_paired_right}


@dataclass(frozen=True)
class Recipe:
    """One set of quantization settings the gate may try."""

    name: str
    options: QuantOptions
    calibration_share: float  # of the calibration images handed to the gate
    qat: bool = False  # quantize the network after a quantization-aware fine-tune (training.qat)


DEFAULT_FLOAT = QuantOptions().keep_float

# Tried in this order until one is kept: the runtime's default first (the fastest file), then twice the
# calibration images with the classifier kept in float, then the depthwise convolutions in float as well
# (a slower file that matched FP32 where the others did not). Percentile and entropy calibration are not
# tried: on both 5-class photo sets they took 2.5-3x as long as MinMax and changed the same predictions
# (docs/training.md).
RECIPES = (
    Recipe("default", QuantOptions(), 0.5),
    Recipe("classifier-float", QuantOptions(keep_float=(*DEFAULT_FLOAT, "classifier")), 1.0),
    Recipe("depthwise-float", QuantOptions(keep_float=(*DEFAULT_FLOAT, "classifier", "depthwise")), 1.0),
)
# Tried after them when a fine-tune is offered (gate_int8's ``qat``): the default settings on the fine-tuned
# weights, so the fastest file again.
QAT_RECIPE = Recipe("qat", QuantOptions(), 0.5, qat=True)


@dataclass(frozen=True)
class Attempt:
    """One quantization tried: its settings, the evidence, and the verdict."""

    recipe: str
    calibration_images: int
    val_top1: float  # exact INT8 arithmetic
    cpu_top1: float  # with this CPU's ONNX Runtime INT8 kernels
    evidence: Evidence
    refused: str | None  # why, or None when kept
    seconds: float

    @property
    def passed(self) -> bool:
        return self.refused is None

    @property
    def agreement(self) -> float:
        return self.evidence.agreement


@dataclass(frozen=True)
class GateReport:
    """What the gate measured and which file is the deliverable."""

    passed: bool
    options: GateOptions
    fp32_top1: float
    attempts: tuple[Attempt, ...]
    deliverable: Path
    fp32_path: Path
    int8_path: Path | None  # the kept or best INT8 attempt, kept for inspection even when refused
    fp32_predictions: np.ndarray = field(repr=False)  # class index per validation image
    int8_predictions: np.ndarray | None = field(repr=False)  # the best attempt's, exact INT8
    fp32_ms: float | None = None  # one image, one thread, CPU time on this CPU
    int8_ms: float | None = None  # the same for the best INT8 attempt (this CPU's kernels)

    @property
    def best_attempt(self) -> Attempt | None:
        """The INT8 attempt kept as model-int8.onnx: the one that passed, else the best agreement."""
        if not self.attempts:
            return None
        return next((a for a in self.attempts if a.passed), max(self.attempts, key=lambda a: a.agreement))

    @property
    def evidence(self) -> Evidence | None:
        return self.best_attempt.evidence if self.attempts else None

    @property
    def reason(self) -> str | None:
        """Why INT8 was refused (the best attempt's reason), None when it was kept."""
        return None if self.passed or not self.attempts else self.best_attempt.refused

    @property
    def int8_top1(self) -> float | None:
        """The best attempt's validation top-1 in exact INT8 arithmetic."""
        return self.best_attempt.val_top1 if self.attempts else None

    @property
    def int8_cpu_top1(self) -> float | None:
        """The best attempt's validation top-1 with this CPU's ONNX Runtime INT8 kernels."""
        return self.best_attempt.cpu_top1 if self.attempts else None

    @property
    def drop(self) -> float | None:
        """FP32 minus INT8 validation top-1, in percentage points."""
        return None if self.int8_top1 is None else 100 * (self.fp32_top1 - self.int8_top1)

    @property
    def speedup(self) -> float | None:
        """FP32's CPU time per image over INT8's, on this CPU, one thread."""
        return self.fp32_ms / self.int8_ms if self.fp32_ms and self.int8_ms else None

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


def predict(path: Path, images: np.ndarray | Iterable[np.ndarray], batch: int = BATCH) -> np.ndarray:
    """Class index per image, from the model file run by ONNX Runtime on this CPU as at run time.
    ``images`` is one array or an iterable of batches (``paired_batches``)."""
    return _classes(Model.load(path, device="cpu").infer, images, batch)


def predict_exact(path: Path, images: np.ndarray | Iterable[np.ndarray], batch: int = BATCH) -> np.ndarray:
    """Class index per image in exact INT8 arithmetic."""
    session = exact_session(path)
    name = session.get_inputs()[0].name
    return _classes(lambda x: session.run(None, {name: x})[0], images, batch)


def exact_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU session of ``path`` whose INT8 kernels sum in 32 bits; 0 threads = all cores. ``UNSATURATED`` is
    set only on a CPU whose kernels saturate: elsewhere (VNNI, ARM) they already sum in 32 bits, and the
    setting gives the same numbers at about twice the time (docs/quantization.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if int8_sums_saturate():
        options.add_session_config_entry(UNSATURATED, "1")
    return inference_session(path, options)


def _classes(infer: Callable[[np.ndarray], np.ndarray], images: np.ndarray | Iterable[np.ndarray],
             batch: int) -> np.ndarray:
    batches = (images[i:i + batch] for i in range(0, len(images), batch)) if isinstance(images, np.ndarray) \
        else images
    return np.concatenate([infer(b).argmax(1) for b in batches])


def view(images: np.ndarray, name: str) -> np.ndarray:
    """One of ``VIEWS`` of a batch of fitted uint8 [N, H, W, 3] images."""
    if name == "image":
        return images
    if name == "mirror":
        return np.ascontiguousarray(images[:, :, ::-1])
    height, width = images.shape[1:3]
    h, w = round(CROP_VIEW * height), round(CROP_VIEW * width)
    top, left = (0, 0) if name == "crop-top-left" else (height - h, width - w)
    return np.stack([cv2.resize(image[top:top + h, left:left + w], (width, height), interpolation=cv2.INTER_LINEAR)
                     for image in images])


def paired_batches(sets: Sequence[np.ndarray], limit: int, batch: int = BATCH) -> Iterator[np.ndarray]:
    """The paired-prediction inputs in their fixed order: every view (``VIEWS``) of the images of each set in
    turn (validation, then training), ``limit`` images in all."""
    left = limit
    for name in VIEWS:
        for images in sets:
            for i in range(0, len(images), batch):
                if left <= 0:
                    return
                chunk = images[i:i + min(batch, left)]
                left -= len(chunk)
                yield view(chunk, name)


def paired_count(sets: Sequence[np.ndarray], limit: int) -> int:
    return min(limit, len(VIEWS) * sum(len(images) for images in sets))


def gate_int8(fp32_path: Path, calibration: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
              train_images: np.ndarray | None = None, train_labels: np.ndarray | None = None,
              options: GateOptions | None = None,
              on_attempt: Callable[[Attempt], None] | None = None,
              qat: Callable[[], Path] | None = None) -> GateReport:
    """Quantize ``fp32_path`` with each recipe until one is kept on the evidence (module docstring).

    ``train_images`` (fitted like the validation images; their labels optional) add paired predictions;
    ``calibration`` are the images the quantizer calibrates on. Writes ``model-int8.onnx`` (the kept or best
    attempt) and ``model.onnx`` (the deliverable) beside the FP32 file and records the evidence in the metadata
    of all three.
    ``qat``, when given, writes the float file of a quantization-aware fine-tune and returns its path: tried
    (``QAT_RECIPE``) when every post-training recipe was refused, and always compared with ``fp32_path``.
    """
    options = options or GateOptions()
    out = fp32_path.parent
    int8_path, staged = out / "model-int8.onnx", out / ".model-int8-attempt.onnx"
    sets = [val_images] + ([train_images] if train_images is not None and len(train_images) else [])
    limit = max(options.paired, len(val_images))  # every validation image at least: McNemar needs them
    fp32_paired = predict(fp32_path, paired_batches(sets, limit))
    labels = None if len(sets) > 1 and train_labels is None else \
        np.tile(np.concatenate([val_labels, train_labels][:len(sets)]), len(VIEWS))[:limit]  # in paired order
    fp32_predictions = fp32_paired[:len(val_images)]
    attempts: list[Attempt] = []
    best: tuple[Attempt, np.ndarray] | None = None
    for recipe in (*RECIPES, QAT_RECIPE) if qat else RECIPES:
        start = time.perf_counter()  # the attempt's seconds include the fine-tune
        source = qat() if recipe.qat else fp32_path
        attempt, predictions = _try(recipe, source, staged, calibration, sets, limit, val_labels, labels,
                                    fp32_paired, options, start)
        if source != fp32_path:
            source.unlink(missing_ok=True)
        attempts.append(attempt)
        if on_attempt:
            on_attempt(attempt)
        if best is None or attempt.passed or attempt.agreement > best[0].agreement:
            best = (attempt, predictions)
            staged.replace(int8_path)
        if attempt.passed or not _can_pass(fp32_paired.size, options):
            break  # kept, or no INT8 file could pass (more agreement asked than this many predictions can show)
    staged.unlink(missing_ok=True)
    fp32_ms, int8_ms = cpu_ms((fp32_path, int8_path), val_images[0])
    report = GateReport(best[0].passed, options, float((fp32_predictions == val_labels).mean()), tuple(attempts),
                        out / "model.onnx", fp32_path, int8_path, fp32_predictions, best[1], fp32_ms, int8_ms)
    _record_metrics(report)
    return report


def _try(recipe: Recipe, source: Path, path: Path, calibration: np.ndarray, sets: list[np.ndarray], limit: int,
         val_labels: np.ndarray, labels: np.ndarray | None, fp32_paired: np.ndarray, options: GateOptions,
         start: float) -> tuple[Attempt, np.ndarray]:
    n = max(1, round(recipe.calibration_share * len(calibration)))
    with _quiet():
        quantize_model(source, path, calibration[:n], sets[0][:1], recipe.options)
    paired = predict_exact(path, paired_batches(sets, limit))
    val_n = len(val_labels)
    predictions, fp32_predictions = paired[:val_n], fp32_paired[:val_n]
    on_this_cpu = predict(path, sets[0])
    fp32_right, int8_right = fp32_predictions == val_labels, predictions == val_labels
    paired_right = (None, None) if labels is None else \
        (int((fp32_paired == labels).sum()), int((paired == labels).sum()))
    evidence = Evidence(int(paired.size), int((paired == fp32_paired).sum()), val_n,
                        int((fp32_right & ~int8_right).sum()), int((int8_right & ~fp32_right).sum()), *paired_right)
    attempt = Attempt(recipe.name, n, float(int8_right.mean()), float((on_this_cpu == val_labels).mean()), evidence,
                      evidence.refusal(options), time.perf_counter() - start)
    return attempt, predictions


def _can_pass(paired: int, options: GateOptions) -> bool:
    return top1_interval(1.0, paired)[0] >= options.min_agreement


def cpu_ms(paths: Sequence[Path], image: np.ndarray, runs: int = SPEED_RUNS) -> list[float]:
    """Median CPU time (ms) of one image through each file on this CPU, one thread (ONNX Runtime then runs in
    the calling thread, so its thread CPU time is steady on a shared machine); runs interleaved."""
    models = [Model.load(path, device="cpu", threads=1) for path in paths]
    batch = image[None]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for model, spent in zip(models, times):
            start = time.thread_time()
            model.infer(batch)
            spent.append(time.thread_time() - start)
    return [1000 * float(np.median(t)) for t in times]


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


def _record_metrics(report: GateReport) -> None:
    """The evidence into both files' metadata; then copy the deliverable to model.onnx (atomically)."""
    best, evidence = report.best_attempt, report.evidence
    metrics = {"val_top1_fp32": report.fp32_top1, "val_top1_int8": report.int8_top1,
               "val_top1_int8_training_cpu": report.int8_cpu_top1, "int8_agreement": evidence.agreement,
               "int8_agreement_low95": evidence.interval[0], "int8_paired_predictions": float(evidence.paired),
               "int8_mcnemar_p": evidence.mcnemar_p, "int8_min_agreement": report.options.min_agreement,
               "int8_gate_passed": float(report.passed)}
    for path in (report.fp32_path, report.int8_path):
        proto = onnx.load(str(path))
        info = Model.load(path, device="cpu").info
        quantization = info.quantization
        if info.precision == "int8":
            quantization = {**quantization, "recipe": best.recipe, "agreement_with_fp32": evidence.agreement,
                            "paired_predictions": evidence.paired,
                            "recipes_tried": [a.recipe for a in report.attempts]}
        write_with_metadata(proto, info.with_updates(metrics={**info.metrics, **metrics},
                                                     quantization=quantization), path)
    deliver(report)


def deliver(report: GateReport) -> None:
    """Copy the file the gate chose (INT8 when it passed, else FP32) to model.onnx, atomically."""
    source = report.int8_path if report.passed else report.fp32_path
    with atomic_path(report.deliverable) as tmp:
        shutil.copyfile(source, tmp)
