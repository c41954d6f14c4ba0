#!/usr/bin/env python3
"""Two small costs on the per-frame path, warm and right after `session.run`, and a check that the cheaper
motion comparison says what the masked one said.

    python scripts/bench/bench_draw_motion.py [--runs 500] [--clip still.mp4 ...]

- outline: a region's outline on a quarter of a 1920x1080 frame, 3 pixels wide (its width at 1080p), drawn
  as the overlay draws it (`edge.live.overlay._outline`: four filled strips) and with `cv2.rectangle`;
- motion: `MotionDetector.update` on an analysed still 640x480 frame (still_every 1), shipped and with the
  comparison as it was before (always masked), and the brightness
  compensation's mean over the calm pixels with the mask (what `_compare` took before) and without it (what it
  takes when every pixel is calm);
- states: each --clip through two detectors, the shipped one and one whose comparison always passes the mask;
  the frames where their states (moving, area, boxes, recalibrating, analysed) differ, which must be none.

One thread for OpenCV and for the embedded default model; CPU µs per call (time.thread_time_ns), medians. "after
session.run" runs one INT8 `session.run` before each timed call, as the per-frame path does.
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

from bench_watch import cpu_model  # noqa: E402

from edge.app.bench import sample_frame  # noqa: E402
from edge.core.model import Model  # noqa: E402
from edge.live.motion import MotionDetector, MotionOptions  # noqa: E402
from edge.live.overlay import _outline  # noqa: E402

QUARTER = (slice(270, 810), slice(480, 1440))  # rows, columns of the region (0.25, 0.25, 0.5, 0.5) at 1080p


def median_us(call: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> float:
    """Median CPU µs of `call`, each run preceded by `before` (untimed) when given."""
    for _ in range(20):
        call()
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.thread_time_ns()
        call()
        samples.append(time.thread_time_ns() - start)
    return float(np.median(samples)) / 1000


def outline_rows(runs: int, session: Callable[[], object]) -> list[str]:
    frame = sample_frame(1080, 1920)
    rows, cols = QUARTER
    calls = {"outline, four strips (the overlay)": lambda: _outline(frame, rows, cols, 255, 3),
             "outline, cv2.rectangle thickness 3": lambda: cv2.rectangle(
                 frame, (cols.start, rows.start), (cols.stop - 1, rows.stop - 1), (255, 255, 255), 3)}
    return [f"{name:44s} {median_us(call, runs):8.1f} {median_us(call, runs, session):8.1f}"
            for name, call in calls.items()]


def motion_rows(runs: int, session: Callable[[], object]) -> list[str]:
    frames = still_frames()
    detector, masked = MotionDetector(MotionOptions(still_every=1)), MaskedDetector(MotionOptions(still_every=1))
    for frame in frames:
        detector.update(frame)
        masked.update(frame)
    frame, mask = frames[-1], np.full(detector._avg.shape, 255, np.uint8)
    calls = {"motion update, analysed still frame": lambda: detector.update(frame),
             "the same, comparison always masked (before)": lambda: masked.update(frame),
             "mean over the calm pixels, masked": lambda: cv2.mean(detector._avg, mask=mask),
             "mean over the calm pixels, unmasked": lambda: cv2.mean(detector._avg)}
    return [f"{name:44s} {median_us(call, runs):8.1f} {median_us(call, runs, session):8.1f}"
            for name, call in calls.items()]


def still_frames(count: int = 30) -> list[np.ndarray]:
    """A still 640x480 scene with sensor noise: nothing moves, every pixel stays calm."""
    rng, photo = np.random.default_rng(0), sample_frame(480, 640).astype(np.int16)
    return [np.clip(photo + rng.normal(0, 2, photo.shape), 0, 255).astype(np.uint8) for _ in range(count)]


class MaskedDetector(MotionDetector):
    """The comparison as it was before: the means over the calm pixels always through the mask."""

    def _compare(self) -> float:
        t = float(self.options.threshold)
        cv2.subtract(self._gray_f, self._avg, dst=self._diff)
        cv2.inRange(self._diff, -t, t, dst=self._calm)
        if cv2.countNonZero(self._calm) == 0:
            return 1.0
        level = cv2.mean(self._avg, mask=self._calm)[0]
        if level >= 1.0:
            np.multiply(self._avg, 1.0 + cv2.mean(self._diff, mask=self._calm)[0] / level, out=self._avg)
        cv2.absdiff(self._gray_f, self._avg, dst=self._diff)
        cv2.compare(self._diff, t, cv2.CMP_GT, dst=self._changed)
        return cv2.countNonZero(self._changed) / self._pixels


def differing_states(clip: Path) -> tuple[int, int, int]:
    """(frames, frames where the two detectors' states differ, frames the shipped one calls moving)."""
    shipped, masked = MotionDetector(), MaskedDetector()
    capture, frames, differ, moving = cv2.VideoCapture(str(clip)), 0, 0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        a, b = shipped.update(frame), masked.update(frame)
        frames, moving = frames + 1, moving + a.moving
        differ += (a.moving, a.area, a.boxes, a.recalibrating, a.analysed) != (
            b.moving, b.area, b.boxes, b.recalibrating, b.analysed)
    capture.release()
    return frames, differ, moving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="timed calls per figure (default: %(default)s)")
    parser.add_argument("--clip", type=Path, action="append", default=[], help="a video for the states check")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    model = Model.load(None, "cpu", 1)
    batch = np.zeros((1, *model.info.input_size, 3), np.uint8)
    session = lambda: model.infer(batch)  # noqa: E731
    print(f"CPU: {cpu_model()}; CPU µs per call, median of {args.runs}")
    print(f"{'':44s} {'warm':>8s} {'after session.run':>17s}")
    print("\n".join([*outline_rows(args.runs, session), *motion_rows(args.runs, session)]))
    for clip in args.clip:
        frames, differ, moving = differing_states(clip)
        print(f"{clip.name}: {frames} frames ({moving} moving), states differ on {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
