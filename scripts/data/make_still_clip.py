"""A fixed camera watching a still scene, as a video file: a real photo looped with sensor noise and light drift.

Every frame is the same photo (fitted to `size` by scaling to cover and cropping the centre) plus fresh
Gaussian noise of `noise_sigma` gray levels per channel (a camera sensor) and a brightness ramp of `drift`
levels per second (the light changing slowly), clipped to 0-255. Optionally an object photo is pasted into
a box from second `start` on, and then stays still (something put down in the scene). Nothing moves
otherwise, so a motion detector must stay quiet except when the object appears.

The container follows the file's suffix: `.mp4` is written with the mp4v codec (like the demo clip),
`.avi` with MJPG (keeps the per-frame noise better, larger files). The file is written to a temporary
name beside it and renamed when complete.

Used by the motion benchmark (scripts/bench/bench_motion.py), the "idle when nothing moves" benchmark and tests,
as a library function (tests load this file with importlib, as tests/test_make_photoset_script.py does):

    make_still_clip(Path("still.mp4"), PHOTOS / "coffee.jpg", seconds=60, fps=15, size=(640, 480),
                    noise_sigma=2.0, drift=0.5, paste=Paste(PHOTOS / "orange.jpg", (0.6, 0.5, 0.2, 0.25), 5.0))

or from the command line:

    python scripts/data/make_still_clip.py --out still.mp4 --background tests/data/photos/coffee.jpg \
        --seconds 60 --fps 15 --noise 2 --drift 0.5 --paste tests/data/photos/orange.jpg --box 0.6,0.5,0.2,0.25 --at 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


@dataclass(frozen=True)
class Paste:
    image: Path | np.ndarray
    """The object: a photo file or a BGR uint8 image; it is resized to fill `box`."""
    box: tuple[float, float, float, float]
    """Where it goes: x, y, w, h as fractions of the frame."""
    start: float
    """Second of the clip from which it is there (it then stays still)."""


@dataclass(frozen=True)
class StillClip:
    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    paste_frame: int | None
    """Index of the first frame showing the pasted object; None without one."""


def make_still_clip(path: Path, background: Path | np.ndarray, seconds: float = 60.0, fps: float = 15.0,
                    size: tuple[int, int] = (640, 480), noise_sigma: float = 2.0, drift: float = 0.5,
                    paste: Paste | None = None, seed: int = 0) -> StillClip:
    """Write the clip (see the module docstring) and say what it holds; `drift` is gray levels per second."""
    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"make_still_clip: {path} must end in {' or '.join(CODECS)}")
    scene = cover(read(background), size)
    with_object = scene if paste is None else pasted(scene, paste)
    paste_frame = None if paste is None else max(0, int(np.ceil(paste.start * fps)))
    count = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    base = np.empty(scene.shape, np.float32)
    noise = np.empty(scene.shape, np.float32)
    frame = np.empty(scene.shape, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter.fourcc(*codec), fps, size)
        if not writer.isOpened():
            raise RuntimeError(f"make_still_clip: this OpenCV cannot write {codec} into {path.suffix}")
        for i in range(count):
            shown = with_object if paste_frame is not None and i >= paste_frame else scene
            np.copyto(base, shown)
            base += drift * i / fps
            rng.standard_normal(out=noise, dtype=np.float32)
            base += noise * noise_sigma
            np.clip(base, 0, 255, out=base)
            np.copyto(frame, base, casting="unsafe")
            writer.write(frame)
        writer.release()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return StillClip(path, count, fps, size, paste_frame if paste_frame is not None and paste_frame < count else None)


def read(image: Path | np.ndarray) -> np.ndarray:
    """A BGR uint8 image from a file or as given."""
    if isinstance(image, np.ndarray):
        return image
    loaded = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if loaded is None:
        raise ValueError(f"make_still_clip: cannot read image {image}")
    return loaded


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale `image` to cover `size` (width, height) and crop the centre."""
    w, h = size
    scale = max(w / image.shape[1], h / image.shape[0])
    scaled = cv2.resize(image, (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))),
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
    return np.ascontiguousarray(scaled[top : top + h, left : left + w])


def pasted(scene: np.ndarray, paste: Paste) -> np.ndarray:
    """A copy of `scene` with the object resized into its box (pixel-rounded, clipped to the frame)."""
    h, w = scene.shape[:2]
    x0, y0 = round(paste.box[0] * w), round(paste.box[1] * h)
    x1, y1 = min(w, round((paste.box[0] + paste.box[2]) * w)), min(h, round((paste.box[1] + paste.box[3]) * h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"make_still_clip: paste box {paste.box} is empty or outside the frame")
    out = scene.copy()
    out[y0:y1, x0:x1] = cv2.resize(read(paste.image), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output file, .mp4 (mp4v) or .avi (MJPG)")
    parser.add_argument("--background", type=Path, required=True, help="the scene's photo")
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma in gray levels (default 2)")
    parser.add_argument("--drift", type=float, default=0.5, help="brightness drift, levels per second (default 0.5)")
    parser.add_argument("--paste", type=Path, help="an object photo to paste from --at on")
    parser.add_argument("--box", default="0.6,0.5,0.2,0.25", help="where the object goes: x,y,w,h fractions")
    parser.add_argument("--at", type=float, default=5.0, help="second the object appears (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    box = tuple(float(v) for v in args.box.split(","))
    paste = Paste(args.paste, box, args.at) if args.paste else None
    clip = make_still_clip(args.out, args.background, args.seconds, args.fps, (width, height), args.noise,
                           args.drift, paste, args.seed)
    where = "" if clip.paste_frame is None else f", object from frame {clip.paste_frame}"
    print(f"wrote {clip.path}: {clip.frames} frames at {clip.fps:g} fps, {width}x{height}{where}")


if __name__ == "__main__":
    main()
