"""Top-1 under camera corruptions: what `edgerec evaluate --robustness` runs.

The folder is evaluated once clean (that row *is* plain `edgerec evaluate`) and once per corruption x
severity of `edge.tools.corruptions`, each photo corrupted in full before the runtime's crop and resize. The
summary is the mean corruption accuracy (mCA: the mean top-1 over every corruption and severity) and its
drop relative to clean. Two models run on the very same corrupted pixels (the generator depends only on
seed, corruption, severity and image), so their tables compare image for image.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.core.devices import physical_cores
from edge.core.model import Model
from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.tools.corruptions import CORRUPTIONS, SEVERITIES, check_names, corrupt
from edge.tools.evaluate import (
    DecodedPhotos,
    EvalOptions,
    EvalReport,
    ImageList,
    evaluate_models,
    interval_text,
    list_folder,
    top1_interval,
    write_png,
)
from edge.tools.figures import render_heatmap, side_by_side

METRIC_CLEAN = "robust_clean_top1"
"""Metrics key (edge.core.metadata.ModelInfo.metrics) for the clean top-1 of a robustness run."""
METRIC_MCA = "robust_mca"
"""Metrics key for the mean corruption accuracy of a robustness run."""
METRIC_IMAGES = "robust_images"
"""Metrics key for the number of images the run measured (`edgerec train` stores it; optional)."""
METRIC_SEED = "robust_seed"
"""Metrics key for the seed of the run's corruptions (`edgerec train` stores it; optional)."""
METRIC_INT32 = "robust_int32_sums"
"""Metrics key, 1.0 when an INT8 file's figures were measured with every product summed in 32 bits (what ARM
and VNNI x86 compute, whichever CPU measured them; `load_models(int32_sums=True)`); absent in files stored
before, whose INT8 figures are those of the CPU that measured them."""
ROBUST_METRICS = (METRIC_CLEAN, METRIC_MCA, METRIC_IMAGES, METRIC_SEED, METRIC_INT32)
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class RobustnessOptions:
    corruptions: tuple[str, ...] = tuple(CORRUPTIONS)
    """Names from `edge.tools.corruptions.CORRUPTIONS`, in report order."""
    seed: int = 0
    """Seeds every corruption's randomness (with the corruption, severity and image index)."""
    batch: int = 1
    """Images per inference call, as `EvalOptions.batch`."""
    workers: int = 1
    """Conditions evaluated at once, each in its own thread. The corruptions are single-threaded NumPy, so one
    condition at a time leaves all cores but one idle while they run; with models of one intra-op thread each
    (`load_models`), one worker per core keeps every core busy: `edgerec train`'s stage on 8
    photos (two of them 1920x1080), two files, went from 27-30 s to 18 s on 2 cores with the same numbers
    (AMD Zen 3; docs/training.md)."""
    on_progress: Callable[[int, int], None] | None = field(default=None, compare=False)
    """Called with (images done, images in all) across every condition."""


@dataclass(frozen=True)
class RobustnessReport:
    clean: EvalReport  # the plain evaluation of the folder
    corruptions: list[str]
    severities: list[int]
    correct: np.ndarray  # bool [corruption, severity, image]: top-1 right under that condition
    seed: int

    @property
    def n(self) -> int:
        return self.clean.n

    @property
    def accuracy(self) -> np.ndarray:
        """float [corruption, severity]: top-1 under each condition."""
        return self.correct.mean(axis=2)

    @property
    def mca(self) -> float:
        """Mean corruption accuracy: top-1 averaged over every corruption and severity."""
        return float(self.correct.mean())

    @property
    def relative_drop(self) -> float:
        """(clean - mCA) / clean: the share of the clean accuracy the corruptions take away."""
        return (self.clean.top1 - self.mca) / self.clean.top1 if self.clean.top1 > 0 else 0.0

    def mca_interval(self) -> tuple[float, float]:
        """95% percentile-bootstrap interval of the mCA, resampling images (the conditions of one image are
        not independent trials, so a binomial interval over all predictions would be too narrow)."""
        per_image = self.correct.mean(axis=(0, 1))
        rng = np.random.default_rng(self.seed)
        means = per_image[rng.integers(0, len(per_image), (BOOTSTRAP_RESAMPLES, len(per_image)))].mean(axis=1)
        return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers: what `--json` prints and robustness.json holds, one object per model."""
        return {
            "model": self.clean.model, "precision": self.clean.precision, "provider": self.clean.provider,
            "data_dir": self.clean.data_dir, "n": self.n, "seed": self.seed,
            "clean": {"top1": self.clean.top1, "top1_interval95": list(top1_interval(self.clean.top1, self.n))},
            "severities": self.severities,
            "corruptions": {name: {"top1": row.tolist(), "mean": float(row.mean())}
                            for name, row in zip(self.corruptions, self.accuracy)},
            "mca": self.mca, "mca_interval95": list(self.mca_interval()), "relative_drop": self.relative_drop,
        }


def robustness(model: Model, data: str | Path | ImageList, options: RobustnessOptions | None = None
               ) -> RobustnessReport:
    """Evaluate `data` (a folder, or a list of its images) clean and under every corruption x severity."""
    return compare([model], data, options)[0]


def compare(models: Sequence[Model], data: str | Path | ImageList, options: RobustnessOptions | None = None
            ) -> list[RobustnessReport]:
    """Each model's report, on the same corrupted pixels: each photo is corrupted once per condition and run
    through every model (the corruptions of a full photo cost more than the inferences)."""
    options = options or RobustnessOptions()
    check_names(options.corruptions)
    if options.workers < 1:
        raise EdgerecError(f"workers must be >= 1, got {options.workers}")
    images = data if isinstance(data, ImageList) else list_folder(data, models[0].labels)
    conditions = [(name, severity) for name in options.corruptions for severity in SEVERITIES]
    progress = _Progress(options.on_progress, 1 + len(conditions))
    decoded = DecodedPhotos()  # each photo decoded once for all the passes (corruptions return new images)
    clean = evaluate_models(models, images, _eval_options(options, progress.of(0), None, decoded))

    def condition(k: int) -> list[np.ndarray]:
        name, severity = conditions[k]
        transform = _corruption(name, severity, options.seed)
        return [report.correct for report in evaluate_models(
            models, images, _eval_options(options, progress.of(k + 1), transform, decoded))]

    with ThreadPoolExecutor(options.workers, thread_name_prefix="robustness") as pool:
        correct = np.stack(list(pool.map(condition, range(len(conditions)))))  # [condition, model, image]
    shape = (len(options.corruptions), len(SEVERITIES), -1)
    return [RobustnessReport(report, list(options.corruptions), list(SEVERITIES), correct[:, k].reshape(shape),
                             options.seed) for k, report in enumerate(clean)]


def load_models(paths: Sequence[str | Path], device: str = "cpu", threads: int | None = None,
                int32_sums: bool = True) -> tuple[list[Model], int]:
    """The files for `compare`, and the workers to run them with: without `threads`, one inference thread per
    file and one condition per physical core (the corruptions are single-threaded); with it, `threads` each
    and one condition at a time. `int32_sums`: INT8 files as ARM and VNNI x86 compute them, on any CPU
    (`Model.load`; the figures a file stores are measured so); False: an x86 CPU's saturating kernels."""
    models = [Model.load(path, device, 1 if threads is None else threads, int32_sums=int32_sums) for path in paths]
    return models, physical_cores() if threads is None else 1


def _corruption(name: str, severity: int, seed: int) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda image, index: corrupt(image, name, severity, seed, index)


def _eval_options(options: RobustnessOptions, on_progress: Callable[[int, int], None] | None,
                  transform: Callable[[np.ndarray, int], np.ndarray] | None, decoded: DecodedPhotos) -> EvalOptions:
    return EvalOptions(batch=options.batch, on_progress=on_progress, transform=transform, decoded=decoded)


class _Progress:
    """Images done across all `runs` passes over the folder, from passes that may run at once."""

    def __init__(self, report: Callable[[int, int], None] | None, runs: int):
        self.report, self.runs = report, runs
        self.done: dict[int, int] = {}
        self.lock = threading.Lock()

    def of(self, run: int) -> Callable[[int, int], None] | None:
        """The pass's own (done, total) callback, or None when nobody listens."""
        return None if self.report is None else (lambda done, total: self._count(run, done, total))

    def _count(self, run: int, done: int, total: int) -> None:
        with self.lock:
            self.done[run] = done
            self.report(sum(self.done.values()), self.runs * total)


def discordant(a: RobustnessReport, b: RobustnessReport) -> tuple[int, int]:
    """Corrupted predictions right by `a` only and right by `b` only (same images, same pixels)."""
    if a.correct.shape != b.correct.shape:
        raise ValueError("the two reports cover different conditions or images")
    return int((a.correct & ~b.correct).sum()), int((~a.correct & b.correct).sum())


def describe(reports: Sequence[RobustnessReport]) -> list[str]:
    """Text for a terminal: each model's table (corruption x severity), then the summary side by side."""
    lines: list[str] = []
    width = max(len("corruption"), *(len(c) for c in reports[0].corruptions))
    for report in reports:
        clean = report.clean
        lines += [f"{Path(clean.model).name} ({clean.precision}, {clean.provider}) on {clean.data_dir}: "
                  f"{report.n} images, seed {report.seed}",
                  f"{'corruption':<{width}}  " + "  ".join(f"{f's{s}':>6}" for s in report.severities) + "    mean"]
        lines += [f"{name:<{width}}  " + "  ".join(f"{v:6.1%}" for v in row) + f"  {row.mean():6.1%}"
                  for name, row in zip(report.corruptions, report.accuracy)]
        lines.append("")
    for report in reports:
        low, high = report.mca_interval()
        lines.append(f"{Path(report.clean.model).name}: clean top-1 {report.clean.top1:.1%} "
                     f"({interval_text(report.clean.top1, report.n)}); mean corruption accuracy {report.mca:.1%} "
                     f"(95% interval {100 * low:.1f}-{100 * high:.1f}%, bootstrap over images); "
                     f"relative drop {report.relative_drop:.1%}")
    if len(reports) == 2:
        only_a, only_b = discordant(*reports)
        total = reports[0].correct.size
        lines.append(f"of {total} corrupted predictions, {only_a} right only by the first model, "
                     f"{only_b} right only by the second")
    return lines


def figure(reports: Sequence[RobustnessReport]) -> np.ndarray:
    """One heat map per model (corruption x severity, plus the mean), side by side."""
    panels = []
    for report in reports:
        clean = report.clean
        values = np.column_stack([report.accuracy, report.accuracy.mean(axis=1)])
        title = [f"{Path(clean.model).name} ({clean.precision})",
                 f"{report.n} images of {clean.data_dir}   clean {clean.top1:.1%}   mCA {report.mca:.1%}   "
                 f"drop {report.relative_drop:.1%}"]
        panels.append(render_heatmap(values, report.corruptions, [f"s{s}" for s in report.severities] + ["mean"],
                                     title))
    return side_by_side(panels)


@dataclass(frozen=True)
class RobustnessFiles:
    heatmap: Path
    metrics: Path


def write_report(reports: Sequence[RobustnessReport], out_dir: str | Path) -> RobustnessFiles:
    """Write robustness.png (the heat maps) and robustness.json (`summaries`) into `out_dir`, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = RobustnessFiles(out_dir / "robustness.png", out_dir / "robustness.json")
    write_png(files.heatmap, figure(reports))
    write_bytes_atomic(files.metrics, (json.dumps(summaries(reports), indent=1) + "\n").encode())
    return files


def summaries(reports: Sequence[RobustnessReport]) -> dict[str, object]:
    """{"models": [each report's summary]} plus, for two, the discordant counts."""
    out: dict[str, object] = {"models": [r.summary() for r in reports]}
    if len(reports) == 2:
        only_a, only_b = discordant(*reports)
        out["discordant"] = {"right_only_first": only_a, "right_only_second": only_b,
                             "predictions": int(reports[0].correct.size)}
    return out


def metrics(report: RobustnessReport, int32_sums: bool = False) -> dict[str, float]:
    """The numbers a model file can carry in its metrics (`edgerec info` shows them); `int32_sums` when an INT8
    file was measured so (`load_models`)."""
    stored = {METRIC_CLEAN: report.clean.top1, METRIC_MCA: report.mca, METRIC_IMAGES: float(report.n),
              METRIC_SEED: float(report.seed)}
    return {**stored, METRIC_INT32: 1.0} if int32_sums else stored


def stored_robustness(metrics: dict[str, float]) -> str | None:
    """'clean top-1 83.3%, mean corruption accuracy 64.5% (relative drop 22.5%) on 48 images, seed 0' from a
    model file's metrics (the images and seed where stored), or None when it stores no robustness figures."""
    if METRIC_CLEAN not in metrics or METRIC_MCA not in metrics:
        return None
    clean, mca = metrics[METRIC_CLEAN], metrics[METRIC_MCA]
    drop = f" (relative drop {(clean - mca) / clean:.1%})" if clean > 0 else ""
    images = f" on {metrics[METRIC_IMAGES]:.0f} images" if METRIC_IMAGES in metrics else ""
    seed = f", seed {metrics[METRIC_SEED]:.0f}" if METRIC_SEED in metrics else ""
    sums = ", INT8 summed in 32 bits (as on ARM and VNNI x86)" if metrics.get(METRIC_INT32) else ""
    return f"clean top-1 {clean:.1%}, mean corruption accuracy {mca:.1%}{drop}{images}{seed}{sums}"
