"""Teach a model new labels without torch: what `edgerec teach` runs.

A base model file with a `features` output (the embedded default, or any `edgerec train` file) computes
the pooled embedding of each training photo and of a few cheap views of it, exactly as the device will
compute it at run time (its own INT8 kernels); a softmax regression fitted on those features in NumPy
becomes the new head. The result is one contract file: the base graph up to `features`, then a Gemm and
a Softmax as `probs`, with `features` still an output, the new labels and metadata. Its validation
top-1 is measured by running that file on the validation photos as `edgerec evaluate` does.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.core import onnx_edit
from edge.core.datasets import Unreadable
from edge.core.metadata import FEATURES_NAME, OUTPUT_NAME, PREFIX, DatasetInfo, FeaturesInfo, ModelInfo
from edge.core.model import Model, no_features_message
from edge.core.novelty import DEFAULT_K, DEFAULT_TARGET_KEPT, NoveltyInfo, build_novelty, nudged, nudged_choice
from edge.core.preprocess import fit
from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.learn.data import VIEWS, Decoded, File, decode, find_files, fingerprint, fitted_views, unreadable
from edge.learn.softmax_regression import FitOptions, LinearHead, fit_softmax_regression
from edge.tools.evaluate import top1_interval

HEAD = "/teach/head"


@dataclass(frozen=True)
class UnknownOptions:
    enabled: bool = True
    """Store reference features and a threshold so the file can answer `unknown` (docs/unknown.md)."""
    kept: float = DEFAULT_TARGET_KEPT
    """The share of training photos (leave-one-out) the threshold keeps; higher flags fewer unknowns."""
    k: int = DEFAULT_K
    """Nearest references averaged by the score."""


@dataclass(frozen=True)
class TeachOptions:
    data_dir: Path
    out: Path
    val_dir: Path | None = None  # else a stratified share of data_dir, as `edgerec train` holds it out
    base: Path | None = None  # None: the embedded default
    val_fraction: float = 0.2
    seed: int = 0  # chooses the held-out photos (the fit itself has no randomness)
    views: tuple[str, ...] = ()  # besides each photo itself, e.g. ("flip",); see edge.learn.data.VIEWS (docs/teach.md)
    fit: FitOptions = field(default_factory=FitOptions)
    batch: int = 8  # photos per features run (with their views): ONNX Runtime holds activations for all
    device: str = "auto"
    threads: int | None = None
    unknown: UnknownOptions = field(default_factory=lambda: UnknownOptions())
    """What the written file stores to say `unknown` (edge.core.novelty); `enabled=False` stores nothing."""
    on_progress: Callable[[int, int], None] | None = field(default=None, compare=False)
    """Called with (photos done, photos in all): training photos (with their views), then validation ones."""


@dataclass(frozen=True)
class TeachReport:
    out: Path
    base: Path
    classes: tuple[str, ...]
    train_counts: tuple[int, ...]  # readable training photos per class
    val_counts: tuple[int, ...]
    views: tuple[str, ...]
    head: LinearHead
    val_top1: float
    val_n: int
    val_probs: np.ndarray  # [val_n, C] from the written file, the rows in `val_files` order
    val_files: list[Path]
    val_novelty: np.ndarray | None  # [val_n] novelty scores from the written file; None without novelty data
    novelty: NoveltyInfo | None
    unreadable: list[Unreadable]
    seconds: dict[str, float]  # wall: load, features, fit, write, validate, total; and cpu (process, in all)

    @property
    def val_interval(self) -> tuple[float, float]:
        return top1_interval(self.val_top1, self.val_n)


def teach(options: TeachOptions) -> TeachReport:
    """Fit a new head on the base model's features of the photos in `options.data_dir`; write `options.out`."""
    _check(options)
    clock = _Clock()
    base = Model.load(options.base, options.device, options.threads)
    if not base.has_features:
        raise EdgerecError(no_features_message(base.path))
    base_bytes = base.path.read_bytes()
    folders = find_files(options.data_dir, options.val_dir, options.val_fraction, options.seed)
    clock.lap("load")
    steps = len(folders.train) + len(folders.val)
    progress = options.on_progress or (lambda done, total: None)
    computed = _features(base, folders.train, options, lambda done: progress(done, steps))
    decoded, features = computed.decoded, computed.photos
    clock.lap("features")
    labels = np.array([d.file.label for d in decoded if d.readable])
    rows, views = features.reshape(-1, features.shape[-1]), features.shape[1]
    head = fit_softmax_regression(rows, np.repeat(labels, views), len(folders.classes), options.fit)
    clock.lap("fit")
    novelty = None
    if options.unknown.enabled:  # the photos themselves: views as references add nothing (docs/unknown.md)
        novelty = build_novelty(features[:, 0], labels, options.unknown.k, options.unknown.kept,
                                nudged=computed.nudged, nudged_photos=computed.nudged_photos)
        clock.lap("novelty")
    with tempfile.TemporaryDirectory(dir=options.out.parent) as tmp:
        staged = Path(tmp) / options.out.name
        info = _info(options, base, base_bytes, folders.classes, decoded, [], head, {}, novelty)
        staged.write_bytes(_model_bytes(base_bytes, head, info))
        clock.lap("write")
        val, probs, scores = _validate(staged, folders.val, options,
                                       lambda done: progress(len(folders.train) + done, steps))
        clock.lap("validate")
    truth = np.array([d.file.label for d in val if d.readable])
    top1 = float((probs.argmax(1) == truth).mean())
    metrics = _metrics(top1, len(truth), head, novelty, probs, scores, truth)
    info = _info(options, base, base_bytes, folders.classes, decoded, val, head, metrics, novelty)
    write_bytes_atomic(options.out, _model_bytes(base_bytes, head, info))
    clock.lap("write")
    n = len(folders.classes)
    return TeachReport(options.out, base.path, folders.classes, _counts(decoded, n), _counts(val, n), options.views,
                       head, top1, len(truth), probs, [d.file.path for d in val if d.readable], scores, novelty,
                       unreadable([*decoded, *val]), clock.seconds())


def _metrics(top1: float, n: int, head: LinearHead, novelty: NoveltyInfo | None, probs: np.ndarray,
             scores: np.ndarray | None, truth: np.ndarray) -> dict[str, float]:
    """Validation top-1 with its interval; with novelty data, the share of validation photos kept (not
    `unknown`) and kept with their right label, at the stored threshold."""
    low, high = top1_interval(top1, n)
    metrics = {"val_top1": top1, "val_top1_low95": low, "val_top1_high95": high, "train_top1": head.train_top1}
    if novelty is not None and scores is not None:
        kept = scores <= novelty.threshold
        metrics["val_known_kept"] = float(kept.mean())
        metrics["val_kept_right"] = float((kept & (probs.argmax(1) == truth)).mean())
    return metrics


def _counts(decoded: Sequence[Decoded], classes: int) -> tuple[int, ...]:
    return tuple(np.bincount([d.file.label for d in decoded if d.readable], minlength=classes).tolist())


def _check(options: TeachOptions) -> None:
    unknown = [v for v in options.views if v not in VIEWS]
    if unknown:
        raise EdgerecError(f"views {unknown}; valid: {', '.join(VIEWS)}")
    if options.batch < 1 or options.fit.steps < 1 or options.fit.l2 < 0:
        raise EdgerecError(f"batch and steps must be >= 1 and l2 >= 0, got batch={options.batch}, "
                           f"steps={options.fit.steps}, l2={options.fit.l2}")
    if not options.out.parent.is_dir():
        raise EdgerecError(f"--out {options.out}: folder {options.out.parent} does not exist")


@dataclass(frozen=True)
class _Features:
    decoded: list[Decoded]
    """Every training file decoded (image None if unreadable)."""
    photos: np.ndarray
    """float32 [readable photos, 1 + views, D], the photo itself first."""
    nudged: np.ndarray
    """float32 [M, D]: the nudged view (edge.core.novelty.nudged) of the photos `nudged_choice` picks, for the
    novelty threshold (empty when unknown detection is off)."""
    nudged_photos: np.ndarray
    """[M]: the row of `photos` each nudged view comes from."""


def _features(base: Model, files: Sequence[File], options: TeachOptions, progress: Callable[[int], None]
              ) -> _Features:
    """Decode every training file and compute the features of the readable ones, with their views and, for a
    few, their nudged view, in the same batches."""
    decoded: list[Decoded] = []
    rows, moved, owners = [], [], []
    per_photo, dim = 1 + len(options.views), base.info.features.dim
    nudge = set(nudged_choice(len(files), options.seed).tolist()) if options.unknown.enabled else set()
    for start in range(0, len(files), options.batch):
        chunk = [decode(f) for f in files[start:start + options.batch]]
        decoded += [d for d, _ in chunk]
        images, extra = [], []
        for index, (_, image) in enumerate(chunk, start):
            if image is None:
                continue
            images += fitted_views(image, base.geometry, options.views)
            if index in nudge:
                extra.append(fit(nudged(image, index), base.geometry))
                owners.append(sum(len(r) for r in rows) + len(images) // per_photo - 1)
        if images:
            batch = base.features(np.stack(images + extra))[1]
            rows.append(batch[:len(images)].reshape(-1, per_photo, dim))
            moved.append(batch[len(images):])
        progress(len(decoded))
    if not rows:
        raise EdgerecError(f"{options.data_dir}: none of its {len(files)} training images could be read")
    return _Features(decoded, np.concatenate(rows), np.concatenate(moved), np.array(owners, np.int64))


def _validate(path: Path, files: Sequence[File], options: TeachOptions, progress: Callable[[int], None]
              ) -> tuple[list[Decoded], np.ndarray, np.ndarray | None]:
    """Run the written file on each validation photo as `edgerec evaluate` does: decode, fit, one at a time.
    Probabilities [N, C] and, when the file has novelty data, the novelty scores [N]."""
    model = Model.load(path, options.device, options.threads)
    batch = np.empty((1, *model.info.input_size, 3), np.uint8)
    decoded: list[Decoded] = []
    probs: list[np.ndarray] = []
    scores: list[float] = []
    for f in files:
        d, image = decode(f)
        decoded.append(d)
        if image is not None:
            fit(image, model.geometry, out=batch[0])
            if model.novelty is None:
                probs.append(model.infer(batch)[0])
            else:
                p, _, novelty = model.infer_novelty(batch)
                probs.append(p[0])
                scores.append(float(novelty[0]))
        progress(len(decoded))
    if not probs:
        raise EdgerecError(f"none of the {len(files)} validation images could be read")
    return decoded, np.stack(probs), np.array(scores, np.float32) if scores else None


def _info(options: TeachOptions, base: Model, base_bytes: bytes, classes: Sequence[str], train: list[Decoded],
          val: list[Decoded], head: LinearHead, metrics: dict[str, float], novelty: NoveltyInfo | None) -> ModelInfo:
    readable = lambda ds: sum(d.readable for d in ds)  # noqa: E731
    dataset = DatasetInfo(options.data_dir.resolve().name, fingerprint(train, val, options.val_dir is not None),
                          readable(train), readable(val))
    training = {"trained_by": "teach", "base_model": base.path.name,
                "base_sha256": hashlib.sha256(base_bytes).hexdigest(), "base_arch": base.info.arch,
                "views": ["image", *options.views], "l2": options.fit.l2, "steps": options.fit.steps,
                "train_loss": head.loss, "seed": options.seed,
                "validation": str(options.val_dir) if options.val_dir else f"{options.val_fraction:g} held out"}
    return ModelInfo(labels=list(classes), input_size=base.info.input_size, crop=base.info.crop,
                     arch=base.info.arch, precision=base.info.precision, dataset=dataset, metrics=metrics,
                     training=training, quantization=base.info.quantization,
                     features=FeaturesInfo(FEATURES_NAME, head.weight.shape[0]), novelty=novelty)


def _model_bytes(base_bytes: bytes, head: LinearHead, info: ModelInfo) -> bytes:
    """The base graph up to `features`, then Gemm + Softmax as `probs`; outputs probs and features."""
    model = onnx_edit.parse(base_bytes)
    probs, features = onnx_edit.output(model, OUTPUT_NAME), onnx_edit.output(model, FEATURES_NAME)
    onnx_edit.keep_only_what_feeds(model, {FEATURES_NAME})
    onnx_edit.add_initializer(model, f"{HEAD}/weight", head.weight)
    onnx_edit.add_initializer(model, f"{HEAD}/bias", head.bias)
    onnx_edit.add_node(model, "Gemm", [FEATURES_NAME, f"{HEAD}/weight", f"{HEAD}/bias"], [f"{HEAD}/logits"],
                       f"{HEAD}/Gemm")
    onnx_edit.add_node(model, "Softmax", [f"{HEAD}/logits"], [OUTPUT_NAME], "/teach/Softmax", {"axis": 1})
    probs.type.tensor_type.shape.dim[1].dim_value = head.weight.shape[1]
    onnx_edit.set_outputs(model, [probs, features])
    onnx_edit.set_metadata(model, info.to_props(), PREFIX)
    model.producer_name = "edgerec teach"
    return model.SerializeToString()


class _Clock:
    """Wall seconds per phase, and the process's CPU seconds in all (every thread: ONNX Runtime's too)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.cpu_start = time.process_time()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now

    def seconds(self) -> dict[str, float]:
        return {**self.laps, "total": self.last - self.start, "cpu": time.process_time() - self.cpu_start}


def describe(report: TeachReport) -> list[str]:
    """The summary printed after teaching, in the shape of `edgerec train`'s."""
    from edge.tools.evaluate import interval_text

    seconds = report.seconds
    phases = ("load", "features", "fit", "novelty", "write", "validate")
    timing = ", ".join(f"{name} {seconds[name]:.1f}" for name in phases if name in seconds)
    lines = [f"classes      {len(report.classes)}: {', '.join(report.classes)}",
             f"images       {sum(report.train_counts)} training ("
             + (f"each also as {', '.join(report.views)}" if report.views else "no extra views")
             + f"), {report.val_n} validation",
             f"base         {report.base}"]
    if report.unreadable:
        lines.append(f"warning      skipped {len(report.unreadable)} unreadable image(s): "
                     + ", ".join(str(u.path) for u in report.unreadable[:10]))
    lines += [f"fit          training top-1 {100 * report.head.train_top1:.1f}%, loss {report.head.loss:.3f}",
              _unknown_line(report),
              f"seconds      {seconds['total']:.1f} in all ({timing}); {seconds['cpu']:.1f} s CPU",
              f"validation   {interval_text(report.val_top1, report.val_n)} for {report.out.name}; "
              f"one image is {100 / report.val_n:.1f} points",
              f"model        {report.out}"]
    return lines


def _unknown_line(report: TeachReport) -> str:
    if report.novelty is None or report.val_novelty is None:
        return "unknown      off (--no-unknown): every image gets one of the labels"
    novelty, kept = report.novelty, float(np.mean(report.val_novelty <= report.novelty.threshold))
    return (f"unknown      above novelty {novelty.threshold:.3f} (keeps {novelty.calibration['kept']:.1%} of training "
            f"photos, leave-one-out; {kept:.1%} of validation photos)")
