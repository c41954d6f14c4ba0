"""Compose the demo clip for `edgerec run --source demo` from real photos.

Each photo is shown for a few seconds with a slow zoom and pan (a "Ken Burns" move), with a short
cross-fade to the next one, and the frames are encoded with OpenCV's VideoWriter (mp4v in .mp4).
The default photos are the licence-documented golden photos in tests/data/photos/ (see its README),
so the clip can be rebuilt from the repository alone:

    python scripts/data/make_demo_clip.py --out edge/assets/demo/demo.mp4
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PHOTOS_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "photos"
DEFAULT_PHOTOS = ("coffee.jpg", "squirrel_cls.jpg", "chicky_512.jpg", "orange.jpg", "chelsea.jpg")


@dataclass(frozen=True)
class ClipOptions:
    photos: tuple[Path, ...]
    out: Path
    width: int = 640
    height: int = 480
    fps: float = 12.0
    seconds_per_photo: float = 3.0
    fade_seconds: float = 0.5
    zoom: float = 0.8  # window size at the end of a photo's segment, relative to the start


@dataclass(frozen=True)
class ClipResult:
    path: Path
    frames: int
    seconds: float
    bytes: int


def window_at(shape: tuple[int, ...], t: float, options: ClipOptions) -> tuple[float, float, float]:
    """The crop window (left, top, width) at time t in [0, 1] of a photo's segment."""
    h, w = shape[:2]
    aspect = options.width / options.height
    full_w = min(w, h * aspect)
    win_w = full_w * (1.0 + (options.zoom - 1.0) * t)
    win_h = win_w / aspect
    slack_x = (w - win_w) / 2
    left = slack_x + slack_x * 0.5 * (t - 0.5)  # drift a little to the right while zooming in
    top = (h - win_h) / 2
    return left, top, win_w


def render(photo: np.ndarray, t: float, options: ClipOptions) -> np.ndarray:
    left, top, win_w = window_at(photo.shape, t, options)
    scale = options.width / win_w
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]], dtype=np.float64)
    size = (options.width, options.height)
    return cv2.warpAffine(photo, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def segment(photo: np.ndarray, options: ClipOptions) -> Iterator[np.ndarray]:
    count = round(options.seconds_per_photo * options.fps)
    for i in range(count):
        yield render(photo, i / (count - 1), options)


def crossfade(last: np.ndarray, first: np.ndarray, options: ClipOptions) -> Iterator[np.ndarray]:
    count = round(options.fade_seconds * options.fps)
    for weight in np.linspace(0.0, 1.0, count + 2)[1:-1]:
        yield cv2.addWeighted(last, 1.0 - weight, first, weight, 0.0)


def read_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"make_demo_clip: cannot read image {path}")
    return image


def frames_of(options: ClipOptions) -> Iterator[np.ndarray]:
    """All frames in order, one at a time: photo segments joined by cross-fades."""
    last = None
    for path in options.photos:
        photo = read_photo(path)
        if last is not None:
            yield from crossfade(last, render(photo, 0.0, options), options)
        for frame in segment(photo, options):
            yield frame
        last = frame


def write_clip(frames: Iterator[np.ndarray], options: ClipOptions) -> ClipResult:
    options.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=options.out.parent)
    os.close(fd)
    size = (options.width, options.height)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), options.fps, size)
    if not writer.isOpened():
        os.unlink(tmp)
        raise SystemExit("make_demo_clip: OpenCV has no mp4v encoder here (VideoWriter did not open)")
    count = 0
    for frame in frames:
        writer.write(frame)
        count += 1
    writer.release()
    os.chmod(tmp, 0o644)
    os.replace(tmp, options.out)
    return ClipResult(options.out, count, count / options.fps, options.out.stat().st_size)


def parse_args(argv: list[str] | None = None) -> ClipOptions:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_names = ", ".join(DEFAULT_PHOTOS)
    parser.add_argument("photos", nargs="*", type=Path, help=f"photos in order (default: {default_names})")
    parser.add_argument("--out", type=Path, default=Path("edge/assets/demo/demo.mp4"), help="output file")
    parser.add_argument("--width", type=int, default=640, help="frame width in pixels (default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height in pixels (default 480)")
    parser.add_argument("--fps", type=float, default=12.0, help="frames per second (default 12)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per photo (default 3)")
    args = parser.parse_args(argv)
    photos = tuple(args.photos) or tuple(PHOTOS_DIR / name for name in DEFAULT_PHOTOS)
    return ClipOptions(photos, args.out, args.width, args.height, args.fps, args.seconds)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    result = write_clip(frames_of(options), options)
    print(f"wrote {result.path}: {result.frames} frames, {result.seconds:.1f} s, {result.bytes / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
