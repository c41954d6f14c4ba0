#!/usr/bin/env python3
"""What `fit` costs right after `session.run`, against back to back: why the path beyond the model costs more
in `edgerec bench --pipeline` than each step does alone.

    python scripts/bench/fit_after_session.py [--runs 150] [--frame 1920x1080] [--region 0.25,0.25,0.5,0.5]

One thread for OpenCV and for the embedded default model. Each of --runs rounds does one thing first, then
times one `Fitter.fit` of the same still frame (or of the region's crop of it) with time.perf_counter:

- back to back: another fit of the same frame first (caches warm);
- after a memory sweep: a 16 MB copy first (data caches cold, the code warm);
- after session.run: one INT8 `session.run` first, as on the per-frame path of `edgerec run`.

Medians in ms. The variants take turns within each round, so load from elsewhere hits them alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_preprocess import parse_size  # noqa: E402
from bench_watch import cpu_model  # noqa: E402

from edge.app.bench import sample_frame  # noqa: E402
from edge.core.model import Model  # noqa: E402
from edge.core.preprocess import Fitter  # noqa: E402
from edge.live.regions import pixel_rect  # noqa: E402

SWEEP_BYTES = 16 << 20


def timings(runs: int, frame: np.ndarray, model: Model) -> dict[str, float]:
    """Median ms of one fit after each kind of preceding work."""
    fitter, out = Fitter(model.geometry), np.empty((*model.info.input_size, 3), np.uint8)
    batch = np.ascontiguousarray(fitter.fit(frame)[None])
    source, sweep = np.ones(SWEEP_BYTES, np.uint8), np.empty(SWEEP_BYTES, np.uint8)
    before: dict[str, Callable[[], object]] = {
        "back to back": lambda: fitter.fit(frame, out),
        "after a 16 MB memory sweep": lambda: np.copyto(sweep, source),
        "after session.run": lambda: model.infer(batch),
    }
    samples: dict[str, list[float]] = {name: [] for name in before}
    for _ in range(runs):
        for name, work in before.items():
            work()
            start = time.perf_counter()
            fitter.fit(frame, out)
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(values)) for name, values in samples.items()}


def parse_box(text: str) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in text.split(","))
    return x, y, w, h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150, help="rounds (each times every variant once)")
    parser.add_argument("--frame", type=parse_size, default=(1920, 1080), help="frame WIDTHxHEIGHT")
    parser.add_argument("--region", type=parse_box, default=None,
                        help="fit this region's crop (x,y,w,h as fractions) instead of the whole frame")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    model = Model.load(None, "cpu", 1)
    width, height = args.frame
    frame = sample_frame(height, width)
    what = "the whole frame"
    if args.region is not None:
        rows, cols = pixel_rect(args.region, height, width)
        frame, what = frame[rows, cols], f"the region {args.region} ({cols.stop - cols.start}x{rows.stop - rows.start})"
    print(f"{cpu_model()}; fit of {what} of a {width}x{height} frame, "
          f"{model.info.precision} default, one thread, median of {args.runs} rounds:")
    for name, ms in timings(args.runs, frame, model).items():
        print(f"  {name:28s} {ms:.3f} ms")


if __name__ == "__main__":
    main()
