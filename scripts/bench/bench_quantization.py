#!/usr/bin/env python3
"""Quantize one FP32 contract file several ways; print speed vs FP32 and top-1 agreement per image set.

Every variant is timed in the same process, interleaved with the FP32 file, so the ratios hold on a noisy
machine. Agreement is a property of the image set: each set is named in the table.

    python scripts/bench/bench_quantization.py --fp32 build/efficientnet_lite0_imagenet_fp32.onnx \\
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

from edge.app.bench import time_interleaved
from edge.core.model import Model
from training.calibration import load_images, media_files
from training.quantize import QuantOptions, quantize_model

PLAIN = QuantOptions(reduce_range=False, keep_float=("preprocess", "softmax"))  # onnxruntime's usual recipe
STEM = ("preprocess", "softmax", "stem")
VARIANTS = {
    "stem float (shipped)": QuantOptions(),
    "7-bit weights, stem float": QuantOptions(reduce_range=True),
    "plain: s8 per-channel QDQ, MinMax": PLAIN,
    "plain, QOperator": replace(PLAIN, format="qoperator"),
    "plain, per-tensor weights": replace(PLAIN, per_channel=False),
    "plain, percentile 99.999": replace(PLAIN, method="percentile"),
    "plain, 7-bit weights": replace(PLAIN, reduce_range=True),
    "stem + classifier float": replace(PLAIN, keep_float=(*STEM, "classifier")),
    "stem + depthwise float": replace(PLAIN, keep_float=(*STEM, "depthwise")),
    "stem float, QOperator": replace(PLAIN, keep_float=STEM, format="qoperator"),
    "u8 weights, stem float": replace(PLAIN, weights="u8", keep_float=STEM),
    "7-bit weights, stem float, percentile 99.999": QuantOptions(reduce_range=True, method="percentile"),
    "7-bit weights, stem float, entropy": QuantOptions(reduce_range=True, method="entropy"),
    "s8 activations, stem float": QuantOptions(activations="s8"),
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
    sets = {name: Path(path) for name, path in (item.split("=", 1) for item in args.set)}
    held_out = {p.name for p in media_files(list(sets.values()))}  # never calibrate on a checked image
    calibration = load_images([p for p in media_files(args.calibration) if p.name not in held_out], fp32.geometry,
                              min_side=160, min_contrast=25.0)
    sets = {name: load_images([path], fp32.geometry, video_every=5) for name, path in sets.items()}
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
