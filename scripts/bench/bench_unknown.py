#!/usr/bin/env python3
"""Does a taught model know what it was not taught? The shipped unknown detection (edge.core.novelty), each
class held out in turn and each class alone, against the top-probability baseline (docs/unknown.md).

    python scripts/bench/bench_unknown.py /tmp/photoset --seeds 0 1 2 3 4
    python scripts/bench/bench_unknown.py /tmp/fmnist/train --val-dir /tmp/fmnist/val

Features of every photo are computed once with the embedded INT8 model, as `edgerec teach` computes them
(decode, fit, Model.features); then, for each seed (teach's stratified 20% validation split with that seed;
the --val-dir photos when given):

  held out   for each class c: the head fitted as teach fits it (edge.learn.softmax_regression) and the novelty
             entry built as teach builds it (build_novelty) on the other classes' training photos; flagged =
             share of ALL of c's photos scored unknown; kept-right = share of the known classes' validation
             photos not unknown and given their right label.
  one class  teach on c's training photos alone: flagged = share of the other classes' photos unknown, kept =
             share of c's validation photos not unknown.

AUROC and FPR95 (unknown photos kept when 95% of known validation photos are) are threshold-free: the novelty
score, and 1 - top probability of the same head as the baseline (held out only: a one-label head has none).
Means over classes, then over seeds. The bar of issue 20: held out >= 60% flagged with >= 93% kept right;
one class >= 85% flagged with >= 90% kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.core.model import Model  # noqa: E402
from edge.core.novelty import (  # noqa: E402
    DEFAULT_K,
    DEFAULT_TARGET_KEPT,
    NoveltyInfo,
    NoveltyScorer,
    build_novelty,
    nudged,
    nudged_choice,
)
from edge.core.preprocess import fit  # noqa: E402
from edge.errors import EdgerecError  # noqa: E402
from edge.learn.data import decode, find_files, stratified_split  # noqa: E402
from edge.learn.softmax_regression import FitOptions, fit_softmax_regression  # noqa: E402
from edge.tools.unknown import auroc  # noqa: E402


@dataclass(frozen=True)
class Photos:
    features: np.ndarray  # [N, D] of the embedded INT8 model
    nudged: np.ndarray  # [N, D]: each photo's nudged view (edge.core.novelty.nudged), for the threshold
    labels: np.ndarray  # [N]
    classes: tuple[str, ...]
    files: list  # edge.learn.data.File of each row, for the splits
    val_dir: np.ndarray | None  # [N] True for the --val-dir photos


def load(data: Path, val_dir: Path | None) -> Photos:
    model = Model.load(None, "cpu", 1)
    folders = find_files(data, val_dir, 0.2, 0)
    files = list(folders.train) + list(folders.val) if val_dir else sorted(
        [*folders.train, *folders.val], key=lambda f: f.relpath)
    rows, moved, kept = [], [], []
    for start in range(0, len(files), 16):
        chunk = [(f, decode(f)[1]) for f in files[start:start + 16]]
        chunk = [(f, image) for f, image in chunk if image is not None]
        if chunk:
            batch = np.stack([fit(image, model.geometry) for _, image in chunk])
            rows.append(model.features(batch)[1])
            batch = np.stack([fit(nudged(image, len(kept) + i), model.geometry) for i, (_, image) in enumerate(chunk)])
            moved.append(model.features(batch)[1])
            kept += [f for f, _ in chunk]
    in_val = np.array([i >= len(folders.train) for i in range(len(files))])[:len(kept)] if val_dir else None
    return Photos(np.concatenate(rows), np.concatenate(moved), np.array([f.label for f in kept]), folders.classes,
                  kept, in_val)


def novelty_of(photos: Photos, train: np.ndarray, labels: np.ndarray, kept: float, k: int) -> NoveltyInfo:
    """build_novelty as teach calls it: the photos, and the nudged views of `nudged_choice`'s few of them."""
    chosen = nudged_choice(int(np.sum(train)))
    return build_novelty(photos.features[train], labels, k, kept, nudged=photos.nudged[train][chosen],
                         nudged_photos=chosen)


def split(photos: Photos, seed: int) -> np.ndarray:
    """True for teach's validation photos with this seed (the --val-dir photos when given)."""
    if photos.val_dir is not None:
        return photos.val_dir
    _, val = stratified_split(photos.files, 0.2, seed)
    chosen = {f.relpath for f in val}
    return np.array([f.relpath in chosen for f in photos.files])


def fpr_at_95(known: np.ndarray, unknown: np.ndarray) -> float:
    return float(np.mean(unknown <= np.quantile(known, 0.95)))


def held_out(photos: Photos, val: np.ndarray, c: int, kept: float, k: int) -> dict[str, float]:
    known = photos.labels != c
    train, test = known & ~val, known & val
    classes = [i for i in range(len(photos.classes)) if i != c]
    remap = {old: new for new, old in enumerate(classes)}
    y = np.array([remap[v] for v in photos.labels[train]])
    head = fit_softmax_regression(photos.features[train], y, len(classes), FitOptions())
    info = novelty_of(photos, train, y, kept, k)
    scorer = NoveltyScorer(info)
    s_known, s_unknown = scorer.score(photos.features[test]), scorer.score(photos.features[~known])
    logits = photos.features @ head.weight + head.bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    right = probs[test].argmax(1) == np.array([remap[v] for v in photos.labels[test]])
    top_known, top_unknown = 1 - probs[test].max(1), 1 - probs[~known].max(1)
    return {"flagged": float(np.mean(s_unknown > info.threshold)),
            "kept_right": float(np.mean((s_known <= info.threshold) & right)),
            "kept": float(np.mean(s_known <= info.threshold)), "auroc": auroc(s_known, s_unknown),
            "fpr95": fpr_at_95(s_known, s_unknown), "base_auroc": auroc(top_known, top_unknown),
            "base_fpr95": fpr_at_95(top_known, top_unknown)}


def one_class(photos: Photos, val: np.ndarray, c: int, kept: float, k: int) -> dict[str, float]:
    mine = photos.labels == c
    info = novelty_of(photos, mine & ~val, np.zeros(int(np.sum(mine & ~val)), np.int64), kept, k)
    scorer = NoveltyScorer(info)
    s_own, s_other = scorer.score(photos.features[mine & val]), scorer.score(photos.features[~mine])
    return {"flagged": float(np.mean(s_other > info.threshold)), "kept": float(np.mean(s_own <= info.threshold)),
            "auroc": auroc(s_own, s_other), "fpr95": fpr_at_95(s_own, s_other)}


def table(name: str, runs: dict[str, list[dict[str, float]]], keys: tuple[str, ...]) -> list[str]:
    lines = [f"{name}: mean over seeds, per class", f"{'class':16s} " + " ".join(f"{k:>10s}" for k in keys)]
    means = {k: [] for k in keys}
    for label, rows in runs.items():
        values = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        for k in keys:
            means[k].append(values[k])
        lines.append(f"{label:16s} " + " ".join(f"{100 * values[k]:9.1f}%" if "auroc" not in k else
                                                 f"{values[k]:10.3f}" for k in keys))
    lines.append(f"{'mean':16s} " + " ".join(f"{100 * np.mean(means[k]):9.1f}%" if "auroc" not in k else
                                             f"{np.mean(means[k]):10.3f}" for k in keys))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="one subfolder of images per class")
    parser.add_argument("--val-dir", type=Path, default=None, help="validation photos (else teach's 20%% split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="teach's split seeds (default: 0)")
    parser.add_argument("--kept", type=float, default=DEFAULT_TARGET_KEPT, help="the threshold's target")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="nearest references averaged")
    args = parser.parse_args()
    try:
        began = time.perf_counter()
        photos = load(args.data, args.val_dir)
        seeds = [0] if args.val_dir else args.seeds
        heldout = {name: [] for name in photos.classes}
        alone = {name: [] for name in photos.classes}
        for seed in seeds:
            val = split(photos, seed)
            for c, name in enumerate(photos.classes):
                heldout[name].append(held_out(photos, val, c, args.kept, args.k))
                alone[name].append(one_class(photos, val, c, args.kept, args.k))
    except EdgerecError as error:
        print(f"bench_unknown: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.data}: {len(photos.labels)} photos, {len(photos.classes)} classes, seeds {seeds}, "
          f"target kept {args.kept}, k {args.k}; {time.perf_counter() - began:.0f} s")
    print("\n".join(table("held out in turn (flagged: the held-out class; kept: the known validation photos)",
                          heldout, ("flagged", "kept_right", "kept", "auroc", "base_auroc", "fpr95",
                                    "base_fpr95"))))
    print("\n".join(table("one class (flagged: every other class; kept: the class's validation photos)",
                          alone, ("flagged", "kept", "auroc", "fpr95"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
