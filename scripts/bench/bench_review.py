#!/usr/bin/env python3
"""What the review queue (edge.learn.review) costs the frame loop, and its own thread per crop kept.

    python scripts/bench/bench_review.py [--size 1280x720] [--calls 20000]

The frame loop calls `ReviewQueue.write(frame, result)` on every frame (a raw sink). Timed, per call, on one
region covering a quarter of the frame: a result not worth review (score above low_score), one worth review
but inside the region's min_gap_s (the common case while a model stays unsure), and one offered (the crop
copied and queued). Then the queue's thread per crop: the near-duplicate check (thumbnail or 1280 features),
the JPEG encoding and the two atomic writes, timed from the offer to the crop on disk. docs/review.md quotes it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.learn.review import ReviewOptions, ReviewQueue
from edge.live.result import FrameResult, Result


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def frame_result(score: float, features: np.ndarray | None) -> FrameResult:
    result = Result(1, 0.0, "cat", 0, score, np.zeros(3, np.float32), False, True, 5.0, 10.0, camera="cam",
                    region="door", box=(0.25, 0.25, 0.5, 0.5), features=features)
    return FrameResult("cam", 1, 0.0, 10.0, (result,))


def per_call_us(review: ReviewQueue, frame: np.ndarray, result: FrameResult, calls: int, clock: Clock,
                step: float = 0.0) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        clock.now += step
        review.write(frame, result)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720", help="frame WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    features = np.random.default_rng(1).normal(size=1280).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        clock = Clock()
        review = ReviewQueue(Path(folder) / "review", ReviewOptions(min_gap_s=3600.0), clock)
        per_call_us(review, frame, frame_result(0.3, None), 1, clock)  # the first: offered, then the gap
        review.settle()
        print(f"frame {width}x{height}, region {width // 2}x{height // 2}, {args.calls} calls each")
        for what, score in (("not worth review:       ", 0.9), ("worth review, in the gap:", 0.3)):
            took = per_call_us(review, frame, frame_result(score, None), args.calls, clock)
            print(f"loop, {what} {took:6.2f} µs/call")
        review.close()
        for kind, vector in (("thumbnail", None), ("features", features)):
            clock = Clock()
            options = ReviewOptions(min_gap_s=0.0, duplicate=0.0, per_hour=3600)
            review = ReviewQueue(Path(folder) / kind, options, clock)
            offers, kept = [], []
            for n in range(200):
                result = frame_result(0.3, None if vector is None else vector + n)
                picture = np.roll(frame, n, axis=1)
                offers.append(per_call_us(review, picture, result, 1, clock, step=1.0))
                started = time.perf_counter()
                review.settle()
                kept.append((time.perf_counter() - started) * 1000)
            review.close()
            print(f"loop, offered ({kind}): {statistics.median(offers):6.1f} µs/call (median of 200)")
            print(f"queue's thread, per crop kept ({kind}): {statistics.median(kept):5.2f} ms (median of 200)")


if __name__ == "__main__":
    main()
