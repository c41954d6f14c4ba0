"""Turn Debian's Fashion-MNIST package into an image-folder data set for `edgerec` training.

Writes OUT/train/<class>/NNNNN.png (drawn from the Fashion-MNIST *train* split) and
OUT/val/<class>/NNNNN.png (drawn from the *test* split), a fixed number of images per class,
chosen at random with a fixed seed, so the same command always gives the same files.
NNNNN is the image's index in its source split. Images are 28x28 grayscale PNGs.

Get the data (Debian/Ubuntu; Fashion-MNIST is MIT-licensed, Copyright 2017 Zalando SE):

    apt-get install dataset-fashion-mnist          # files land in /usr/share/datasets/fashion-mnist
  or, without installing:
    apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb /tmp/fmnist
    python scripts/data/fashion_mnist_to_folders.py --source /tmp/fmnist OUT
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
)  # fmt: skip
SPLITS = {"train": "train", "val": "t10k"}  # output split -> Fashion-MNIST file prefix
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ConversionError(Exception):
    """A problem with the input files or options that the user can fix; the message says what."""


@dataclass(frozen=True)
class ConvertOptions:
    source: Path
    out: Path
    train_per_class: int = 300
    val_per_class: int = 100
    seed: int = 0
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    counts: dict[str, int]  # split -> images written


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ConversionError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim :]
    if len(body) != dtype.itemsize * int(np.prod(shape)):
        raise ConversionError(f"{path}: header says shape {shape} but the file holds {len(body)} data bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def data_dir(source: Path) -> Path:
    """The folder holding the IDX files: SOURCE itself or, for an extracted .deb, the Debian path in it."""
    inside_deb = source / DEBIAN_DIR.relative_to("/")
    for candidate in (source, inside_deb):
        if any((candidate / f"train-labels-idx1-ubyte{ext}").exists() for ext in (".gz", "")):
            return candidate
    raise ConversionError(
        f"no Fashion-MNIST files (train-labels-idx1-ubyte[.gz]) in {source} or {inside_deb};"
        " install or extract the Debian package dataset-fashion-mnist and pass --source"
    )


def idx_file(folder: Path, name: str) -> Path:
    for path in (folder / f"{name}.gz", folder / name):
        if path.exists():
            return path
    raise ConversionError(f"missing {folder / name}[.gz]")


def load_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ConversionError(
            f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match"
        )
    return images, labels


def choose(labels: np.ndarray, per_class: int, rng: np.random.Generator, split: str) -> dict[int, np.ndarray]:
    """For each class, `per_class` distinct indices into the split, sorted."""
    chosen = {}
    for index, name in enumerate(CLASSES):
        pool = np.flatnonzero(labels == index)
        if len(pool) < per_class:
            raise ConversionError(
                f"{split}: class {name} has {len(pool)} images, fewer than the {per_class} asked for"
            )
        chosen[index] = np.sort(rng.choice(pool, size=per_class, replace=False))
    return chosen


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ConversionError(f"OpenCV could not encode {path}")
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(encoded.tobytes())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def planned(options: ConvertOptions) -> Iterator[tuple[str, np.ndarray, dict[int, np.ndarray]]]:
    """(split, images, chosen indices per class) for each output split, in order."""
    folder = data_dir(options.source)
    rng = np.random.default_rng(options.seed)
    per_class = {"train": options.train_per_class, "val": options.val_per_class}
    for split, prefix in SPLITS.items():
        images, labels = load_split(folder, prefix)
        yield split, images, choose(labels, per_class[split], rng, split)


def prepare_out(options: ConvertOptions) -> None:
    for split in SPLITS:
        target = options.out / split
        if target.exists() and any(target.iterdir()):
            if not options.overwrite:
                raise ConversionError(f"{target} exists and is not empty; pass --overwrite to replace it")
            shutil.rmtree(target)


def convert(options: ConvertOptions) -> ConvertResult:
    if options.train_per_class < 1 or options.val_per_class < 1:
        raise ConversionError("--train-per-class and --val-per-class must be at least 1")
    plan = list(planned(options))  # reads and checks every input before anything is written
    prepare_out(options)
    counts = {}
    for split, images, chosen in plan:
        total = sum(len(indices) for indices in chosen.values())
        with tqdm(total=total, desc=split, unit="img", disable=not options.progress) as bar:
            for label, indices in chosen.items():
                folder = options.out / split / CLASSES[label]
                folder.mkdir(parents=True, exist_ok=True)
                for index in indices:
                    write_png(folder / f"{index:05d}.png", images[index])
                    bar.update()
        counts[split] = total
    return ConvertResult(options.out, counts)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows each option's default."""


def parse_args(argv: list[str] | None = None) -> ConvertOptions:
    parser = argparse.ArgumentParser(
        prog="fashion_mnist_to_folders.py",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("out", type=Path, help="output folder; train/ and val/ are created in it")
    parser.add_argument(
        "--source",
        type=Path,
        default=DEBIAN_DIR,
        help="folder with the *-idx?-ubyte[.gz] files, or the root a .deb was extracted to",
    )
    parser.add_argument("--train-per-class", type=int, default=300, help="train images per class")
    parser.add_argument("--val-per-class", type=int, default=100, help="val images per class (test split)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the choice of images")
    parser.add_argument("--overwrite", action="store_true", help="replace non-empty OUT/train and OUT/val")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return ConvertOptions(
        source=args.source,
        out=args.out,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        result = convert(options)
    except ConversionError as error:
        print(f"fashion_mnist_to_folders: error: {error}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{count} {split}" for split, count in result.counts.items())
    print(f"wrote {summary} images in {len(CLASSES)} classes to {result.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
