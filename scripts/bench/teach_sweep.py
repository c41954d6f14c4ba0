#!/usr/bin/env python3
"""Which views and L2 weight should `edgerec teach` use? Validation top-1 for each choice, on several splits.

The base model's features of every photo and of each view (flip, two corner crops) are computed once;
then, for each seed (the same held-out photos as `edgerec teach --seed` and `edgerec train --seed`), each
set of views and each L2 weight, the softmax regression is fitted on the training photos and scored on the
held-out ones (the head applied in NumPy to the held-out photos' features; `edgerec teach` itself scores
the written file, which gives the same labels up to float rounding). With --val-dir the seeds do not
matter and one row per choice is printed.

    python scripts/bench/teach_sweep.py /tmp/photoset --seeds 0 1 2 3 4 --l2 0.001 0.01 0.1 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edge.core.model import Model
from edge.learn.data import VIEWS, File, decode, find_files, fitted_views, stratified_split
from edge.learn.softmax_regression import FitOptions, fit_softmax_regression


def features_of(model: Model, files: list[File], views: list[str]) -> np.ndarray:
    """float32 [photos, 1 + views, D]; every photo must be readable."""
    rows = []
    for file in files:
        _, image = decode(file)
        rows.append(model.features(np.stack(list(fitted_views(image, model.geometry, views))))[1])
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--val-dir", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--l2", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--views", nargs="*", default=list(VIEWS), choices=list(VIEWS),
                        help="views to compute; the sets tried are: none, flip, all of these")
    parser.add_argument("--base", type=Path, default=None)
    args = parser.parse_args()
    model = Model.load(args.base, "cpu")
    folders = find_files(args.data, args.val_dir, 0.2, 0)
    train_files = sorted([*folders.train, *([] if args.val_dir else folders.val)], key=lambda f: f.relpath)
    start = time.process_time()
    train = features_of(model, train_files, args.views)
    val = features_of(model, folders.val, []) if args.val_dir else None
    print(f"features of {len(train_files)} photos x {1 + len(args.views)} views"
          + (f" and {len(folders.val)} validation photos" if args.val_dir else "")
          + f": {time.process_time() - start:.0f} s CPU")
    labels = np.array([f.label for f in train_files])
    sets = {"none": [0], "+".join(args.views): list(range(1 + len(args.views)))}
    if "flip" in args.views and len(args.views) > 1:
        sets["flip"] = [0, 1 + args.views.index("flip")]
    for l2 in args.l2:
        for name, columns in sets.items():
            scores = []
            for seed in [0] if args.val_dir else args.seeds:
                if args.val_dir:
                    x, y, vx, vy = train, labels, val[:, 0], np.array([f.label for f in folders.val])
                else:
                    _, held = stratified_split(train_files, 0.2, seed)
                    out = np.isin([f.relpath for f in train_files], [f.relpath for f in held])
                    x, y, vx, vy = train[~out], labels[~out], train[out][:, 0], labels[out]
                head = fit_softmax_regression(x[:, columns].reshape(-1, x.shape[-1]), np.repeat(y, len(columns)),
                                              len(folders.classes), FitOptions(l2=l2))
                scores.append(f"{int(((vx @ head.weight + head.bias).argmax(1) == vy).sum())}/{len(vy)}")
            print(f"l2 {l2:<6g} views {name:<22} {' '.join(scores)}", flush=True)


if __name__ == "__main__":
    main()
