#!/usr/bin/env python3
"""Quantize one FP32 contract file several ways; print speed vs FP32 and top-1 agreement per image set.

Every variant is timed in the same process, interleaved with the FP32 file, so the ratios hold on a noisy
machine. Agreement is a property of the image set: each set is named in the table.

    python scripts/bench_quantization.py --fp32 build/efficientnet_lite0_imagenet_fp32.onnx \\
        --calibration /tmp/ocvdoc/usr/share/doc/opencv-doc/examples/data \\
        --set clear=tests/data/photos --set frames=/tmp/clips
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.bench import time_interleaved
from edge.model import Model
from training.calibration import load_images
from training.quantize import QuantOptions, quantize_model

BASE = QuantOptions()
VARIANTS = {
    "s8 weights (default op types)": BASE,
    "s8, reduce_range": replace(BASE, reduce_range=True),
    "u8 weights": replace(BASE, weights="u8"),
    "s8, stem+classifier float": replace(BASE, keep_float=("preprocess", "softmax", "stem", "classifier")),
    "u8, stem+classifier float": replace(BASE, weights="u8", keep_float=("preprocess", "softmax", "stem",
                                                                          "classifier")),
    "s8, stem float": replace(BASE, keep_float=("preprocess", "softmax", "stem")),
    "s8, reduce_range, stem+classifier float": replace(BASE, reduce_range=True, keep_float=(
        "preprocess", "softmax", "stem", "classifier")),
    "s8, QOperator": replace(BASE, format="qoperator"),
    "s8, QOperator, stem float": replace(BASE, format="qoperator", keep_float=("preprocess", "softmax", "stem")),
    "s8, stem+depthwise float": replace(BASE, keep_float=("preprocess", "softmax", "stem", "depthwise")),
    "s8, reduce_range, stem float": replace(BASE, reduce_range=True, keep_float=("preprocess", "softmax", "stem")),
    "s8, per-tensor": replace(BASE, per_channel=False),
    "s8, percentile 99.999": replace(BASE, method="percentile"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, nargs="+", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=PATH", help="image set for agreement")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset of: " + "; ".join(VARIANTS))
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    fp32 = Model.load(args.fp32, "cpu")
    calibration = load_images(args.calibration, fp32.geometry, min_side=160, min_contrast=25.0)
    sets = {name: load_images([path], fp32.geometry, video_every=25) for name, path in
            (item.split("=", 1) for item in args.set)}
    probs = {name: fp32.infer(images) for name, images in sets.items()}
    reference = {name: p.argmax(1) for name, p in probs.items()}
    confident = {name: p.max(1) >= 0.5 for name, p in probs.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [fp32]
        for i, name in enumerate(args.variants):
            path = Path(tmp) / f"v{i}.onnx"
            quantize_model(args.fp32, path, calibration, next(iter(sets.values())), VARIANTS[name])
            model = Model.load(path, "cpu")
            models.append(model)
            same = {s: model.infer(sets[s]).argmax(1) == reference[s] for s in sets}
            rows.append([name] + [f"{same[s].sum()}/{len(same[s])} ({same[s][confident[s]].sum()}/"
                                  f"{confident[s].sum()})" for s in sets])
        x = np.ascontiguousarray(sets[next(iter(sets))][:1])
        timings = time_interleaved([(lambda m=m: m.infer(x)) for m in models], args.runs)
        single = [Model.load(m.path, "cpu", threads=1) for m in models]
        cpu = time_interleaved([(lambda m=m: m.infer(x)) for m in single], args.runs, time.thread_time)
    base, cpu_base = timings[0].median_ms, cpu[0].median_ms
    print(f"calibration: {len(calibration)} images; sets: " + ", ".join(f"{k} ({len(v)})" for k, v in sets.items()))
    print("Agreement: images whose INT8 top-1 equals FP32's (in brackets: of those FP32 labels with p >= 0.5)")
    print(f"ms = median wall time at {models[0].threads} threads; cpu ms = CPU time of a one-thread session")
    print("| variant | ms | vs FP32 | cpu ms | vs FP32 | " + " | ".join(f"top-1 = FP32 on {s}" for s in sets) + " |")
    print("|---|---|---|---|---|" + "---|" * len(sets))
    print(f"| FP32 | {base:.2f} | 1.00x | {cpu_base:.2f} | 1.00x | " + " | ".join("—" for _ in sets) + " |")
    for row, timing, c in zip(rows, timings[1:], cpu[1:]):
        print(f"| {row[0]} | {timing.median_ms:.2f} | {base / timing.median_ms:.2f}x | {c.median_ms:.2f} | "
              f"{cpu_base / c.median_ms:.2f}x | " + " | ".join(row[1:]) + " |")


if __name__ == "__main__":
    main()
