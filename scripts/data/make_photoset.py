"""Build a 5-class set of real colour photos from two Debian packages: Tux Paint stamps and GCompris.

Classes bird, mammal, fish, tool and monument, each a few dozen photos, 299 in all (Debian bookworm):

- tuxpaint-stamps-default (GPL-2+, Copyright 2002-2022 Bill Kendrick and the Tux Paint contributors):
  photographs of animals and tools cut out on a transparent background. Each is cropped to its visible
  part, centred on a white square and written as OUT/<class>/tux_<name>.jpg. Cartoon folders, the few
  drawn stamps and the stamps that are not of their folder's class (a lobster among the fish, a toolbox
  among the tools, a mirrored copy of another photo) are left out.
- gcompris-qt-data (GCompris, GPL-3+ code; its photos come from Wikimedia Commons and similar sites under
  public-domain, CC0, CC-BY or CC-BY-SA licences, named per file in the README beside them inside the
  package): whole-scene photos of animals (activities erase, explore_farm_animals, explore_world_animals),
  fish, tools and monuments (categorization, explore_monuments). They are read straight out of the Qt
  resource files (.rcc) the package installs and written unchanged as OUT/<class>/gc_<name>.webp.
  Landscapes without a building, marine mammals and photos that appear twice are left out.

Mixing the two keeps the background from giving a class away: birds, mammals, fish and tools come both
cut out on white and in their scene.

Get the packages (Debian/Ubuntu):

    apt-get install tuxpaint-stamps-default gcompris-qt-data     # files in /usr/share/{tuxpaint,gcompris-qt}
  or, without installing:
    apt-get download tuxpaint-stamps-default gcompris-qt-data
    for deb in tuxpaint-stamps-default_*.deb gcompris-qt-data_*.deb; do dpkg-deb -x $deb /tmp/debs; done
    python scripts/data/make_photoset.py --source /tmp/debs OUT

The images are not meant to be committed; build them where they are needed.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.files import write_bytes_atomic

TUX_DIR = Path("usr/share/tuxpaint/stamps")  # below --source
GCOMPRIS_DIR = Path("usr/share/gcompris-qt/rcc")
CLASSES = ("bird", "mammal", "fish", "tool", "monument")

# Tux Paint: class -> stamp folders (every photo below them, cartoon sub-folders excepted)
TUX = {
    "bird": ("animals/birds",),
    "mammal": ("animals/mammals",),
    "fish": ("animals/fish",),
    "tool": ("household/tools",),
}
TUX_LEFT_OUT = frozenset({
    "animals/mammals/aquatic/orca.png",  # drawn
    "animals/mammals/aquatic/whale.png",  # drawn
    "animals/mammals/bears/toys/edward_bear.png",  # a teddy bear, not a mammal
    "animals/mammals/echidna.png",  # drawn silhouette
    "animals/mammals/hedgehog.png",  # cartoon
    "animals/fish/lobster.png",  # not a fish
    "animals/fish/shrimp.png",  # not a fish
    "household/tools/cementmixer.png",  # a machine
    "household/tools/toolbox.png",  # holds tools
    "household/tools/measuring_tape_mirror.png",  # measuring_tape.png mirrored
})  # fmt: skip

# GCompris: class -> (resource file, folder inside it, the photos' names or None for all of them)
BIRDS = ("gosling", "heron", "kingfisher", "northern_harrier", "penguin", "spoonbills", "swans", "toucan",
         "chicken", "duck", "owl", "scarlet_macaw")
MAMMALS = ("alpaca", "calf", "camels", "cheetah", "flying_fox", "gibbon", "giraffe", "goat", "gorilla", "horse",
           "kitten", "long_nosed_monkey", "macaque", "meerkats", "nubian_ibex", "pika", "red_panda", "rhinoceros",
           "squirrel", "cat", "cow", "dog", "pig", "sheep", "bison", "hedgehog", "jaguar", "kangaroo", "koala",
           "lemur", "moose", "panda", "polar_bear")  # not dolphin and narwhal: a fish to anyone but a biologist
ANIMAL_FOLDERS = (("erase.rcc", "erase/resource"),
                  ("explore_farm_animals.rcc", "explore_farm_animals/resource/animals"),
                  ("explore_world_animals.rcc", "explore_world_animals/resource/animals"))
GCOMPRIS: dict[str, tuple[tuple[str, str, tuple[str, ...] | None], ...]] = {
    "bird": tuple((rcc, folder, BIRDS) for rcc, folder in ANIMAL_FOLDERS),
    "mammal": tuple((rcc, folder, MAMMALS) for rcc, folder in ANIMAL_FOLDERS),
    "fish": (("categorization.rcc", "categorization/resource/images/fishes", None),),
    "tool": (("categorization.rcc", "categorization/resource/images/tools", None),),
    "monument": (("categorization.rcc", "categorization/resource/images/monuments", None),
                 ("explore_monuments.rcc", "explore_monuments/resource", None)),
}
GCOMPRIS_LEFT_OUT = frozenset({
    "explore_monuments/resource/usa/canyondeChelly.webp",  # a canyon
    "explore_monuments/resource/usa/navajo.webp",  # a canyon
    "explore_monuments/resource/germany/brandenburgGate.webp",  # the same photo as in categorization
    "explore_monuments/resource/wonders/colosseum.webp",  # the same photo as in categorization
    "explore_monuments/resource/egypt/greatPyramidOfGiza.webp",  # the same photo as in categorization
})  # fmt: skip
ACTIVITIES = "gcompris/src/activities/"  # where the resource files keep the activities' folders


class PhotosetError(Exception):
    """A problem with the input or options that the user can fix; the message says what."""


@dataclass(frozen=True)
class PhotosetOptions:
    source: Path  # the root both packages are installed or extracted under
    out: Path
    size: int = 256  # side of the square images made from Tux Paint stamps, in pixels
    margin: float = 0.08  # free border around a stamp, as a fraction of the side
    background: tuple[int, int, int] = (255, 255, 255)  # BGR
    quality: int = 95
    overwrite: bool = False


@dataclass(frozen=True)
class PhotosetResult:
    out: Path
    counts: dict[str, int]  # class -> images written
    from_tux: int
    from_gcompris: int


def package_dirs(source: Path) -> tuple[Path, Path]:
    """The Tux Paint stamps folder and the GCompris resource folder below SOURCE."""
    tux, gcompris = source / TUX_DIR, source / GCOMPRIS_DIR
    for folder, package in ((tux, "tuxpaint-stamps-default"), (gcompris, "gcompris-qt-data")):
        if not folder.is_dir():
            raise PhotosetError(
                f"no {folder}: install the Debian package {package}, or extract its .deb"
                " (dpkg-deb -x) into one folder with the other and pass that folder as --source"
            )
    return tux, gcompris


# -- Tux Paint stamps: transparent PNGs, composited onto white ------------------------------------------------


def tux_photos(stamps: Path, folder: str) -> list[Path]:
    """The photo stamps under one folder, sorted, without cartoons, drawings and other classes."""
    found = []
    for path in sorted((stamps / folder).rglob("*.png")):
        relative = path.relative_to(stamps)
        if "cartoon" not in relative.parts and relative.as_posix() not in TUX_LEFT_OUT:
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


def jpeg(path: Path, image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PhotosetError(f"OpenCV could not encode {path}")
    return encoded.tobytes()


# -- GCompris: photos inside Qt resource files ----------------------------------------------------------------


def read_rcc(path: Path) -> dict[str, bytes]:
    """Every file in a Qt resource file (the binary .rcc format, versions 1-3), by its path inside it.

    Layout (Qt's rcc.cpp): a "qres" header with the offsets of a tree of fixed-size nodes, a data block and a
    names block. A node is a directory (child count, first child) or a file (data offset); a file's data
    may be zlib-compressed behind a 4-byte length (flag 1). Zstandard (flag 4) is not read.
    """
    blob = path.read_bytes()
    if blob[:4] != b"qres" or len(blob) < 20:
        raise PhotosetError(f"{path}: not a Qt resource file (no 'qres' header)")
    version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
    node_size = 22 if version >= 2 else 14
    files: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # after the length and a 4-byte hash
        return blob[start : start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        at = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", blob, at)
        here = f"{prefix}{name(name_offset)}" if index else ""
        if flags & 2:
            count, first = struct.unpack_from(">II", blob, at + 6)
            for child in range(first, first + count):
                walk(child, f"{here}/" if here else "")
            return
        (offset,) = struct.unpack_from(">I", blob, at + 10)
        (size,) = struct.unpack_from(">I", blob, data + offset)
        content = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & 4:
            raise PhotosetError(f"{path}: {here} is zstd-compressed, which this script does not read")
        files[here] = zlib.decompress(content[4:]) if flags & 1 else content

    try:
        walk(0, "")
    except (struct.error, zlib.error, UnicodeDecodeError, RecursionError) as error:
        raise PhotosetError(f"{path}: damaged Qt resource file ({error})") from None
    return files


def gcompris_photos(resources: Path, rcc: str, folder: str, names: tuple[str, ...] | None) -> dict[str, bytes]:
    """The .webp photos under FOLDER of one resource file (only NAMES, if given), by path below the activities."""
    path = resources / rcc
    if not path.is_file():
        raise PhotosetError(f"no {path}: is gcompris-qt-data complete?")
    found = {}
    for inside, content in sorted(read_rcc(path).items()):
        relative = inside.removeprefix(ACTIVITIES)
        if not relative.startswith(f"{folder}/") or not relative.endswith(".webp"):
            continue
        if relative in GCOMPRIS_LEFT_OUT or (names is not None and Path(relative).stem not in names):
            continue
        found[relative] = content
    return found


# -- the set ---------------------------------------------------------------------------------------------


def prepare_out(options: PhotosetOptions) -> None:
    targets = [options.out / name for name in CLASSES if (options.out / name).exists()]
    if any(any(target.iterdir()) for target in targets):
        if not options.overwrite:
            raise PhotosetError(f"{options.out} already holds class folders; pass --overwrite to replace")
        for target in targets:
            shutil.rmtree(target)


def flat(relative: str) -> str:
    """A path below a class's source folder as one file name: animals/x/y.png -> x_y."""
    return Path(relative).with_suffix("").as_posix().replace("/resource/", "/").replace("/", "_")


def plan(options: PhotosetOptions) -> dict[str, dict[str, Path | bytes]]:
    """Class -> output file name -> a Tux Paint stamp to composite, or GCompris bytes to copy."""
    stamps, resources = package_dirs(options.source)
    files: dict[str, dict[str, Path | bytes]] = {name: {} for name in CLASSES}
    for name, folders in TUX.items():
        for folder in folders:
            for path in tux_photos(stamps, folder):
                files[name][f"tux_{flat(path.relative_to(stamps / folder).as_posix())}.jpg"] = path
    for name, sources in GCOMPRIS.items():
        for rcc, folder, names in sources:
            for relative, content in gcompris_photos(resources, rcc, folder, names).items():
                files[name][f"gc_{flat(relative)}.webp"] = content
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise PhotosetError(f"{options.source}: no photos found for class(es) {', '.join(empty)}")
    return files


def build(options: PhotosetOptions) -> PhotosetResult:
    files = plan(options)
    prepare_out(options)
    for name, found in files.items():
        folder = options.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, source in found.items():
            if isinstance(source, Path):
                photo = composite(crop_to_content(read_rgba(source), source), options)
                source = jpeg(source, photo, options.quality)
            write_bytes_atomic(folder / file_name, source)
    tux = sum(isinstance(s, Path) for found in files.values() for s in found.values())
    total = sum(len(found) for found in files.values())
    return PhotosetResult(options.out, {name: len(found) for name, found in files.items()}, tux, total - tux)


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
        default=Path("/"),
        help=f"the root holding {TUX_DIR} and {GCOMPRIS_DIR}: / when the packages are installed,"
        " else the folder both .deb files were extracted to",
    )
    parser.add_argument("--size", type=int, default=256, help="side of the square Tux Paint images in pixels")
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
    print(f"wrote {sum(result.counts.values())} images to {result.out}: {summary}"
          f" ({result.from_tux} Tux Paint, {result.from_gcompris} GCompris)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
