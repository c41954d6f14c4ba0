#!/usr/bin/env python3
"""What ONNX Runtime's 32-bit-sum setting costs and changes on this CPU.

    python scripts/bench/bench_int8_sums.py [MODEL] [--runs 100] [--batch 16] [--threads 1]

Two CPU sessions of one INT8 file (default: the embedded model): ONNX Runtime's own kernels, and the same with
`session.x64quantprecision` = 1 (edge.core.devices.INT8_UNSATURATED) set whatever the CPU. On an x86 CPU without
VNNI the first adds pairs of u8 x s8 products in saturating 16-bit sums and the second sums in 32 bits: the
outputs differ, and the second is what every edgerec session uses there by default (--fast-int8 for the first).
With VNNI, or on ARM, both already sum in 32 bits: the outputs must be equal, and the setting only costs time,
which is why edgerec makes it only where `int8_sums_saturate()` (docs/quantization.md).

Prints the CPU, CPU milliseconds per image of each session (time.thread_time, rounds interleaved, medians and
p95; a one-thread session runs in the calling thread), the ratio, the largest output difference and on how
many images the top-1 is the same. The images are the package's sample photos fitted to the model's input,
repeated to `--batch`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.app.bench import samples_interleaved, summary  # noqa: E402
from edge.core.devices import INT8_UNSATURATED, cpu_description, int8_sums_saturate  # noqa: E402
from edge.core.model import Model, default_model_path, inference_session  # noqa: E402
from edge.core.preprocess import fit  # noqa: E402
from edge.tools.classify import sample_photos_dir  # noqa: E402


def session(path: Path, threads: int, unsaturated: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if unsaturated:
        options.add_session_config_entry(INT8_UNSATURATED, "1")
    return inference_session(path, options)


def sample_batch(model: Model, batch: int) -> np.ndarray:
    """The sample photos, fitted, repeated to `batch` images."""
    photos = sorted(sample_photos_dir().glob("*.jpg"))
    fitted = [fit(image, model.geometry) for p in photos if (image := cv2.imread(str(p))) is not None]
    return np.stack([fitted[i % len(fitted)] for i in range(batch)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, default=None, help="INT8 model file (default: embedded)")
    parser.add_argument("--runs", type=int, default=100, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="images per run (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default: %(default)s)")
    args = parser.parse_args()
    path = args.model or default_model_path()
    model = Model.load(path, "cpu", threads=1)
    images = sample_batch(model, args.batch)
    plain, summed = session(path, args.threads, False), session(path, args.threads, True)
    name = plain.get_inputs()[0].name
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    timings = [summary(s) for s in samples_interleaved(
        [lambda: plain.run(None, {name: images}), lambda: summed.run(None, {name: images})], args.runs, clock)]
    a, b = plain.run(None, {name: images})[0], summed.run(None, {name: images})[0]
    kind = "CPU" if args.threads == 1 else "wall"
    print(f"CPU: {cpu_description()}; kernels saturate here: {'yes' if int8_sums_saturate() else 'no'}")
    print(f"{path.name} ({model.info.precision}): {args.batch} images a run, {args.threads} thread(s), "
          f"{args.runs} interleaved rounds, {kind} ms an image (median / p95)")
    for label, timing in zip(("this CPU's kernels", f"{INT8_UNSATURATED} = 1"), timings):
        print(f"  {label:36s} {timing.median_ms / args.batch:7.3f} / {timing.p95_ms / args.batch:.3f}")
    ratio = timings[1].median_ms / timings[0].median_ms
    same = int((a.argmax(1) == b.argmax(1)).sum())
    print(f"setting / kernels: {ratio:.2f}x; largest output difference {float(np.abs(a - b).max()):.3g}; "
          f"top-1 the same on {same}/{len(a)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
