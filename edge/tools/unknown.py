"""How well a model file tells what it was taught from what it was not: `edgerec evaluate MODEL DIR --unknown U`.

Known photos: DIR's class folders, named after the model's labels (as `edgerec evaluate` reads them). Unknown
photos: every image below U (any folders). Each photo is decoded and fitted as evaluation does, and scored by
the file's own novelty data (edge.core.novelty). Reported, with 95% intervals:

- AUROC of the novelty score (known vs unknown), and of the top-probability baseline (1 - max probability),
  as a paired bootstrap over photos;
- the share of unknown photos still kept when the threshold keeps 95% of the known ones (FPR at 95% TPR);
- at the threshold stored in the file: the share of known photos kept, kept with their right label, and the
  share of unknown photos flagged (Wilson intervals).

`figure` draws both score distributions with the threshold, in OpenCV (no matplotlib on the device).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.core.datasets import IMAGE_EXTENSIONS, Unreadable
from edge.core.model import Model
from edge.core.preprocess import fit
from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.tools.evaluate import decode_image, list_folder, top1_interval

BOOTSTRAP = 1000
KNOWN_KEPT = 0.95


@dataclass(frozen=True)
class UnknownOptions:
    threshold: float | None = None
    """The threshold judged; None: the one stored in the model file."""
    seed: int = 0
    """Seeds the bootstrap of the AUROC intervals."""
    on_progress: Callable[[int, int], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Share:
    """k of n, with a 95% Wilson interval."""

    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    @classmethod
    def of(cls, mask: np.ndarray) -> Share:
        k, n = int(mask.sum()), int(mask.size)
        low, high = top1_interval(k / n if n else 0.0, n)
        return cls(k, n, low, high)

    def text(self) -> str:
        return f"{self.value:.1%} ({self.k}/{self.n}, 95% {self.low:.1%}-{self.high:.1%})"


@dataclass(frozen=True)
class UnknownReport:
    model: str
    known_dir: str
    unknown_dir: str
    threshold: float
    auroc: float
    auroc_interval: tuple[float, float]
    baseline_auroc: float
    """AUROC of 1 - top probability on the same photos."""
    baseline_interval: tuple[float, float]
    fpr_at_95: Share
    """Unknown photos kept (scored under the threshold that keeps 95% of known photos)."""
    known_kept: Share
    known_kept_right: Share
    unknown_flagged: Share
    known_scores: np.ndarray = field(repr=False)
    unknown_scores: np.ndarray = field(repr=False)
    unreadable: list[Unreadable] = field(default_factory=list)

    def summary(self) -> dict:
        shares = {name: {**asdict(getattr(self, name)), "value": round(getattr(self, name).value, 4)}
                  for name in ("fpr_at_95", "known_kept", "known_kept_right", "unknown_flagged")}  # fmt: skip
        return {"model": self.model, "known_dir": self.known_dir, "unknown_dir": self.unknown_dir,
                "threshold": round(self.threshold, 6), "auroc": round(self.auroc, 4),
                "auroc_95": [round(v, 4) for v in self.auroc_interval], "baseline_auroc": round(self.baseline_auroc, 4),
                "baseline_auroc_95": [round(v, 4) for v in self.baseline_interval], **shares,
                "unreadable": [str(u.path) for u in self.unreadable]}  # fmt: skip


def evaluate_unknown(model: Model, known_dir: str | Path, unknown_dir: str | Path,
                     options: UnknownOptions | None = None) -> UnknownReport:
    """Score the known and unknown photos with `model`'s novelty data and measure how well they part."""
    options = options or UnknownOptions()
    if model.novelty is None:
        raise EdgerecError(f"{model.path}: carries no novelty data (teach or train it with this edgerec; "
                           "`edgerec info` shows an 'unknown' row for files that have it)")
    known = list_folder(known_dir, model.labels)
    unknown = unknown_files(Path(unknown_dir))
    total = len(known.files) + len(unknown)
    progress = options.on_progress or (lambda done, all_: None)
    unreadable: list[Unreadable] = []
    k_probs, k_scores, k_truth = _score(model, known.files, unreadable, lambda i: progress(i, total))
    u_probs, u_scores, _ = _score(model, [(p, -1) for p in unknown], unreadable,
                                  lambda i: progress(len(known.files) + i, total))
    if len(k_scores) == 0 or len(u_scores) == 0:
        raise EdgerecError("no readable known or unknown photos to compare")
    truth = np.array([model.labels.index(known.classes[t]) for t in k_truth])
    threshold = model.novelty.threshold if options.threshold is None else options.threshold
    kept = k_scores <= threshold
    rng = np.random.default_rng(options.seed)
    auroc, auroc_ci = auroc_with_interval(k_scores, u_scores, rng)
    base, base_ci = auroc_with_interval(1 - k_probs.max(1), 1 - u_probs.max(1), np.random.default_rng(options.seed))
    at_95 = float(np.quantile(k_scores, KNOWN_KEPT, method="higher"))
    return UnknownReport(str(model.path), str(known_dir), str(unknown_dir), float(threshold), auroc, auroc_ci, base,
                         base_ci, Share.of(u_scores <= at_95), Share.of(kept),
                         Share.of(kept & (k_probs.argmax(1) == truth)), Share.of(u_scores > threshold),
                         k_scores, u_scores, unreadable)  # fmt: skip


def unknown_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise EdgerecError(f"--unknown {folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise EdgerecError(f"--unknown {folder}: holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def _score(model: Model, files: Sequence[tuple[Path, int]], unreadable: list[Unreadable],
           progress: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(probs [n, C], novelty [n], label of each) of the readable files, one at a time as the live loop runs."""
    batch = np.empty((1, *model.info.input_size, 3), np.uint8)
    probs, scores, labels = [], [], []
    for i, (path, label) in enumerate(files):
        image = decode_image(path, unreadable)
        if image is not None:
            fit(image, model.geometry, out=batch[0])
            p, _, novelty = model.infer_novelty(batch)
            probs.append(p[0])
            scores.append(float(novelty[0]))
            labels.append(label)
        progress(i + 1)
    width = len(model.labels)
    return np.array(probs, np.float32).reshape(-1, width), np.array(scores, np.float32), labels


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(an unknown photo scores higher than a known one), ties half (Mann-Whitney U / (n_k n_u))."""
    scores = np.concatenate([known, unknown])
    ranks = _ranks(scores)
    u = ranks[len(known):].sum() - len(unknown) * (len(unknown) + 1) / 2
    return float(u / (len(known) * len(unknown)))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2
            start = end
    return ranks


def auroc_with_interval(known: np.ndarray, unknown: np.ndarray, rng: np.random.Generator,
                        rounds: int = BOOTSTRAP) -> tuple[float, tuple[float, float]]:
    """The AUROC and its 95% percentile-bootstrap interval (photos resampled within each group)."""
    values = [auroc(known[rng.integers(0, len(known), len(known))], unknown[rng.integers(0, len(unknown),
                    len(unknown))]) for _ in range(rounds)]  # fmt: skip
    return auroc(known, unknown), (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975)))


def describe(report: UnknownReport) -> list[str]:
    low, high = report.auroc_interval
    b_low, b_high = report.baseline_interval
    lines = [f"photos       {report.known_kept.n} known ({report.known_dir}), {report.unknown_flagged.n} unknown "
             f"({report.unknown_dir})",
             f"AUROC        {report.auroc:.3f} (95% {low:.3f}-{high:.3f}) novelty score; top-probability baseline "
             f"{report.baseline_auroc:.3f} ({b_low:.3f}-{b_high:.3f})",
             f"FPR at 95%   {report.fpr_at_95.text()} of unknown photos kept when 95% of known ones are",
             f"threshold    {report.threshold:.3f}:",
             f"  known      kept {report.known_kept.text()}; kept with the right label "
             f"{report.known_kept_right.text()}",
             f"  unknown    flagged {report.unknown_flagged.text()}"]
    if report.unreadable:
        lines.append(f"warning      skipped {len(report.unreadable)} unreadable image(s): "
                     + ", ".join(str(u.path) for u in report.unreadable[:10]))
    return lines


def figure(report: UnknownReport, width: int = 720, height: int = 360, bins: int = 40) -> np.ndarray:
    """Histograms of the known (green) and unknown (red) scores, each as a share of its photos; the threshold
    as a vertical line."""
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, width - 20, 40, height - 40
    scores = np.concatenate([report.known_scores, report.unknown_scores, [report.threshold]])
    lo, hi = float(scores.min()), float(scores.max()) + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    shares = [np.histogram(s, edges)[0] / max(1, len(s)) for s in (report.known_scores, report.unknown_scores)]
    peak = max(float(s.max()) for s in shares) or 1.0
    step = (right - left) / bins
    for share, colour, shift in zip(shares, ((60, 160, 60), (60, 60, 200)), (0.0, 0.5)):
        for i, value in enumerate(share):
            x0 = int(left + (i + shift) * step)
            y0 = int(bottom - (bottom - top) * value / peak)
            cv2.rectangle(image, (x0, y0), (int(x0 + step / 2), bottom), colour, -1)
    x = int(left + (report.threshold - lo) / (hi - lo) * (right - left))
    cv2.line(image, (x, top - 10), (x, bottom), (0, 0, 0), 2)
    cv2.line(image, (left, bottom), (right, bottom), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, f"{lo:.2f}", (left - 10, bottom + 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"{hi:.2f}", (right - 40, bottom + 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "novelty score", (width // 2 - 50, bottom + 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"known ({report.known_kept.n})", (left, 25), font, 0.5, (60, 160, 60), 1, cv2.LINE_AA)
    cv2.putText(image, f"unknown ({report.unknown_flagged.n})", (left + 150, 25), font, 0.5, (60, 60, 200), 1,
                cv2.LINE_AA)
    text_x = x + 6 if x + 140 < right else x - 136  # right of the line, or left of it near the edge
    cv2.putText(image, f"threshold {report.threshold:.3f}", (text_x, top), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def write_report(report: UnknownReport, out_dir: str | Path) -> tuple[Path, Path]:
    """unknown.png (the two distributions) and unknown.json (the summary) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", figure(report))
    if not ok:
        raise EdgerecError(f"{out}: could not encode the figure")
    write_bytes_atomic(out / "unknown.png", png.tobytes())
    write_bytes_atomic(out / "unknown.json", (json.dumps(report.summary(), indent=2) + "\n").encode())
    return out / "unknown.png", out / "unknown.json"
