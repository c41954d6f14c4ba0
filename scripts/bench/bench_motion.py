"""What edge/live/motion.py costs per frame and what it reports on still, shaking, relit and busy scenes.

    python scripts/bench/bench_motion.py [--runs 300] [--seconds 60] [--picture docs/img/motion-vtest.png]

Cost: CPU time of one `update` (time.process_time_ns around each call, one OpenCV thread), mean and p95,
at 640x480, 1280x720 and 1920x1080, cycling through 8 distinct frames of a real photo with sensor noise
(48 MB at 1080p, more than the CPU's last-level cache, as a camera's fresh frames would be). The variants
take turns call by call so that load from other processes hits them alike. "still" is a quiet scene (the
fast path, and only every `still_every`-th call is analysed); "moving" has an object pasted at a new place in
every frame (it moves across the scene), so every call analyses blobs.
The downscale table times only the first step of each way to get the small gray frame.

Quality, for the same variants (false positives: frames with motion, not counting the first 100 frames, which
cover every variant's calibration):
- false positives on a still clip from scripts/data/make_still_clip.py (coffee.jpg, 640x480, 15 fps, sensor
  noise sigma 2, +0.5 levels/s drift, MJPG so that the noise survives encoding): the issue's idle scene;
- false positives when the light falls by 30% over 1 s (a cloud, the camera's exposure);
- false positives on a fine texture (baboon.jpg) at 1920x1080 with the camera shaking by up to 1 or 2
  pixels each way (wind on a pole): aliasing is what separates the downscale methods;
- frames from the start of a still scene until the detector has stopped learning (calibrating) and reports
  no motion any more;
- frames until motion is reported again after the lights switch on (x1.8 + 40 levels, clipped);
- frames with motion on opencv-doc's vtest.avi (people walking in a hall in every frame), when installed.
All scenes but vtest.avi carry Gaussian sensor noise of sigma 2 levels per channel.

"frigate-like" is this script's re-implementation of the algorithm of Frigate's improved_motion.py with its
default settings (frame height 100, nearest-neighbour resize, contrast stretch between the 4th and 96th
percentile averaged over 50 frames, 3x3 Gaussian blur, threshold 30, one dilation, contours over 10 px,
lightning 0.8, running average 0.01 or 0.2 while calibrating, held while motion lasts under 10 frames); a
frame counts as motion when it has boxes and is not calibrating (Frigate skips detection while
calibrating). Frigate reads the luma plane of a YUV frame; here the BGR frame is resized first and
converted to gray at the small size, which is what sampling the luma plane costs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge.core.devices import cpu_description  # noqa: E402
from edge.live.motion import MotionDetector, MotionOptions  # noqa: E402

_spec = importlib.util.spec_from_file_location("make_still_clip", REPO / "scripts" / "data" / "make_still_clip.py")
msc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = msc
_spec.loader.exec_module(msc)

PHOTOS = REPO / "tests" / "data" / "photos"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SIZES = [(640, 480), (1280, 720), (1920, 1080)]
OBJECT_BOX = (0.55, 0.5, 0.25, 0.3)
SKIP = 100  # frames left out of the quality counts: every variant's calibration (frigate-like's contrast history is 50)


class FrigateLike:
    """Frigate's improved_motion algorithm at its defaults, re-implemented for comparison (see the docstring)."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()

    def _reset(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        self.size = (100 * w // h, 100)
        self.avg = np.zeros((100, self.size[0]), np.float32)
        self.contrast = np.zeros((50, 2), np.float32)
        self.contrast[:, 1] = 255
        self.index = 0
        self.calibrating = True
        self.motion_frames = 0
        self.shape = frame.shape

    def update(self, frame: np.ndarray) -> tuple[bool, bool]:
        if frame.shape != self.shape:
            self._reset(frame)
        small = cv2.resize(frame, self.size, interpolation=cv2.INTER_NEAREST)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        low, high = np.percentile(gray, 4), np.percentile(gray, 96)
        if low < high:
            self.contrast[self.index] = (low, high)
            self.index = (self.index + 1) % len(self.contrast)
            lo, hi = self.contrast.mean(axis=0)
            gray = ((np.clip(gray, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
        gray = cv2.GaussianBlur(gray, (3, 3), 1.0)
        delta = cv2.absdiff(gray, cv2.convertScaleAbs(self.avg))
        mask = cv2.dilate(cv2.threshold(delta, 30, 255, cv2.THRESH_BINARY)[1], None, iterations=1)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        areas = [cv2.contourArea(c) for c in contours]
        boxes = sum(a > 10 for a in areas)
        share = sum(areas) / (self.avg.shape[0] * self.avg.shape[1])
        if share < 0.05 and boxes <= 4:
            self.calibrating = False
        if share > 0.8:
            self.calibrating = True
        alpha = 0.2 if self.calibrating else 0.01
        self.motion_frames = self.motion_frames + 1 if boxes else 0
        if not boxes or self.motion_frames >= 10:
            cv2.accumulateWeighted(gray, self.avg, alpha)
        return boxes > 0 and not self.calibrating, self.calibrating


class Ours:
    """edge.live.motion with the same per-frame call as FrigateLike: (motion reported, still learning)."""

    def __init__(self, **options: object) -> None:
        self.detector = MotionDetector(MotionOptions(**options))

    def update(self, frame: np.ndarray) -> tuple[bool, bool]:
        state = self.detector.update(frame)
        return state.moving, state.recalibrating


def variants() -> dict[str, Callable[[], Callable[[np.ndarray], tuple[bool, bool]]]]:
    """Name -> factory of a fresh detector's per-frame call: (motion reported, still learning)."""
    def ours(**options: object) -> Callable[[], Callable[[np.ndarray], tuple[bool, bool]]]:
        return lambda: Ours(**options).update
    return {
        "edge.live.motion (linear, default)": ours(),
        "edge.live.motion still_every=1": ours(still_every=1),
        "edge.live.motion resize=nearest": ours(resize="nearest"),
        "edge.live.motion resize=area": ours(resize="area"),
        "frigate-like": lambda: FrigateLike().update,
    }


def downscales() -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], None]]:
    """Name -> (frame, small BGR buffer, small gray buffer) -> None: the first step only."""
    def resize(interpolation: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
        def run(frame: np.ndarray, small: np.ndarray, gray: np.ndarray) -> None:
            cv2.resize(frame, (small.shape[1], small.shape[0]), dst=small, interpolation=interpolation)
            cv2.cvtColor(small, cv2.COLOR_BGR2GRAY, dst=gray)
        return run

    def stride(frame: np.ndarray, small: np.ndarray, gray: np.ndarray) -> None:
        step = frame.shape[1] // small.shape[1]
        cv2.resize(frame[::step, ::step], (small.shape[1], small.shape[0]), dst=small,
                   interpolation=cv2.INTER_NEAREST)
        cv2.cvtColor(small, cv2.COLOR_BGR2GRAY, dst=gray)

    def gray_first(frame: np.ndarray, small: np.ndarray, gray: np.ndarray) -> None:
        full = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        cv2.resize(full, (gray.shape[1], gray.shape[0]), dst=gray, interpolation=cv2.INTER_AREA)

    return {
        "resize INTER_NEAREST, then gray": resize(cv2.INTER_NEAREST),
        "resize INTER_LINEAR, then gray (default)": resize(cv2.INTER_LINEAR),
        "resize INTER_AREA, then gray": resize(cv2.INTER_AREA),
        "every Nth row/col (numpy view, copied by cv2), then gray": stride,
        "gray at full size, then INTER_AREA": gray_first,
    }


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    return msc.cover(cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR), size)


def scene(size: tuple[int, int]) -> np.ndarray:
    return photo("coffee.jpg", size)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    noise = rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def timed(calls: dict[str, Callable[[np.ndarray], object]], frames: list[np.ndarray], runs: int,
          ) -> dict[str, tuple[float, float]]:
    """Mean and p95 CPU microseconds per call, the calls taking turns on the same frame, in a rotating order
    (the mean: a still scene is analysed every `still_every`-th call only, the calls between cost next to
    nothing)."""
    times: dict[str, list[int]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(runs):
        frame = frames[i % len(frames)]
        for k in range(len(names)):  # a rotating order: the first call of a round pays for the cold frame
            name = names[(i + k) % len(names)]
            call = calls[name]
            start = time.process_time_ns()
            call(frame)
            times[name].append(time.process_time_ns() - start)
    return {name: (statistics.mean(t) / 1e3, sorted(t)[int(0.95 * (len(t) - 1))] / 1e3) for name, t in times.items()}


def cost_tables(runs: int) -> list[str]:
    rng = np.random.default_rng(0)
    detector_rows: dict[str, list[str]] = {}
    downscale_rows: dict[str, list[str]] = {}
    for size in SIZES:
        base = scene(size)
        still = [noisy(base, rng) for _ in range(8)]
        moving = [noisy(msc.pasted(base, msc.Paste(PHOTOS / "orange.jpg", (0.1 + 0.05 * i, 0.5, 0.25, 0.3), 0.0)),
                        rng) for i in range(8)]
        warm = {name: make() for name, make in variants().items()}
        for call in warm.values():
            for frame in still:
                call(frame)
        for label, frames in (("still", still), ("moving", moving)):
            for name, (median, p95) in timed(warm, frames, runs).items():
                detector_rows.setdefault(f"{name}, {label}", []).append(f"{median:.0f} / {p95:.0f}")
        w = MotionOptions().width
        small = np.empty((round(w * size[1] / size[0]), w, 3), np.uint8)
        gray = np.empty(small.shape[:2], np.uint8)
        steps = {name: (lambda f, s=step, b=small, g=gray: s(f, b, g)) for name, step in downscales().items()}
        for name, (median, p95) in timed(steps, still, runs).items():
            downscale_rows.setdefault(name, []).append(f"{median:.0f} / {p95:.0f}")
    header = "| " + " | ".join(f"{w}x{h}" for w, h in SIZES) + " |"
    lines = ["Detector, CPU µs per update, mean / p95:", "", "| variant, scene " + header,
             "|---" * (len(SIZES) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in detector_rows.items()]
    lines += ["", f"First step only (to {MotionOptions().width} px wide gray), CPU µs, mean / p95:", "",
              "| downscale " + header, "|---" * (len(SIZES) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in downscale_rows.items()]
    return lines


def clip_frames(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def still_clip_false_positives(seconds: float) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        clip = msc.make_still_clip(Path(tmp) / "still.avi", PHOTOS / "coffee.jpg", seconds, 15.0, (640, 480), 2.0, 0.5)
        return count_motion(clip_frames(clip.path), skip=SKIP)


def shaking_false_positives(pixels: int, frames: int = 300) -> dict[str, str]:
    """baboon.jpg (fine fur texture) at 1080p, the camera shaking by up to `pixels` each way every frame."""
    rng = np.random.default_rng(1)
    big = photo("baboon.jpg", (1920 + 2 * pixels, 1080 + 2 * pixels))

    def shaken() -> Iterator[np.ndarray]:
        for _ in range(frames):
            dx, dy = rng.integers(0, 2 * pixels + 1, 2)
            yield noisy(big[dy : dy + 1080, dx : dx + 1920], rng)
    return count_motion(shaken(), skip=SKIP)


def light_change_false_positives(frames: int = 300) -> dict[str, str]:
    """coffee.jpg at 640x480; from frame 150 the light falls by 30% over 15 frames (a cloud, 1 s at 15 fps)."""
    rng = np.random.default_rng(3)
    base = scene((640, 480)).astype(np.float32)

    def dimmed() -> Iterator[np.ndarray]:
        for i in range(frames):
            share = min(max(i - 150, 0), 15) / 15
            yield noisy((base * (1.0 - 0.3 * share)).astype(np.uint8), rng)
    return count_motion(dimmed(), skip=SKIP)


def frames_to_settle(frames: int = 200) -> dict[str, str]:
    """From the start of a still, noisy scene: the first frame after which the detector is neither learning
    (calibrating) nor reporting motion."""
    rng = np.random.default_rng(4)
    base = scene((640, 480))
    quiet = [noisy(base, rng) for _ in range(16)]
    result = {}
    for name, make in variants().items():
        call = make()
        busy = [any(call(quiet[i % 16])) for i in range(frames)]
        last = max((i for i, b in enumerate(busy) if b), default=-1)
        result[name] = str(last + 1) if last < frames - 1 else f"never ({frames})"
    return result


def count_motion(frames: Iterator[np.ndarray], skip: int) -> dict[str, str]:
    """Frames with motion per variant, after the first `skip` (calibration), as 'n of total'."""
    calls = {name: make() for name, make in variants().items()}
    counts = dict.fromkeys(calls, 0)
    total = 0
    for i, frame in enumerate(frames):
        for name, call in calls.items():
            moving, _ = call(frame)
            counts[name] += moving and i >= skip
        total += i >= skip
    return {name: f"{n} of {total}" for name, n in counts.items()}


SEEN_WITHIN = 3
"""Frames an object that appears stays before it counts as missed (a still scene is analysed every
`still_every`-th frame)."""


def frames_to_see(quiet_frames: int = SKIP, phases: int = 4) -> dict[str, str]:
    """A still scene, then an object appears and stays: frames until it is reported (1 = its first frame),
    the worst of `phases` start frames (quiet_frames, quiet_frames + 1, ...)."""
    rng = np.random.default_rng(5)
    base = scene((640, 480))
    quiet = [noisy(base, rng) for _ in range(16)]
    shown = noisy(msc.pasted(base, msc.Paste(PHOTOS / "orange.jpg", OBJECT_BOX, 0.0)), rng)
    result = {}
    for name, make in variants().items():
        worst = 0
        for phase in range(phases):
            call = make()
            for i in range(quiet_frames + phase):
                call(quiet[i % 16])
            seen_at = next((k for k in range(1, 30) if call(shown)[0]), None)
            worst = max(worst, seen_at or 10**6)
        result[name] = str(worst) if worst < 10**6 else "never (30)"
    return result


def frames_to_recover() -> dict[str, str]:
    """After 30 quiet frames the lights switch on; an object appears k frames later and stays SEEN_WITHIN
    frames: smallest k at which it is reported."""
    rng = np.random.default_rng(2)
    base = scene((640, 480))
    lit = np.clip(base.astype(np.float32) * 1.8 + 40, 0, 255).astype(np.uint8)
    lit_object = msc.pasted(lit, msc.Paste(PHOTOS / "orange.jpg", OBJECT_BOX, 0.0))
    quiet, relit = [noisy(base, rng) for _ in range(16)], [noisy(lit, rng) for _ in range(16)]
    seen = noisy(lit_object, rng)
    result = {}
    for name, make in variants().items():
        for k in range(1, 200):
            call = make()
            for i in range(30):
                call(quiet[i % 16])
            for i in range(k):
                call(relit[i % 16])
            if any(call(seen)[0] for _ in range(SEEN_WITHIN)):
                result[name] = str(k)
                break
        else:
            result[name] = "never (200)"
    return result


def vtest_motion() -> dict[str, str] | None:
    return count_motion(clip_frames(VTEST), skip=SKIP) if VTEST.exists() else None


def quality_table(seconds: float) -> list[str]:
    rows = [(f"still clip, {seconds:g} s: false positives", still_clip_false_positives(seconds)),
            ("light falls 30% in 1 s: false positives", light_change_false_positives()),
            ("1080p fine texture, camera shaking <= 1 px: false positives", shaking_false_positives(1)),
            ("1080p fine texture, camera shaking <= 2 px: false positives", shaking_false_positives(2)),
            ("start: frames until live and quiet for good", frames_to_settle()),
            ("object appears in a still scene: frames until reported, worst of 4", frames_to_see()),
            ("lights on: frames until an object is seen again", frames_to_recover())]
    vtest = vtest_motion()
    if vtest is not None:
        rows.append(("vtest.avi (people walking), frames with motion", vtest))
    names = list(variants())
    lines = ["| test | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {test} | " + " | ".join(result[n] for n in names) + " |" for test, result in rows]
    return lines


def write_picture(path: Path, frame_index: int = 200) -> None:
    """A vtest.avi frame with the motion mask tinted red and the boxes drawn, half size, PNG."""
    detector = MotionDetector()
    for i, frame in enumerate(clip_frames(VTEST)):
        state = detector.update(frame)
        if i == frame_index:
            break
    h, w = frame.shape[:2]
    mask = cv2.resize(detector.mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0
    shown = frame.copy()
    shown[mask] = (0.5 * shown[mask] + (0, 0, 127)).astype(np.uint8)
    for x, y, bw, bh in state.boxes:
        cv2.rectangle(shown, (int(x * w), int(y * h)), (int((x + bw) * w), int((y + bh) * h)), (0, 255, 255), 2)
    small = cv2.resize(shown, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    cv2.imwrite(tmp, small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def cpu_line() -> str:
    return (f"CPU: {cpu_description()}; OpenCV {cv2.__version__}, cv2.setNumThreads(1); "
            f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="timed calls per variant and size (default 300)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the still clip (default 60)")
    parser.add_argument("--picture", type=Path, help="also write a vtest.avi frame with the mask and boxes (PNG)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    print(cpu_line())
    print()
    print("\n".join(cost_tables(args.runs)))
    print()
    print("\n".join(quality_table(args.seconds)))
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.picture and VTEST.exists():
        write_picture(args.picture)
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
