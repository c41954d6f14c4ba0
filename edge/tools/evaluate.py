"""Evaluate a model file on an image-folder dataset: what `edgerec evaluate` runs.

Works on any contract model file (FP32 or INT8) with the runtime alone: no torch, no matplotlib. Each
class folder must be named after one of the model's labels (matched by name, so the folder order does
not matter and a folder set may cover only some of the labels, e.g. a few ImageNet classes). Images
are decoded as training decodes them (`cv2.IMREAD_COLOR`) and fitted with `edge.core.preprocess.fit`.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.core.datasets import Unreadable, image_problem, list_classes, list_images
from edge.core.decode import imdecode
from edge.core.model import Model
from edge.core.preprocess import fit
from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.tools.figures import MUTED, TRUE_INK, WRONG_INK, SheetItem, render_confusion, render_contact_sheet

WARNING_LIST_LIMIT = 20  # unreadable files named in the warning; the report holds all of them
OTHER = "(other)"  # confusion-matrix column for predictions of labels that have no folder


DECODED_BYTES = 256 * 2**20
"""How many bytes of decoded photos `DecodedPhotos` keeps by default (about 20 12-megapixel photos)."""


class DecodedPhotos:
    """Decoded photos kept for repeated passes over the same files, up to `limit` bytes; a file beyond that
    is decoded again at each pass. A transform must not write into the photo it is given. Passes may run in
    several threads at once."""

    def __init__(self, limit: int = DECODED_BYTES):
        self.limit, self.used = limit, 0
        self.kept: dict[Path, tuple[np.ndarray | None, Unreadable | None]] = {}
        self.lock = threading.Lock()

    def get(self, path: Path, unreadable: list[Unreadable]) -> np.ndarray | None:
        if path in self.kept:
            image, problem = self.kept[path]
            if problem is not None:
                unreadable.append(problem)
            return image
        noted = len(unreadable)
        image = decode_image(path, unreadable)
        size = 0 if image is None else image.nbytes
        with self.lock:
            if path not in self.kept and self.used + size <= self.limit:
                self.kept[path] = (image, unreadable[noted] if len(unreadable) > noted else None)
                self.used += size
        return image


@dataclass(frozen=True)
class EvalOptions:
    batch: int = 1
    """Images per inference call. 1 measures the per-frame latency the live runtime sees."""
    top_k: int = 5
    """The k of top-k accuracy (capped at the number of labels)."""
    on_progress: Callable[[int, int], None] | None = field(default=None, compare=False)
    """Called after each batch with (images done, images in all); the CLI draws a progress bar with it."""
    transform: Callable[[np.ndarray, int], np.ndarray] | None = field(default=None, compare=False)
    """Applied to each decoded photo (and its index in the folder listing) before `fit`, as a camera
    would change it: the robustness report's corruptions. None = the photos as they are."""
    decoded: DecodedPhotos | None = field(default=None, compare=False)
    """Photos kept decoded for passes over the same files (the robustness report makes 56); None = decode
    each file at each pass."""


@dataclass(frozen=True)
class ClassMetrics:
    precision: float  # of the images predicted as this class, the share that are (0.0 when none are)
    recall: float  # of this class's images, the share predicted as it (0.0 when it has none)
    f1: float
    support: int  # readable images of this class


@dataclass(frozen=True)
class Mistake:
    path: Path
    true_label: str
    predicted_label: str
    score: float  # probability of the predicted label
    true_score: float  # probability the model gave the true label


def top1_interval(top1: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval for a top-1 measured on ``n`` images.

    On the few dozen validation photos of a small set one image moves top-1 by several points; the interval
    says how far the accuracy on further photos like these may lie from the measured one.
    """
    if n <= 0:
        return 0.0, 1.0
    p = top1
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def interval_text(top1: float, n: int) -> str:
    """'56/59 right, 95% interval 86.1-98.3%' for a top-1 measured on n images."""
    low, high = top1_interval(top1, n)
    return f"{round(top1 * n)}/{n} right, 95% interval {100 * low:.1f}-{100 * high:.1f}%"


@dataclass(frozen=True)
class EvalReport:
    model: str
    precision: str  # the model's fp32 / int8
    provider: str
    data_dir: str
    classes: list[str]  # the folder classes, in the model's label order: the confusion matrix rows
    columns: list[str]  # confusion matrix columns: the classes, then OTHER if the model has more labels
    confusion: np.ndarray  # int64 [len(classes), len(columns)]: rows true, columns predicted
    per_class: dict[str, ClassMetrics]
    n: int  # images evaluated (readable ones)
    top1: float
    top5: float
    top_k: int  # the k actually used for `top5` (fewer when the model has fewer labels)
    latency_ms: float  # median per image of fit + inference, decoding excluded
    latency_p95_ms: float
    batch: int
    mistakes: list[Mistake]  # most confident first
    unreadable: list[Unreadable]
    correct: np.ndarray  # bool [n]: top-1 right, per readable image in listing order

    @property
    def macro_f1(self) -> float:
        return float(np.mean([m.f1 for m in self.per_class.values()]))

    def warning(self) -> str | None:
        """One line naming the unreadable files that were skipped, or None."""
        if not self.unreadable:
            return None
        listed = ", ".join(f"{u.path} ({u.reason})" for u in self.unreadable[:WARNING_LIST_LIMIT])
        more = len(self.unreadable) - WARNING_LIST_LIMIT
        return (f"skipped {len(self.unreadable)} unreadable image file(s): {listed}"
                + (f", and {more} more" if more > 0 else ""))

    def summary(self) -> dict[str, object]:
        """The report as JSON-ready values (what `--json` prints and metrics.json holds)."""
        return {
            "model": self.model, "precision": self.precision, "provider": self.provider,
            "data_dir": self.data_dir, "n": self.n, "top1": self.top1,
            "top1_interval95": list(top1_interval(self.top1, self.n)),
            "top5": self.top5, "top_k": self.top_k, "macro_f1": self.macro_f1,
            "per_class": {label: vars(m) for label, m in self.per_class.items()},
            "confusion": {"rows": self.classes, "columns": self.columns, "counts": self.confusion.tolist()},
            "latency_ms": self.latency_ms, "latency_p95_ms": self.latency_p95_ms, "batch": self.batch,
            "misclassified": [{"path": str(m.path), "true": m.true_label, "predicted": m.predicted_label,
                               "score": m.score, "true_score": m.true_score} for m in self.mistakes],
            "unreadable": [{"path": str(u.path), "reason": u.reason} for u in self.unreadable],
        }


@dataclass(frozen=True)
class ImageList:
    """Labelled image files to evaluate, in order: a folder's listing (`list_folder`) or a chosen list, such
    as the validation images `edgerec train` held out. The position of a file in `files` is the index
    `EvalOptions.transform` sees (it seeds the robustness report's corruptions)."""

    name: str  # what a report names as its data (EvalReport.data_dir)
    classes: list[str]  # class names, each one of the model's labels
    files: list[tuple[Path, int]]  # (image file, index in `classes`)


def list_folder(data_dir: str | Path, labels: Sequence[str]) -> ImageList:
    """The images below the class folders of `data_dir`, sorted by relative path; classes in label order."""
    data_dir = Path(data_dir)
    classes = model_ordered_classes(data_dir, labels)
    files, _ = list_images(data_dir, classes)
    if not files:
        raise EdgerecError(f"{data_dir}: no images in its class folders {', '.join(classes)}")
    return ImageList(str(data_dir), classes, files)


def evaluate(model: Model, data: str | Path | ImageList, options: EvalOptions | None = None) -> EvalReport:
    """Classify every image below the class folders of `data` (or of its list) and score the predictions."""
    return evaluate_models([model], data, options)[0]


def evaluate_models(models: Sequence[Model], data: str | Path | ImageList, options: EvalOptions | None = None
                    ) -> list[EvalReport]:
    """`evaluate` for each model, decoding (and transforming) each image once for all of them; the folder is
    listed with the first model's labels, and every model must have each class among its labels."""
    options = options or EvalOptions()
    if options.batch < 1 or options.top_k < 1:
        raise EdgerecError(f"batch and top_k must be >= 1, got batch={options.batch}, top_k={options.top_k}")
    images = data if isinstance(data, ImageList) else list_folder(data, models[0].labels)
    if not images.files:
        raise EdgerecError(f"{images.name}: no images to evaluate")
    paths = [path for path, _ in images.files]
    probs, times, unreadable = _run(models, paths, options)
    readable = np.array([p is not None for p in probs[0]], bool)
    if not readable.any():
        raise EdgerecError(f"{images.name}: none of its {len(paths)} image files could be read "
                           f"(first: {unreadable[0].path}: {unreadable[0].reason})")
    paths = [path for path, ok in zip(paths, readable) if ok]
    reports = []
    for model, model_probs, model_times in zip(models, probs, times):
        classes = model_ordered_classes(images.name, model.labels, images.classes)
        truth = np.array([model.labels.index(images.classes[c]) for _, c in images.files])
        reports.append(_score(model, images.name, classes, paths, truth[readable],
                              np.stack([p for p in model_probs if p is not None]), model_times, unreadable, options))
    return reports


def model_ordered_classes(data_dir: str | Path, labels: Sequence[str], found: Sequence[str] | None = None
                          ) -> list[str]:
    """The class folders of `data_dir` (or `found`), in the model's label order; a class the model lacks is an
    error."""
    found = list_classes(Path(data_dir), minimum=1) if found is None else found
    unknown = [name for name in found if name not in labels]
    if unknown:
        named = ", ".join(repr(name) + _suggest(name, labels) for name in unknown)
        raise EdgerecError(f"{data_dir}: class folder(s) {named} not among the model's labels "
                           f"(folders must be named after labels); its labels: {_some(labels)}")
    position = {label: i for i, label in enumerate(labels)}
    return sorted(found, key=position.__getitem__)


def _suggest(name: str, labels: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, labels, n=2, cutoff=0.75)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def _some(labels: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(labels[:limit])
    return shown if len(labels) <= limit else f"{shown}, ... ({len(labels)} in all; `edgerec info MODEL --json`)"


def _run(models: Sequence[Model], paths: Sequence[Path], options: EvalOptions
         ) -> tuple[list[list[np.ndarray | None]], list[list[float]], list[Unreadable]]:
    """Per model: probabilities per file (None if unreadable) and the per-image ms of each batch (fit +
    inference). Each file is decoded and transformed once, for every model."""
    batches = [np.empty((options.batch, *model.info.input_size, 3), np.uint8) for model in models]
    probs: list[list[np.ndarray | None]] = [[] for _ in models]
    times: list[list[float]] = [[] for _ in models]
    unreadable: list[Unreadable] = []
    decode = decode_image if options.decoded is None else options.decoded.get
    for start in range(0, len(paths), options.batch):
        images = [decode(path, unreadable) for path in paths[start:start + options.batch]]
        if options.transform is not None:
            images = [None if image is None else options.transform(image, start + i) for i, image in enumerate(images)]
        good = [image for image in images if image is not None]
        for model, batch, model_probs, model_times in zip(models, batches, probs, times):
            if good:
                began = time.perf_counter()
                for image, slot in zip(good, batch):
                    fit(image, model.geometry, out=slot)
                out = iter(model.infer(batch[:len(good)]))
                model_times.append((time.perf_counter() - began) * 1000 / len(good))
                model_probs += [None if image is None else next(out) for image in images]
            else:
                model_probs += [None] * len(images)
        if options.on_progress is not None:
            options.on_progress(len(probs[0]), len(paths))
    return probs, times, unreadable


def decode_image(path: Path, unreadable: list[Unreadable]) -> np.ndarray | None:
    """uint8 HxWx3 BGR as training decodes it, or None (noted in `unreadable`)."""
    try:
        data = path.read_bytes()
        problem = image_problem(data)
        image = imdecode(data, cv2.IMREAD_COLOR, path) if data and not problem else None
    except (OSError, cv2.error) as exc:
        unreadable.append(Unreadable(path, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"))
        return None
    if problem:
        unreadable.append(Unreadable(path, problem))
        return None
    if image is None:
        unreadable.append(Unreadable(path, "not a decodable image" if data else "empty file"))
    return image


def _score(model: Model, data_dir: str, classes: list[str], paths: list[Path], truth: np.ndarray,
           probs: np.ndarray, times: list[float], unreadable: list[Unreadable], options: EvalOptions) -> EvalReport:
    """Accuracy, per-class metrics, confusion matrix and mistakes from the probabilities [n, labels]."""
    labels = model.labels
    predicted = probs.argmax(axis=1)
    k = min(options.top_k, len(labels))
    top_k = np.argpartition(probs, -k, axis=1)[:, -k:]
    row_of = {labels.index(name): i for i, name in enumerate(classes)}
    columns = classes + ([OTHER] if len(labels) > len(classes) else [])
    confusion = np.zeros((len(classes), len(columns)), np.int64)
    for t, p in zip(truth, predicted):
        confusion[row_of[int(t)], row_of.get(int(p), len(classes))] += 1
    per_class = {name: _class_metrics(confusion, i) for i, name in enumerate(classes)}
    wrong = np.flatnonzero(predicted != truth)
    mistakes = [Mistake(paths[i], labels[truth[i]], labels[predicted[i]], float(probs[i, predicted[i]]),
                        float(probs[i, truth[i]])) for i in wrong[np.argsort(-probs[wrong, predicted[wrong]])]]
    return EvalReport(
        model=str(model.path), precision=model.info.precision, provider=model.provider, data_dir=str(data_dir),
        classes=classes, columns=columns, confusion=confusion, per_class=per_class, n=len(truth),
        top1=float(np.mean(predicted == truth)), top5=float(np.mean((top_k == truth[:, None]).any(axis=1))),
        top_k=k, latency_ms=float(np.median(times)), latency_p95_ms=float(np.percentile(times, 95)),
        batch=options.batch, mistakes=mistakes, unreadable=unreadable, correct=predicted == truth)


def _class_metrics(confusion: np.ndarray, i: int) -> ClassMetrics:
    hits, support, predicted = int(confusion[i, i]), int(confusion[i].sum()), int(confusion[:, i].sum())
    precision = hits / predicted if predicted else 0.0
    recall = hits / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClassMetrics(precision, recall, f1, support)


@dataclass(frozen=True)
class ReportFiles:
    confusion: Path
    misclassified: Path
    metrics: Path


def write_report(report: EvalReport, out_dir: str | Path, sheet_limit: int = 64) -> ReportFiles:
    """Write confusion.png, misclassified.png (a contact sheet of the most confident mistakes) and
    metrics.json into `out_dir` (created if needed), each atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir / "confusion.png", out_dir / "misclassified.png", out_dir / "metrics.json")
    write_png(files.confusion, confusion_figure(report))
    write_png(files.misclassified, mistakes_figure(report, sheet_limit))
    write_bytes_atomic(files.metrics, (json.dumps(report.summary(), indent=1) + "\n").encode())
    return files


def describe(report: EvalReport, mistakes: int = 10) -> list[str]:
    """The report as text lines for a terminal: headline, per-class table, the most confident mistakes."""
    width = max(len("class"), *(len(c) for c in report.classes))
    lines = [f"{Path(report.model).name} ({report.precision}, {report.provider}) on {report.data_dir}: "
             f"{report.n} images, {len(report.classes)} classes",
             f"top-1 {report.top1:.1%} ({interval_text(report.top1, report.n)})   top-{report.top_k} "
             f"{report.top5:.1%}   macro F1 {report.macro_f1:.3f}",
             f"latency {report.latency_ms:.1f} ms/image (median; p95 {report.latency_p95_ms:.1f}; "
             f"batch {report.batch})",
             "",
             f"{'class':<{width}}  precision  recall     f1  support"]
    lines += [f"{name:<{width}}  {m.precision:9.1%}  {m.recall:6.1%}  {m.f1:5.3f}  {m.support:7d}"
              for name, m in report.per_class.items()]
    if report.mistakes:
        lines += ["", f"{len(report.mistakes)} misclassified"
                  + (f", the {mistakes} most confident:" if len(report.mistakes) > mistakes else ":")]
        lines += [f"  {m.path}: {m.true_label} -> {m.predicted_label} {m.score:.0%}"
                  for m in report.mistakes[:mistakes]]
    return lines


def confusion_figure(report: EvalReport) -> np.ndarray:
    title = [f"Confusion matrix: {Path(report.model).name} ({report.precision}) on {report.data_dir}",
             f"{report.n} images   top-1 {report.top1:.1%}   top-{report.top_k} {report.top5:.1%}   "
             f"macro F1 {report.macro_f1:.3f}"
             + (f"   {OTHER}: predicted a label that has no folder" if OTHER in report.columns else "")]
    return render_confusion(report.confusion, report.classes, report.columns, title)


def mistakes_figure(report: EvalReport, limit: int) -> np.ndarray:
    """A contact sheet of the `limit` most confident mistakes: true label, predicted label and score."""
    shown = report.mistakes[:limit]
    header = (f"Misclassified: {len(report.mistakes)} of {report.n} images ({Path(report.model).name} on "
              f"{report.data_dir})" + (f", the {limit} most confident shown" if len(report.mistakes) > limit else "")
              if shown else f"No misclassified images: all {report.n} correct")
    items = [SheetItem(m.path, [(f"true: {m.true_label} {m.true_score:.0%}", TRUE_INK),
                                (f"pred: {m.predicted_label} {m.score:.0%}", WRONG_INK), (m.path.name, MUTED)])
             for m in shown]
    return render_contact_sheet(items, header)


def write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise EdgerecError(f"{path}: PNG encoding failed")
    write_bytes_atomic(path, data.tobytes())
