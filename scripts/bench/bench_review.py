#!/usr/bin/env python3
"""What the review queue (edge.learn.review) costs the frame loop, and its own thread per crop kept; and the
cosine distances its near-duplicate check compares with `duplicate`.

    python scripts/bench/bench_review.py [--size 1280x720] [--calls 20000]
    python scripts/bench/bench_review.py --distances

The frame loop calls `ReviewQueue.write(frame, result)` on every frame (a raw sink). Timed, per call, on one
region covering a quarter of the frame: a result not worth review (score above low_score), one worth review
but inside the region's min_gap_s (the common case while a model stays unsure), and one offered (the crop
copied and queued). Then the queue's thread per crop: the near-duplicate check (thumbnail or 1280 features),
the JPEG encoding and the two atomic writes, timed from the offer to the crop on disk. docs/review.md quotes it.

--distances: the cosine distance between two crops of the shelf of tests/test_web_teach_browser.py (a photo of
a squirrel or of a small dog pasted on a photo of a cat, scripts/data/make_still_clip.py), in the embedded
model's features and in the queue's 16x16 colour thumbnail: the same object under sensor noise (Gaussian, sd 2
and 8 grey levels), shifted by 4 pixels, 30% darker (ten pairs, five per object); and two different things
(five pairs). Min-max.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.learn.review import ReviewOptions, ReviewQueue, thumbnail, unit
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
    parser.add_argument("--distances", action="store_true", help="the near-duplicate distances instead")
    args = parser.parse_args()
    if args.distances:
        distances()
        return
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


REPO = Path(__file__).resolve().parents[2]
SHELF = (0.5, 0.25, 0.4, 0.6)


def distances() -> None:
    from edge.core.model import Model
    from edge.core.preprocess import fit

    spec = importlib.util.spec_from_file_location("make_still_clip", REPO / "scripts/data/make_still_clip.py")
    msc = importlib.util.module_from_spec(spec)
    sys.modules["make_still_clip"] = msc
    spec.loader.exec_module(msc)
    photos = REPO / "tests" / "data" / "photos"
    scene = msc.cover(msc.read(photos / "chelsea.jpg"), (320, 240))
    squirrel, dog = (msc.pasted(scene, msc.Paste(photos / name, SHELF, 0.0))
                     for name in ("squirrel_cls.jpg", "chicky_512.jpg"))
    rng = np.random.default_rng(0)
    model = Model.load(None, "cpu", threads=1)

    def crop(image: np.ndarray, sd: float = 2.0, dx: int = 0, gain: float = 1.0) -> np.ndarray:
        noisy = np.clip((image + rng.normal(0, sd, image.shape)) * gain, 0, 255).astype(np.uint8)
        height, width = image.shape[:2]
        x, y, w, h = SHELF
        return noisy[int(y * height):int((y + h) * height), int(x * width) + dx:int((x + w) * width) + dx]

    def features(image: np.ndarray) -> np.ndarray:
        return unit(model.features(fit(image, model.geometry)[None])[1][0])

    pairs = {
        "same object, noise sd 2": lambda o: (crop(o), crop(o)),
        "same object, noise sd 8": lambda o: (crop(o, 8), crop(o, 8)),
        "same object, shifted 4 px": lambda o: (crop(o), crop(o, dx=4)),
        "same object, 30% darker": lambda o: (crop(o), crop(o, gain=0.7)),
        "squirrel vs dog": lambda o: (crop(squirrel), crop(dog)),
        "squirrel vs the empty shelf": lambda o: (crop(squirrel), crop(scene)),
    }
    print(f"{'cosine distance':30s} {'features':>15s} {'thumbnail':>15s}")
    for name, make in pairs.items():
        made = [make(thing) for thing in (squirrel, dog) for _ in range(5)][:5 if "vs" in name else 10]
        feature = [1 - float(features(a) @ features(b)) for a, b in made]
        thumb = [1 - float(thumbnail(a) @ thumbnail(b)) for a, b in made]
        print(f"{name:30s} {min(feature):7.4f}-{max(feature):.4f} {min(thumb):7.4f}-{max(thumb):.4f}")


if __name__ == "__main__":
    main()
