#!/usr/bin/env python3
"""Does `edgerec train --augment camera` make a model more robust? Clean top-1 and mean corruption accuracy
(mCA) with standard augmented views and with camera views, paired, with 95% intervals.

    python scripts/bench/bench_augment.py /tmp/photoset --folds 5 --views 2 --check-export \\
        --out build/bench-augment-photoset
    python scripts/bench/bench_augment.py /tmp/fmnist/train --val-dir /tmp/fmnist/val --img-size 160 --crop 1.0 \\
        --views 2 --robust-images 200 --seed 0 1 2 --out build/bench-augment-fmnist

What it runs, per split (k stratified folds of DATA, every image validated exactly once; or DATA against
--val-dir), is `edgerec train --finetune-blocks 0 --augmented-views V [--augment camera]` up to the export:
the frozen network's pooled features of every training image, its mirror and V augmented views
(`training.data.load_images` with `training.data.Augment`, the same code and seeds as `edgerec train`), then
stage 1 (`training.train.Run.fit`: the new head, AdamW, warm-up + cosine, early stopping on validation top-1)
once per kind of view, every kind from the same initial head. Head only, because the backbone is shared:
the features of a validation photo under a corruption are computed once and every head is scored on the
same features (the FP32 torch network; the exported FP32 file computes the same up to float rounding).
Corrupted photos go through `edge.tools.corruptions.corrupt(photo, name, severity, seed, index)` and
`edge.core.preprocess.fit`, as `edgerec evaluate --robustness` does (`index` is the photo's position in the
sorted list of all photos here, not in the validation folder, so the pixels differ from that command's but
are the same for every head).

Kinds of view: `no views` (the image and its mirror only, `--augmented-views 0`), `standard` (Augment(),
`--augment standard`), `camera` (half of the views also get one of the 11 corruptions, `--augment camera`),
and, for the held-out protocol, `camera-A` / `camera-B`, whose camera views draw only
from one of two families-disjoint groups of corruptions (HELD_OUT_GROUPS): each corruption is then scored
by the head that never trained on it ("camera, held out"), as ImageNet-C's protocol asks.

Intervals, all 95%, of paired differences (e.g. camera - standard: same split, same initial head, same
corrupted pixels): a percentile bootstrap over images (pooled over the splits, 10,000 resamples): the
uncertainty from which photos were sampled, given these trainings; with k > 1 folds, a Student t interval
over the k per-fold differences, which also sees the training's own variation, but with k - 1 degrees of
freedom (and folds that share most training images, so it is approximate); and for clean top-1, the
Clopper-Pearson bound of the share of images the two heads judge differently (a change can never exceed
it), which stays honest where few or no images differ and the bootstrap collapses to a point.
Features are cached in --cache (keyed by the images, geometry, seed and view kind): a rerun is seconds.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.core.metadata import DatasetInfo, ModelInfo
from edge.core.model import Model
from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError
from edge.tools.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from training.data import Augment, DataOptions, Sample, decode, load_image_folders, load_images, load_view, view_rng
from training.distributed import World
from training.export import export_onnx
from training.features import CachedActivations, CacheOptions, cache_activations
from training.models import CROP, create_model
from training.train import CAMERA_VIEWS, Prefix, Run, Stage, TrainOptions, calibration_samples

HELD_OUT_GROUPS = (
    ("gaussian_noise", "shot_noise", "low_light", "jpeg", "pixelate"),  # A: sensor noise and encoding
    ("over_exposure", "defocus_blur", "motion_blur", "fog", "rolling_shutter", "interlace"),  # B: light, optics, motion
)
KINDS = {
    "standard": Augment(),
    "camera": Augment(camera=CAMERA_VIEWS),
    "camera-A": Augment(camera=CAMERA_VIEWS, corruptions=HELD_OUT_GROUPS[0]),
    "camera-B": Augment(camera=CAMERA_VIEWS, corruptions=HELD_OUT_GROUPS[1]),
}
NO_VIEWS = "no views"  # the image and its mirror only: what `edgerec train` does by default (--augmented-views 0)
CHECK_IMAGES = 10  # --check-export: validation photos compared under every condition
CONDITIONS = [(name, severity) for name in CORRUPTIONS for severity in SEVERITIES]
RESAMPLES = 10_000
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class BenchOptions:
    data_dir: Path
    val_dir: Path | None = None
    folds: int = 5  # without val_dir
    img_size: int = 224
    crop: float = CROP
    views: int = 2
    robust_images: int | None = None  # per split, a seeded pick as even across classes as possible; None = all
    seed: int = 0
    cache: Path = Path("build/bench-augment-cache")
    arch: str = "efficientnet_lite0"
    check_export: bool = False  # export split 1's camera head as an FP32 model file and compare its predictions


@dataclass
class Split:
    train: np.ndarray  # indices into the sample list
    val: np.ndarray
    robust: np.ndarray  # the validation images scored under the corruptions


@dataclass
class Outcome:
    """Per kind: right or wrong on each validation image clean, and under each condition on each robust one."""

    clean: dict[str, list[np.ndarray]] = field(default_factory=dict)  # kind -> per split bool [val]
    corrupted: dict[str, list[np.ndarray]] = field(default_factory=dict)  # kind -> per split bool [cond, robust]
    epochs: dict[str, list[int]] = field(default_factory=dict)  # kind -> best epoch per split
    val_ids: list[np.ndarray] = field(default_factory=list)  # per split: the validation images (sample indices)
    robust_ids: list[np.ndarray] = field(default_factory=list)  # per split: the images scored under corruptions
    export_check: dict[str, int] | None = None  # the exported FP32 file against the torch head (--check-export)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--val-dir", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--crop", type=float, default=CROP)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--robust-images", type=int)
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="one run per seed (split, views, head, batch order, corrupted pixels); the runs are "
                             "pooled: the bootstrap resamples images with all their runs' predictions")
    parser.add_argument("--cache", type=Path, default=Path("build/bench-augment-cache"))
    parser.add_argument("--out", type=Path, help="folder for bench.json")
    parser.add_argument("--check-export", action="store_true",
                        help="export split 1's camera head as an FP32 model file (training.export) and count the "
                             f"predictions on which it differs from the torch head: every clean validation image, "
                             f"and the first {CHECK_IMAGES} validation images under every corruption")
    args = parser.parse_args(argv)
    options = BenchOptions(args.data_dir, args.val_dir, args.folds, args.img_size, args.crop, args.views,
                           args.robust_images, args.seed[0], args.cache, check_export=args.check_export)
    wall, cpu = time.perf_counter(), _cpu()
    try:
        result = bench(options, tuple(args.seed))
    except EdgerecError as exc:  # a missing folder, too few images: one line, as edgerec says it
        print(f"bench_augment: error: {exc}", file=sys.stderr)
        return 2
    result["seconds"] = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(_cpu() - cpu, 1)}
    for line in describe(result):
        print(line)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def bench(o: BenchOptions, seeds: tuple[int, ...]) -> dict:
    """Every seed's run, pooled: one row per split and seed in `Outcome`."""
    outcome = Outcome()
    for seed in seeds:
        samples, classes = run(replace(o, seed=seed), outcome)
    return summarise(o, seeds, outcome, len(samples), classes)


def run(o: BenchOptions, outcome: Outcome) -> tuple[list[Sample], tuple[str, ...]]:
    """One seed: features (cached), then every kind's head on every split, scored into `outcome`."""
    samples, splits, classes = _splits(o)
    geometry = Geometry(o.img_size, o.img_size, o.crop)
    torch.manual_seed(o.seed)  # as edgerec train: the new head's initial weights come from the seed
    net = create_model(o.arch, len(classes), pretrained=True)
    prefix = Prefix(net, None)
    head0 = nn.Sequential(net.dropout, net.classifier)
    key = _key(o, samples)
    log(f"{len(samples)} images, {len(classes)} classes, {len(splits)} split(s); features cached in {o.cache}")
    trained = np.unique(np.concatenate([s.train for s in splits]))
    validated = np.unique(np.concatenate([s.val for s in splits]))
    robust = np.unique(np.concatenate([s.robust for s in splits]))
    fitted = _cached(o, f"{key}-fitted", lambda: _features(prefix, [samples[i] for i in trained], geometry, None,
                                                           o, mirror=True), len(trained))
    fitted_val = _cached(o, f"{key}-val", lambda: _features(prefix, [samples[i] for i in validated], geometry, None,
                                                            o, mirror=False), len(validated))
    views = {kind: [_cached(o, f"{key}-{kind}-v{v}", lambda kind=kind, v=v: _view_features(
        prefix, samples, trained, geometry, KINDS[kind], o.seed, v), len(trained)) for v in range(1, o.views + 1)]
        for kind in KINDS}
    corrupted = _cached(o, f"{key}-corrupted", lambda: _corrupted_features(prefix, samples, robust, geometry, o),
                        len(robust))  # [images, conditions, features]
    labels = np.array([s.label for s in samples])
    for k, split in enumerate(splits):
        outcome.val_ids.append(split.val)
        outcome.robust_ids.append(split.robust)
        rows_t = np.searchsorted(trained, split.train)
        train_rows = [fitted[0][rows_t], fitted[1][rows_t]]
        val_x = fitted_val[0][np.searchsorted(validated, split.val)]
        robust_x = corrupted[np.searchsorted(robust, split.robust)]
        for kind in (NO_VIEWS, *KINDS):
            rows = train_rows + [v[0][rows_t] for v in views.get(kind, [])]
            head, best_epoch = _fit_head(o, head0, rows, labels[split.train], val_x, labels[split.val])
            outcome.clean.setdefault(kind, []).append(_predict(head, val_x) == labels[split.val])
            flat = robust_x.reshape(-1, robust_x.shape[-1])
            right = _predict(head, flat).reshape(len(split.robust), len(CONDITIONS)) == labels[split.robust][:, None]
            outcome.corrupted.setdefault(kind, []).append(right.T)
            outcome.epochs.setdefault(kind, []).append(best_epoch)
            if o.check_export and outcome.export_check is None and kind == "camera":
                outcome.export_check = _check_export(net, head, classes, samples, split, geometry, o,
                                                     outcome.clean[kind][-1], right)
        log(f"seed {o.seed}, split {k + 1}/{len(splits)}: clean " + ", ".join(
            f"{kind} {outcome.clean[kind][-1].mean():.1%}" for kind in outcome.clean) + "; mCA " + ", ".join(
            f"{kind} {outcome.corrupted[kind][-1].mean():.1%}" for kind in outcome.clean))
    return samples, classes


# -- data and splits -------------------------------------------------------------------------------------------

def _splits(o: BenchOptions) -> tuple[list[Sample], list[Split], tuple[str, ...]]:
    """All samples and the splits as index arrays: with a validation folder, the training samples then the
    validation ones; else every sample sorted by relpath, cut into k stratified folds."""
    data = load_image_folders(DataOptions(o.data_dir, o.val_dir, seed=o.seed))
    if o.val_dir is not None:
        samples = list(data.train) + list(data.val)
        val = np.arange(len(data.train), len(samples))
        return samples, [Split(np.arange(len(data.train)), val, _robust(samples, val, o))], data.classes
    samples = sorted(data.train + data.val, key=lambda s: s.relpath)
    fold = _folds(samples, o.folds, o.seed)
    index = np.arange(len(samples))
    splits = [Split(index[fold != k], index[fold == k], _robust(samples, index[fold == k], o)) for k in range(o.folds)]
    return samples, splits, data.classes


def _folds(samples: list[Sample], k: int, seed: int) -> np.ndarray:
    """Fold of each sample: within each class, in the order of sha256(seed, relpath) (as the stratified split
    orders them), dealt round-robin, so every fold holds a fifth of each class."""
    fold = np.empty(len(samples), int)
    for label in {s.label for s in samples}:
        members = sorted((i for i, s in enumerate(samples) if s.label == label),
                         key=lambda i: hashlib.sha256(f"{seed}\0{samples[i].relpath}".encode()).digest())
        fold[members] = np.arange(len(members)) % k
    return fold


def _robust(samples: list[Sample], val: np.ndarray, o: BenchOptions) -> np.ndarray:
    if o.robust_images is None or o.robust_images >= len(val):
        return val
    chosen = set(calibration_samples(tuple(samples[i] for i in val), o.robust_images, o.seed))
    return np.array([i for i in val if samples[i] in chosen])


# -- features ------------------------------------------------------------------------------------------------

def _features(prefix: nn.Module, samples: list[Sample], geometry: Geometry, augment: Augment | None,
              o: BenchOptions, mirror: bool) -> np.ndarray:
    images = load_images(samples, geometry, augment, o.seed, workers=2)
    cached = cache_activations(prefix, images, [s.label for s in samples], CacheOptions(mirror=mirror))
    return cached.activations.float().numpy().reshape(cached.views, len(samples), -1)


def _view_features(prefix: nn.Module, samples: list[Sample], trained: np.ndarray, geometry: Geometry,
                   augment: Augment, seed: int, view: int) -> np.ndarray:
    """View `view` of every training image: `load_images` with the image's position in the whole sample list
    as its index, so an image's views are the same in every split it trains in."""
    picked = [samples[i] for i in trained]
    images = np.empty((len(picked), geometry.height, geometry.width, 3), np.uint8)

    def load(j: int) -> None:
        images[j] = load_view(picked[j], geometry, augment, view_rng(seed, view, int(trained[j])))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(load, range(len(picked))))
    cached = cache_activations(prefix, images, [s.label for s in picked], CacheOptions(mirror=False))
    return cached.activations.float().numpy()[None]


def _corrupted_features(prefix: nn.Module, samples: list[Sample], robust: np.ndarray, geometry: Geometry,
                        o: BenchOptions) -> np.ndarray:
    """[images, conditions, features]: each robust photo decoded once, under every corruption and severity,
    then fitted, as `edgerec evaluate --robustness` does."""
    out = None
    chunk = max(1, 2048 // len(CONDITIONS))
    for start in range(0, len(robust), chunk):
        part = robust[start:start + chunk]
        images = np.empty((len(part), len(CONDITIONS), geometry.height, geometry.width, 3), np.uint8)

        def load(j: int, part: np.ndarray = part, images: np.ndarray = images) -> None:
            photo = decode(samples[part[j]].path)
            for c, (name, severity) in enumerate(CONDITIONS):
                fit(corrupt(photo, name, severity, o.seed, int(part[j])), geometry, out=images[j, c])

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(load, range(len(part))))
        flat = images.reshape(-1, *images.shape[2:])
        x = cache_activations(prefix, flat, [0] * len(flat), CacheOptions(mirror=False)).activations.float().numpy()
        if out is None:
            out = np.empty((len(robust), len(CONDITIONS), x.shape[-1]), np.float32)
        out[start:start + len(part)] = x.reshape(len(part), len(CONDITIONS), -1)
        log(f"corrupted features: {start + len(part)}/{len(robust)} images, cpu {_cpu():.0f} s")
    return out


def _key(o: BenchOptions, samples: list[Sample]) -> str:
    digest = hashlib.sha256(f"{o.arch} {o.img_size} {o.crop} {o.seed}\n".encode())
    for s in samples:
        digest.update(f"{s.relpath}\t{s.sha256}\n".encode())
    return digest.hexdigest()[:16]


def _cached(o: BenchOptions, name: str, compute: Callable[[], np.ndarray], n: int) -> np.ndarray:
    path = o.cache / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    start, cpu = time.perf_counter(), _cpu()
    array = compute()
    o.cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
    log(f"{name}: {n} images in {time.perf_counter() - start:.0f} s wall, {_cpu() - cpu:.0f} s cpu")
    return array


# -- stage 1 ---------------------------------------------------------------------------------------------------

class _NoCheckpoint:
    def save(self, net: nn.Module, state: dict) -> None:
        pass


def _fit_head(o: BenchOptions, head0: nn.Module, rows: list[np.ndarray], labels: np.ndarray, val_x: np.ndarray,
              val_labels: np.ndarray) -> tuple[nn.Module, int]:
    """Stage 1 of `edgerec train --finetune-blocks 0`, from the same initial head (dropout + linear) every time."""
    head = copy.deepcopy(head0)
    x = torch.from_numpy(np.concatenate(rows))
    train = CachedActivations(x, torch.from_numpy(np.tile(labels, len(rows))), len(rows))
    val = CachedActivations(torch.from_numpy(val_x), torch.from_numpy(val_labels), 1)
    options = TrainOptions(o.data_dir, o.cache, finetune_blocks=0, seed=o.seed)
    run = Run(options, World())
    state = {"stage": "head", "epoch": 0, "planned_epochs": None, "best_score": None, "best_stage": None,
             "stage_best": None, "bad_epochs": 0, "best_model": None, "optimizer": None, "history": [],
             "stages": [], "stage_seconds": 0.0}
    run.fit(Stage("head", head, train, val, options.head_epochs, options.lr), head, state, _NoCheckpoint())
    head.load_state_dict(state["best_model"])
    return head.eval(), state["stages"][0]["best_epoch"]


def _check_export(net: nn.Module, head: nn.Module, classes: tuple[str, ...], samples: list[Sample], split: Split,
                  geometry: Geometry, o: BenchOptions, head_clean: np.ndarray, head_corrupted: np.ndarray
                  ) -> dict[str, int]:
    """Export the frozen network with `head` as an FP32 model file (training.export, checked against torch) and
    count where its top-1 (ONNX Runtime, edge.core.model.Model) is right when the head's is not, or the reverse: on
    the split's clean validation photos, and on its first CHECK_IMAGES robust photos under every condition,
    corrupted and fitted here again from the photo."""
    net = copy.deepcopy(net).eval()
    net.classifier.load_state_dict(head[1].state_dict())
    images = load_images([samples[i] for i in split.val], geometry, workers=2)
    info = ModelInfo(list(classes), (o.img_size, o.img_size), o.crop, o.arch, "fp32", DatasetInfo("bench"))
    path = o.cache / "check-export-fp32.onnx"
    export_onnx(net, info, path, images[:16])
    model = Model.load(path, "cpu")
    labels = np.array([s.label for s in samples])
    clean = model.infer(images).argmax(1) == labels[split.val]
    picked = split.robust[:CHECK_IMAGES]
    corrupted = np.empty((len(picked), len(CONDITIONS)), bool)
    for j, index in enumerate(picked):
        photo = decode(samples[index].path)
        batch = np.stack([fit(corrupt(photo, name, severity, o.seed, int(index)), geometry)
                          for name, severity in CONDITIONS])
        corrupted[j] = model.infer(batch).argmax(1) == labels[index]
    return {"clean": len(clean), "clean_differ": int((clean != head_clean).sum()), "corrupted": corrupted.size,
            "corrupted_differ": int((corrupted != head_corrupted[:len(picked)]).sum())}


def _predict(head: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x)).argmax(1).numpy()


# -- statistics --------------------------------------------------------------------------------------------------

def summarise(o: BenchOptions, seeds: tuple[int, ...], outcome: Outcome, n_images: int,
              classes: tuple[str, ...]) -> dict:
    clean = {kind: np.concatenate(v) for kind, v in outcome.clean.items()}
    per_split = {kind: v for kind, v in outcome.corrupted.items()}
    held = [_held_out(outcome.corrupted["camera-A"][k], outcome.corrupted["camera-B"][k])
            for k in range(len(per_split["standard"]))]
    per_split["camera, held out"] = held
    corr = {kind: np.concatenate(v, axis=1) for kind, v in per_split.items()}  # [cond, robust images]
    rows = {}
    for kind in (NO_VIEWS, "standard", "camera", "camera, held out"):
        rows[kind] = {"clean": float(clean[kind].mean()) if kind in clean else None,
                      "mca": float(corr[kind].mean()),
                      "per_corruption": {name: float(corr[kind][i * 5:(i + 1) * 5].mean())
                                         for i, name in enumerate(CORRUPTIONS)},
                      "per_split_mca": [float(v.mean()) for v in per_split[kind]]}
    for kind in ("camera-A", "camera-B"):
        rows.setdefault(kind, {})["clean"] = float(clean[kind].mean())
    ids = (outcome.val_ids, outcome.robust_ids)
    comparisons = {
        "camera - standard": _compare(outcome.clean["camera"], outcome.clean["standard"], per_split["camera"],
                                      per_split["standard"], ids),
        "camera held out - standard": _compare(None, None, per_split["camera, held out"], per_split["standard"], ids),
        "camera - no views": _compare(outcome.clean["camera"], outcome.clean[NO_VIEWS], per_split["camera"],
                                      per_split[NO_VIEWS], ids),
        "standard - no views": _compare(outcome.clean["standard"], outcome.clean[NO_VIEWS], per_split["standard"],
                                        per_split[NO_VIEWS], ids),
    }
    return {"options": {**{k: str(v) for k, v in vars(o).items()}, "seed": list(seeds)}, "images": n_images,
            "classes": list(classes),
            "validated": int(len(clean["standard"])), "robust": int(corr["standard"].shape[1]),
            "conditions": len(CONDITIONS), "held_out_groups": HELD_OUT_GROUPS, "rows": rows,
            "best_epochs": outcome.epochs, "comparisons": comparisons, "export_check": outcome.export_check}


def _held_out(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each corruption's rows from the head that did not train on it (A's head on group B and vice versa)."""
    names = [name for name, _ in CONDITIONS]
    in_a = np.array([name in HELD_OUT_GROUPS[0] for name in names])
    return np.where(in_a[:, None], b, a)


def _compare(clean_a: list[np.ndarray] | None, clean_b: list[np.ndarray] | None, corr_a: list[np.ndarray],
             corr_b: list[np.ndarray], ids: tuple[list[np.ndarray], list[np.ndarray]]) -> dict:
    out = {"mca": _paired(corr_a, corr_b, lambda x: x.mean(axis=0), ids[1])}
    if clean_a is not None:
        out["clean"] = _paired(clean_a, clean_b, lambda x: x.astype(float), ids[0])
        a, b = np.concatenate(clean_a), np.concatenate(clean_b)
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        bound = discordance_bound(only_a + only_b, len(a))
        out["clean"].update(right_only=[only_a, only_b], bound95=[-bound, bound])
    return out


def discordance_bound(discordant: int, n: int, alpha: float = 0.05) -> float:
    """Clopper-Pearson upper limit (two-sided 1 - alpha) of the share of images the two heads judge
    differently. A change in top-1 can never exceed that share, so [-bound, +bound] is a (conservative) 95%
    interval for it that stays honest when no image, or few, differ (where a bootstrap collapses to a point)."""
    if discordant >= n:
        return 1.0
    low, high = discordant / n, 1.0
    for _ in range(60):  # bisection: the p at which P(X <= discordant | n, p) = alpha / 2
        mid = (low + high) / 2
        low, high = (mid, high) if _binomial_cdf(discordant, n, mid) > alpha / 2 else (low, mid)
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    log = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
           + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(log)
    return math.exp(top) * sum(math.exp(x - top) for x in log)


def _paired(a: list[np.ndarray], b: list[np.ndarray], per_image: Callable[[np.ndarray], np.ndarray],
            ids: list[np.ndarray]) -> dict:
    """Mean difference a - b over every (run, image), with a bootstrap interval that resamples images (each
    drawn image brings its differences from every run that scored it: a cluster bootstrap, since one image's
    runs are not independent) and a t interval over the runs (splits x seeds)."""
    d_splits = [per_image(x) - per_image(y) for x, y in zip(a, b)]
    d = np.concatenate(d_splits)
    image = np.unique(np.concatenate(ids), return_inverse=True)[1]  # each row's image, 0 .. n_images - 1
    n = int(image.max()) + 1
    rng = np.random.default_rng(0)
    means = np.empty(RESAMPLES)
    for r in range(RESAMPLES):
        weight = np.bincount(rng.integers(0, n, n), minlength=n)[image]
        means[r] = (weight * d).sum() / weight.sum()
    out = {"mean": float(d.mean()), "bootstrap95": [float(np.percentile(means, 2.5)),
                                                    float(np.percentile(means, 97.5))],
           "per_split": [float(x.mean()) for x in d_splits]}
    k = len(d_splits)
    if k > 1:
        m = np.array(out["per_split"])
        half = t975(k - 1) * m.std(ddof=1) / math.sqrt(k)
        out["t95"] = [float(m.mean() - half), float(m.mean() + half)]
    return out


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t: tabulated to 9 degrees of freedom, then the Cornish-Fisher
    expansion around the normal's 1.96 (within 0.005 of the table from 9 on)."""
    if df in T975:
        return T975[df]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def describe(r: dict) -> list[str]:
    pts = lambda x: f"{100 * x:+.1f}"  # noqa: E731
    lines = [f"{r['images']} images, {len(r['classes'])} classes; {r['validated']} validated clean, {r['robust']} "
             f"under {r['conditions']} conditions; views {r['options']['views']}; best epochs {r['best_epochs']}",
             f"{'training views':<22} {'clean':>7} {'mCA':>7}  mCA per run (seed x split)"]
    for kind in (NO_VIEWS, "standard", "camera", "camera, held out"):
        row = r["rows"][kind]
        clean = "" if kind == "camera, held out" else f"{row['clean']:7.1%}"
        lines.append(f"{kind:<22} {clean:>7} {row['mca']:7.1%}  " + " ".join(f"{x:.1%}" for x in row["per_split_mca"]))
    kinds = (NO_VIEWS, "standard", "camera", "camera, held out")
    lines.append("per corruption (no views / standard / camera / camera held out): " + ", ".join(
        f"{n} " + "/".join(f"{100 * r['rows'][kind]['per_corruption'][n]:.1f}" for kind in kinds) for n in CORRUPTIONS))
    for name, comparison in r["comparisons"].items():
        for what, c in comparison.items():
            t = f"; t over runs {pts(c['t95'][0])} to {pts(c['t95'][1])}" if "t95" in c else ""
            bound = (f"; right only with the first / second {c['right_only'][0]} / {c['right_only'][1]} "
                     f"images, so within +-{100 * c['bound95'][1]:.1f} (Clopper-Pearson)") if "bound95" in c else ""
            lines.append(f"{name}, {what}: {pts(c['mean'])} points (95% bootstrap over images "
                         f"{pts(c['bootstrap95'][0])} to {pts(c['bootstrap95'][1])}{t}{bound}); per run "
                         + " ".join(pts(x) for x in c["per_split"]))
    check = r["export_check"]
    if check:
        lines.append(f"exported FP32 file vs torch head (split 1, camera): top-1 right/wrong differs on "
                     f"{check['clean_differ']} of {check['clean']} clean and {check['corrupted_differ']} of "
                     f"{check['corrupted']} corrupted predictions")
    lines.append(f"time: {r.get('seconds')}")
    return lines


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
