"""Build a small 5-class set of real colour photos from Debian's Tux Paint stamps.

The package tuxpaint-stamps-default (GPL-2+, Copyright 2002-2022 Bill Kendrick and the Tux Paint
contributors) holds photographs of animals, fruit, flowers and vegetables cut out on a transparent
background. This script crops each photo to its visible part, centres it on a white square and writes
OUT/<class>/<name>.jpg for the classes bird (35), mammal (60), fruit (26), flower (25) and
vegetable (18): 164 images. Cartoon folders and the few drawn (non-photo) stamps are left out.

Get the stamps (Debian/Ubuntu):

    apt-get install tuxpaint-stamps-default        # files land in /usr/share/tuxpaint/stamps
  or, without installing:
    apt-get download tuxpaint-stamps-default && dpkg-deb -x tuxpaint-stamps-default_*.deb /tmp/tuxstamps
    python scripts/make_photoset.py --source /tmp/tuxstamps OUT

The images are not meant to be committed; build them where they are needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEBIAN_DIR = Path("/usr/share/tuxpaint/stamps")
CLASSES = {
    "bird": "animals/birds",
    "mammal": "animals/mammals",
    "fruit": "food/fruit",
    "flower": "plants/flowers",
    "vegetable": "food/vegetables",
}
NOT_PHOTOS = frozenset({
    "animals/mammals/aquatic/orca.png",  # drawn
    "animals/mammals/aquatic/whale.png",  # drawn
    "animals/mammals/bears/toys/edward_bear.png",  # a teddy bear, not a mammal
    "animals/mammals/echidna.png",  # drawn silhouette
    "animals/mammals/hedgehog.png",  # cartoon
})  # fmt: skip


class PhotosetError(Exception):
    """A problem with the input or options that the user can fix; the message says what."""


@dataclass(frozen=True)
class PhotosetOptions:
    source: Path
    out: Path
    size: int = 256  # side of the square output images, in pixels
    margin: float = 0.08  # free border around the photo, as a fraction of the side
    background: tuple[int, int, int] = (255, 255, 255)  # BGR
    quality: int = 95
    overwrite: bool = False


@dataclass(frozen=True)
class PhotosetResult:
    out: Path
    counts: dict[str, int]  # class -> images written


def stamps_dir(source: Path) -> Path:
    """SOURCE itself, or the Debian stamps folder inside an extracted .deb."""
    inside_deb = source / DEBIAN_DIR.relative_to("/")
    for candidate in (source, inside_deb):
        if (candidate / CLASSES["bird"]).is_dir():
            return candidate
    raise PhotosetError(
        f"no Tux Paint stamps ({CLASSES['bird']}/) in {source} or {inside_deb};"
        " install or extract the Debian package tuxpaint-stamps-default and pass --source"
    )


def photos_of(stamps: Path, folder: str) -> list[Path]:
    """The photo stamps under one class folder, sorted, without cartoons and drawings."""
    found = []
    for path in sorted((stamps / folder).rglob("*.png")):
        relative = path.relative_to(stamps)
        if "cartoon" not in relative.parts and relative.as_posix() not in NOT_PHOTOS:
            found.append(path)
    return found


def read_rgba(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise PhotosetError(f"{path}: expected a PNG with an alpha channel")
    return image


def crop_to_content(rgba: np.ndarray, path: Path) -> np.ndarray:
    """The smallest region holding every pixel that is not fully transparent."""
    rows = np.flatnonzero(rgba[:, :, 3].any(axis=1))
    cols = np.flatnonzero(rgba[:, :, 3].any(axis=0))
    if rows.size == 0:
        raise PhotosetError(f"{path}: the image is fully transparent")
    return rgba[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def composite(rgba: np.ndarray, options: PhotosetOptions) -> np.ndarray:
    """The photo scaled to fit the square with its margin, alpha-blended onto the background."""
    h, w = rgba.shape[:2]
    inner = round(options.size * (1 - 2 * options.margin))
    scale = inner / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(rgba, (new_w, new_h), interpolation=interpolation).astype(np.float32)
    canvas = np.empty((options.size, options.size, 3), np.float32)
    canvas[:] = options.background
    top, left = (options.size - new_h) // 2, (options.size - new_w) // 2
    alpha = resized[:, :, 3:] / 255.0
    region = canvas[top : top + new_h, left : left + new_w]
    region[:] = resized[:, :, :3] * alpha + region * (1 - alpha)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PhotosetError(f"OpenCV could not encode {path}")
    fd, tmp = tempfile.mkstemp(suffix=".jpg", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(encoded.tobytes())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def prepare_out(options: PhotosetOptions) -> None:
    targets = [options.out / name for name in CLASSES if (options.out / name).exists()]
    if any(any(target.iterdir()) for target in targets):
        if not options.overwrite:
            raise PhotosetError(f"{options.out} already holds class folders; pass --overwrite to replace")
        for target in targets:
            shutil.rmtree(target)


def build(options: PhotosetOptions) -> PhotosetResult:
    stamps = stamps_dir(options.source)
    plan = {name: photos_of(stamps, folder) for name, folder in CLASSES.items()}
    empty = [name for name, photos in plan.items() if not photos]
    if empty:
        raise PhotosetError(f"{stamps}: no photo stamps for class(es) {', '.join(empty)}")
    prepare_out(options)
    for name, photos in plan.items():
        folder = options.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for path in photos:
            flat = path.relative_to(stamps / CLASSES[name]).with_suffix(".jpg").as_posix().replace("/", "_")
            photo = crop_to_content(read_rgba(path), path)
            write_jpeg(folder / flat, composite(photo, options), options.quality)
    return PhotosetResult(options.out, {name: len(photos) for name, photos in plan.items()})


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows each option's default."""


def parse_args(argv: list[str] | None = None) -> PhotosetOptions:
    parser = argparse.ArgumentParser(
        prog="make_photoset.py", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("out", type=Path, help="output folder; one sub-folder per class is created in it")
    parser.add_argument(
        "--source",
        type=Path,
        default=DEBIAN_DIR,
        help="the Tux Paint stamps folder, or the root a .deb was extracted to",
    )
    parser.add_argument("--size", type=int, default=256, help="side of the square output images in pixels")
    parser.add_argument("--overwrite", action="store_true", help="replace existing class folders in OUT")
    args = parser.parse_args(argv)
    if args.size < 32:
        parser.error("--size must be at least 32")
    return PhotosetOptions(source=args.source, out=args.out, size=args.size, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        result = build(options)
    except PhotosetError as error:
        print(f"make_photoset: error: {error}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{count} {name}" for name, count in result.counts.items())
    print(f"wrote {sum(result.counts.values())} images to {result.out}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
