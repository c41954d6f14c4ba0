#!/usr/bin/env python3
"""How closely INT8 files follow their FP32 source: top-1 on labelled photos, top-1 agreement on unlabelled ones.

Each INT8 file is run three ways: *fused*, this CPU's ONNX Runtime kernels (default graph optimisation; on
x86 without VNNI their u8*s8 sums saturate); *int32*, the same kernels summing in 32 bits
(training.gate.exact_session, what the training gate measures); and *exact*, graph optimisations off, so
every QDQ pair runs as written in float. On VNNI x86 and ARM, fused is int32. Agreement comes with a
Clopper-Pearson 95% interval, and for the fused kernels also by how far FP32's top-1 led its second
(MARGIN_BANDS): a near tie flips under any small change, a clear lead should not.

    python scripts/bench/int8_fidelity.py --fp32 build/qat/efficientnet_lite0_imagenet_fp32.onnx \\
        --labelled /tmp/imagenet-photos --photos /tmp/distill-photos/eval \\
        shipped=edge/assets/efficientnet_lite0_imagenet_int8.onnx qat=build/qat/efficientnet_lite0_imagenet_int8.onnx
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge.core.devices import cpu_description
from edge.core.metadata import INPUT_NAME, OUTPUT_NAME
from edge.core.model import Model, inference_session
from edge.errors import EdgerecError
from edge.tools.evaluate import write_png
from edge.tools.figures import render_heatmap
from training.calibration import load_images, media_files
from training.gate import exact_session

MODES = ("fused", "int32", "exact")
MARGIN_BANDS = (0.0, 0.05, 0.1, 0.2)
"""Lower edges of the bands of FP32's margin (top-1 minus top-2 probability) agreement is also counted in."""


SPEED_RUNS = 30  # one-image runs for the CPU-time column


def session(path: Path, mode: str = "fused") -> ort.InferenceSession:
    """One thread (ONNX Runtime then runs in the calling thread: its CPU time is steady on a shared machine)."""
    if mode == "int32":
        return exact_session(path, threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    if mode == "exact":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return inference_session(path, options)


def probabilities(path: Path, images: np.ndarray, mode: str = "fused") -> np.ndarray:
    run = session(path, mode).run
    return np.concatenate([run([OUTPUT_NAME], {INPUT_NAME: images[i:i + 32]})[0] for i in range(0, len(images), 32)])


def cpu_ms(path: Path, image: np.ndarray, mode: str = "fused") -> float:
    """Median CPU time of one image, one thread, after 3 warm-up runs."""
    run, feed = session(path, mode).run, {INPUT_NAME: image[None]}
    times = []
    for _ in range(3 + SPEED_RUNS):
        start = time.thread_time()
        run([OUTPUT_NAME], feed)
        times.append(time.thread_time() - start)
    return 1000 * float(np.median(times[3:]))


def nudged(images: np.ndarray) -> dict[str, np.ndarray]:
    """Changes to the fitted photos no one would call another photo: what FP32's own top-1 does under them
    is the floor an INT8 file's agreement is measured against."""
    def jpeg(image: np.ndarray) -> np.ndarray:
        return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)

    return {"shifted right by 1 pixel": np.ascontiguousarray(np.concatenate([images[:, :, :1], images[:, :, :-1]], 2)),
            "saved as JPEG, quality 95": np.stack([jpeg(image) for image in images])}


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    def cdf(j: int, p: float) -> float:  # P(X <= j), X ~ Bin(n, p)
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(j + 1))

    def solve(f, target: float) -> float:  # f increasing in p
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if f(mid) < target else (low, mid)
        return (low + high) / 2

    low = solve(lambda p: 1 - cdf(k - 1, p), alpha / 2) if k > 0 else 0.0
    high = solve(lambda p: 1 - cdf(k, p), 1 - alpha / 2) if k < n else 1.0
    return low, high


def labelled(folder: Path, labels: list[str], geometry) -> tuple[np.ndarray, np.ndarray]:
    """Images of FOLDER/<label>/ and their class indices."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    unknown = [c.name for c in classes if c.name not in labels]
    if not classes or unknown:
        raise EdgerecError(f"{folder}: expected folders named after the model's labels; not labels: {unknown[:3]}")
    files = [(f, labels.index(c.name)) for c in classes for f in media_files([c])]
    return load_images([f for f, _ in files], geometry), np.array([i for _, i in files])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True, help="the FP32 file the INT8 files must follow")
    parser.add_argument("--labelled", type=Path, required=True, help="photos in folders named after labels")
    parser.add_argument("--photos", type=Path, action="append", required=True,
                        help="unlabelled real photos (a folder or file; repeat for more)")
    parser.add_argument("--figure", type=Path, metavar="PNG",
                        help="also draw agreement by FP32's margin (each file's fused kernels, FP32's own nudges)")
    parser.add_argument("int8", nargs="+", metavar="NAME=FILE")
    args = parser.parse_args(argv)
    if any("=" not in a for a in args.int8):
        parser.error("INT8 files are given as NAME=FILE")
    try:
        reference = Model.load(args.fp32, device="cpu")
        geometry = reference.geometry
        images82, truth = labelled(args.labelled, list(reference.labels), geometry)
        photos = load_images(args.photos, geometry)
    except EdgerecError as exc:
        print(f"int8_fidelity: error: {exc}", file=sys.stderr)
        return 2
    fp82, fpx = probabilities(args.fp32, images82), probabilities(args.fp32, photos)
    clear = fpx.max(1) >= 0.5
    n, m = len(truth), len(photos)
    print(f"FP32 {args.fp32}: top-1 {int((fp82.argmax(1) == truth).sum())}/{n} on {args.labelled}; "
          f"{m} unlabelled photos, {int(clear.sum())} of them clear (FP32 p >= 0.5)")
    nudge_rows, int8_rows = {}, {}  # the figure's rows: top-1s by name
    for change, changed in nudged(photos).items():
        moved = nudge_rows[f"FP32 {change}"] = probabilities(args.fp32, changed).argmax(1)
        same = int((moved == fpx.argmax(1)).sum())
        print(f"FP32's own top-1 on the photos {change}: the same on {same}/{m} ({same / m:.1%}); "
              + by_margin("", moved, fpx))
    print(f"FP32 CPU ms (one thread, one image): {cpu_ms(args.fp32, photos[0]):.2f}")
    print("| file | mode | MB | CPU ms | top-1 | agreement (labelled) | agreement (photos), 95% CI | clear agreement |")
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for name, path in (a.split("=", 1) for a in args.int8):
        top1 = {}
        for mode in MODES:
            q82, qx = probabilities(Path(path), images82, mode), probabilities(Path(path), photos, mode)
            top1[mode] = qx.argmax(1)
            same = qx.argmax(1) == fpx.argmax(1)
            low, high = clopper_pearson(int(same.sum()), m)
            size = Path(path).stat().st_size / 1e6
            print(f"| {name} | {mode} | {size:.2f} | {cpu_ms(Path(path), photos[0], mode):.2f} "
                  f"| {int((q82.argmax(1) == truth).sum())}/{n} "
                  f"| {int((q82.argmax(1) == fp82.argmax(1)).sum())}/{n} | {int(same.sum())}/{m}, "
                  f"{same.mean():.1%} ({low:.1%}-{high:.1%}) | {int(same[clear].sum())}/{int(clear.sum())} |")
        notes.append(f"{name} (fused) {by_margin('agreement', top1['fused'], fpx)}")
        int8_rows[f"{name} (INT8, fused)"] = top1["fused"]
        notes.append(implementations(name, top1, fpx))
    print("\n".join(notes))
    if args.figure:
        title = [f"Top-1 agreement with FP32 ({args.fp32.name}) by FP32's margin (top-1 minus top-2)",
                 f"{m} photos of {', '.join(str(p) for p in args.photos)}; CPU: {cpu_description()}"]
        write_png(args.figure, margin_figure({**int8_rows, **nudge_rows}, fpx, title))
        print(f"figure: {args.figure}")
    return 0


def margin_bands(top1: np.ndarray, fp32: np.ndarray) -> list[tuple[str, int, int]]:
    """(band, photos where `top1` is FP32's top-1, photos) in bands of FP32's margin (MARGIN_BANDS)."""
    ranked = np.sort(fp32, 1)
    margin, same = ranked[:, -1] - ranked[:, -2], top1 == fp32.argmax(1)
    edges = (*MARGIN_BANDS, math.inf)
    bands = []
    for low, high in zip(edges, edges[1:]):
        inside = (margin >= low) & (margin < high)
        bands.append((f">= {low:g}" if high == math.inf else f"{low:g}-{high:g}", int(same[inside].sum()),
                      int(inside.sum())))
    return bands


def by_margin(what: str, top1: np.ndarray, fp32: np.ndarray) -> str:
    """`what` (agreement) of `top1` with FP32's in bands of FP32's margin, and FP32's top-1 probability where they
    differ."""
    bands = ", ".join(f"{band} {same}/{n}" for band, same, n in margin_bands(top1, fp32))
    off = top1 != fp32.argmax(1)
    said = f"{what} by FP32's margin: {bands}".lstrip()
    return said + (f"; FP32's top-1 probability where they differ: at most {fp32.max(1)[off].max():.3f}"
                   if off.any() else "")


def margin_figure(rows: dict[str, np.ndarray], fp32: np.ndarray, title: list[str]) -> np.ndarray:
    """A heatmap: per row (a name and its top-1s), agreement with FP32 in each band of FP32's margin."""
    bands = margin_bands(fp32.argmax(1), fp32)
    columns = [f"{band} ({n})" for band, _, n in bands] + [f"all ({len(fp32)})"]
    shares = [[same / n if n else 0.0 for _, same, n in margin_bands(top1, fp32)]
              + [float((top1 == fp32.argmax(1)).mean())] for top1 in rows.values()]
    return render_heatmap(np.array(shares), list(rows), columns, title, cell=(96, 30))


def implementations(name: str, top1: dict[str, np.ndarray], fp32: np.ndarray) -> str:
    """How often the two exact implementations (int32 kernels, QDQ graph in float) differ from each other, and
    how close to a tie FP32 was where the int32 kernels differ from FP32."""
    ranked = np.sort(fp32, 1)
    margin = ranked[:, -1] - ranked[:, -2]
    off = top1["int32"] != fp32.argmax(1)
    where = f"median {np.median(margin[off]):.3f}, largest {margin[off].max():.3f}" if off.any() else "none"
    return (f"{name}: int32 and exact differ in top-1 on {int((top1['int32'] != top1['exact']).sum())}/{len(fp32)} "
            f"photos; FP32's margin (top-1 minus top-2 probability) where int32 differs from FP32: {where} "
            f"(on all photos: median {np.median(margin):.3f})")


if __name__ == "__main__":
    sys.exit(main())
