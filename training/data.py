"""Image-folder datasets: scan, split, fingerprint, decode and augment.

A dataset is a folder with one subfolder per class (class index = position in the sorted names).
Images are .jpg/.jpeg/.png/.webp/.bmp (any case, any size, colour or grayscale) anywhere below a
class folder; names starting with "." are ignored (that listing lives in `edge/core/datasets.py`, shared with
`edgerec evaluate`). Every image is read and decoded once by the scan,
which is how corrupt files are found (listed in one warning and skipped) and how the fingerprint gets
each file's content hash from the same bytes.

Images are always handled as OpenCV gives them: uint8 HxWx3 BGR (`cv2.IMREAD_COLOR`, which also turns
grayscale and alpha images into 3-channel BGR and applies the EXIF orientation). The model takes
exactly that (uint8 NHWC BGR), so nothing here normalises.

This module needs neither torch nor tqdm (tqdm is imported only when a progress bar is asked for).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from edge.core.datasets import IMAGE_EXTENSIONS, Unreadable, image_problem, list_classes, list_images  # noqa: F401
from edge.core.decode import decode_bytes
from edge.core.metadata import DatasetInfo
from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError
from edge.tools.corruptions import random_corruption

FINGERPRINT_VERSION = "edgerec-data-v1"
WARNING_LIST_LIMIT = 20  # unreadable files named in the warning; the result holds all of them


@dataclass(frozen=True)
class DataOptions:
    """Where the images are and how to split them."""

    train_dir: Path
    val_dir: Path | None = None  # a separate validation folder; None = split train_dir
    val_fraction: float = 0.2  # share of each class held out for validation when val_dir is None
    seed: int = 0  # the split (and augmentation) depend only on this seed and the file names
    min_per_class: int = 2  # readable images a class needs in train_dir (a split needs 1 train + 1 val)
    workers: int | None = None  # decoding threads; None = number of CPU cores
    progress: bool = False  # show a tqdm bar (stderr) while scanning


@dataclass(frozen=True)
class Sample:
    """One readable image."""

    path: Path
    relpath: str  # POSIX path relative to the folder it was found in ("cats/img1.jpg")
    label: int
    size_bytes: int
    sha256: str  # of the file's bytes
    height: int  # decoded size (after EXIF orientation)
    width: int


@dataclass(frozen=True)
class FolderScan:
    """Everything found below one dataset folder."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]  # sorted by relpath
    unreadable: tuple[Unreadable, ...]
    ignored: tuple[str, ...]  # non-image files and files outside class folders (relpaths)

    def counts(self) -> tuple[int, ...]:
        """Readable images per class, in class order."""
        return tuple(np.bincount([s.label for s in self.samples], minlength=len(self.classes)).tolist())

    def fingerprint(self) -> str:
        """sha256 over the sorted (relpath, size, content sha256) of every readable image."""
        digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\n".encode())
        for s in self.samples:
            digest.update(f"{s.relpath}\t{s.size_bytes}\t{s.sha256}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class ImageFolders:
    """The result of `load_image_folders`: classes, the train/val split and what was found on the way."""

    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    fingerprint: str  # identifies the image data (not the split): see `load_image_folders`
    unreadable: tuple[Unreadable, ...]
    warning: str | None  # one message naming the unreadable files that were skipped, None if none
    ignored: tuple[str, ...]
    train_counts: tuple[int, ...]
    val_counts: tuple[int, ...]
    options: DataOptions = field(repr=False)

    @property
    def imbalance(self) -> float:
        """Largest over smallest number of training images in a class (1.0 = balanced)."""
        return max(self.train_counts) / min(self.train_counts)

    def manifest(self) -> list[dict[str, object]]:
        """One entry per image used: split, relative path, class index, size in bytes."""
        return [
            {"split": split, "path": s.relpath, "label": s.label, "size": s.size_bytes}
            for split, samples in (("train", self.train), ("val", self.val))
            for s in samples
        ]

    def dataset_info(self) -> DatasetInfo:
        """The model metadata's dataset entry: the training folder's name, fingerprint and sizes."""
        return DatasetInfo(Path(self.options.train_dir).name, self.fingerprint, len(self.train), len(self.val))

    def metadata(self) -> dict[str, object]:
        """A compact summary of the data and split settings (e.g. for the metadata's training settings)."""
        return {
            "fingerprint": self.fingerprint,
            "fingerprint_version": FINGERPRINT_VERSION,
            "classes": list(self.classes),
            "train_counts": list(self.train_counts),
            "val_counts": list(self.val_counts),
            "split": "folder" if self.options.val_dir is not None else "stratified",
            "val_fraction": None if self.options.val_dir is not None else self.options.val_fraction,
            "seed": self.options.seed,
            "unreadable_skipped": len(self.unreadable),
        }


def load_image_folders(options: DataOptions) -> ImageFolders:
    """Scan the training folder (and the validation folder, if any) and split the images.

    Errors (EdgerecError): a missing folder, fewer than two classes, validation classes that differ
    from the training classes, or a class with fewer than `min_per_class` readable images.
    The fingerprint is sha256 over the training folder's fingerprint and, with a separate validation
    folder, that folder's: it changes when any used image's name, size or content changes, never with
    mtimes, the seed or the split fraction (those are training settings, stored beside it).
    """
    if options.min_per_class < 1:
        raise EdgerecError(f"min_per_class must be at least 1, got {options.min_per_class}")
    if options.val_dir is None and not 0.0 < options.val_fraction < 1.0:
        raise EdgerecError(f"val_fraction must be between 0 and 1 (exclusive), got {options.val_fraction}")
    classes = list_classes(options.train_dir)
    if options.val_dir is not None:  # before the (long) scan of the training images
        _check_same_classes(options.val_dir, list_classes(options.val_dir, minimum=0), classes)
    train_scan = scan_folder(options.train_dir, classes, options.workers, options.progress)
    _check_counts(train_scan, options.min_per_class)
    if options.val_dir is None:
        val_scan = None
        train, val = stratified_split(train_scan.samples, options.val_fraction, options.seed)
    else:
        val_scan = scan_folder(options.val_dir, classes, options.workers, options.progress)
        _check_counts(val_scan, 1)
        train, val = train_scan.samples, val_scan.samples
    scans = [train_scan] if val_scan is None else [train_scan, val_scan]
    unreadable = tuple(u for scan in scans for u in scan.unreadable)
    n_classes = len(train_scan.classes)
    return ImageFolders(
        classes=train_scan.classes,
        train=train,
        val=val,
        fingerprint=_combine_fingerprints(train_scan, val_scan),
        unreadable=unreadable,
        warning=unreadable_warning(unreadable),
        ignored=tuple(i for scan in scans for i in scan.ignored),
        train_counts=_counts(train, n_classes),
        val_counts=_counts(val, n_classes),
        options=options,
    )


def scan_folder(
    root: Path,
    classes: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> FolderScan:
    """Read and decode every image below the class folders of `root` once.

    `classes` (default: `list_classes(root)`) name the class folders and give the labels' order.
    """
    root = Path(root)
    classes = list_classes(root) if classes is None else tuple(classes)
    files, ignored = list_images(root, classes)
    results = _map_threads(_inspect, [path for path, _ in files], workers, progress, f"scan {root.name}")
    samples, unreadable = [], []
    for (path, label), result in zip(files, results, strict=True):
        if isinstance(result, str):
            unreadable.append(Unreadable(path, result))
        else:
            size, sha, height, width = result
            samples.append(Sample(path, path.relative_to(root).as_posix(), label, size, sha, height, width))
    return FolderScan(root, classes, tuple(samples), tuple(unreadable), tuple(ignored))


def _check_same_classes(root: Path, found: tuple[str, ...], expected: tuple[str, ...]) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise EdgerecError(
            f"validation folder {root} must have the same class subfolders as the training folder: "
            f"missing {missing}, extra {extra}"
        )


def _inspect(path: Path) -> tuple[int, str, int, int] | str:
    """(size in bytes, sha256, height, width) of a readable image, or why it cannot be used."""
    try:
        data = path.read_bytes()
        image = decode_bytes(data, cv2.IMREAD_COLOR)
    except (OSError, cv2.error) as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
    if image is None:
        return (image_problem(data) or "not a decodable image") if data else "empty file"
    return len(data), hashlib.sha256(data).hexdigest(), image.shape[0], image.shape[1]


def _check_counts(scan: FolderScan, minimum: int) -> None:
    counts = scan.counts()
    short = [f"{name}={n}" for name, n in zip(scan.classes, counts, strict=True) if n < minimum]
    if short:
        skipped = f"; {len(scan.unreadable)} unreadable file(s) were skipped" if scan.unreadable else ""
        raise EdgerecError(
            f"too few images in {scan.root}: each class needs at least {minimum} readable image(s), "
            f"but {', '.join(short)} (of {len(counts)} classes){skipped}"
        )


def stratified_split(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Hold out round(val_fraction * n) images of each class (at least 1, at most n - 1, when n >= 2).

    Which images go to validation is decided by sorting each class on sha256(seed, relpath): the same
    seed and names give the same split, and adding or removing a file moves few others.
    """
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted({s.label for s in samples}):
        members = sorted((s for s in samples if s.label == label), key=lambda s: _split_key(seed, s.relpath))
        n = len(members)
        n_val = min(max(round(val_fraction * n), 1), n - 1) if n >= 2 else 0
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    by_path = lambda s: s.relpath  # noqa: E731
    return tuple(sorted(train, key=by_path)), tuple(sorted(val, key=by_path))


def _split_key(seed: int, relpath: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{relpath}".encode()).digest()


def _combine_fingerprints(train: FolderScan, val: FolderScan | None) -> str:
    parts = f"train {train.fingerprint()}" + ("" if val is None else f"\nval {val.fingerprint()}")
    return hashlib.sha256(parts.encode()).hexdigest()


def _counts(samples: Sequence[Sample], n_classes: int) -> tuple[int, ...]:
    return tuple(np.bincount([s.label for s in samples], minlength=n_classes).tolist())


def unreadable_warning(unreadable: Sequence[Unreadable]) -> str | None:
    """One message listing skipped files (the first WARNING_LIST_LIMIT of them), or None."""
    if not unreadable:
        return None
    listed = ", ".join(f"{u.path} ({u.reason})" for u in unreadable[:WARNING_LIST_LIMIT])
    more = len(unreadable) - WARNING_LIST_LIMIT
    return f"skipped {len(unreadable)} unreadable image file(s): {listed}" + (
        f", and {more} more" if more > 0 else ""
    )


# ---------------------------------------------------------------------------------------------------
# Decoding and augmentation


@dataclass(frozen=True)
class Augment:
    """Training augmentation, applied to the decoded image (OpenCV + numpy)."""

    scale: tuple[float, float] = (0.35, 1.0)  # random resized crop: share of the image's area
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # ... and aspect ratio, relative to the network's
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.2  # colour jitter: factors drawn from [1 - x, 1 + x]
    contrast: float = 0.2
    saturation: float = 0.2
    rotation: float = 10.0  # degrees, drawn from [-x, x]
    camera: float = 0.0  # probability of one random camera corruption (edge.tools.corruptions) at a random severity
    corruptions: tuple[str, ...] | None = None  # the corruptions it draws from; None = every one


def augment(image: np.ndarray, geometry: Geometry, options: Augment, rng: np.random.Generator) -> np.ndarray:
    """A random view of a uint8 HxWx3 BGR image: uint8 [geometry.height, geometry.width, 3] BGR.

    A camera corruption, when drawn, is applied to the whole photo first, as `edgerec evaluate
    --robustness` and a real camera apply it: before the crop."""
    if options.camera > 0 and rng.random() < options.camera:
        image = random_corruption(image, rng, options.corruptions)
    out = random_resized_crop(image, geometry, options.scale, options.ratio, rng)
    if rng.random() < options.flip:
        out = cv2.flip(out, 1)
    if options.rotation > 0:
        out = _rotate(out, rng.uniform(-options.rotation, options.rotation))
    return colour_jitter(out, options, rng)


def random_resized_crop(
    image: np.ndarray,
    geometry: Geometry,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Crop a random region (area share in `scale`, aspect in `ratio` times the network's), resize it."""
    h, w = image.shape[:2]
    net_aspect = geometry.width / geometry.height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = net_aspect * math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return _resize(image[y : y + ch, x : x + cw], geometry)
    return fit(image, Geometry(geometry.height, geometry.width, crop=1.0))  # no fit found: whole centre


def _resize(region: np.ndarray, geometry: Geometry) -> np.ndarray:
    shrinking = region.shape[0] > geometry.height or region.shape[1] > geometry.width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(region, (geometry.width, geometry.height), interpolation=interpolation)


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


_GRAY_WEIGHTS = np.array([0.114, 0.587, 0.299])  # B, G, R (ITU-R BT.601 luma)


def colour_jitter(image: np.ndarray, options: Augment, rng: np.random.Generator) -> np.ndarray:
    """Scale brightness, contrast (around the mean luma) and saturation (around each pixel's luma).

    The three steps compose to one affine colour map, applied by cv2.transform with uint8 saturation:
    x -> b*c*(s*x + (1-s)*luma(x)) + (1-c)*b*mean_luma.
    """
    b, c, s = (rng.uniform(1 - x, 1 + x) for x in (options.brightness, options.contrast, options.saturation))
    mean_luma = float(np.dot(cv2.mean(image)[:3], _GRAY_WEIGHTS))
    linear = b * c * (s * np.eye(3) + (1 - s) * np.outer(np.ones(3), _GRAY_WEIGHTS))
    offset = np.full((3, 1), (1 - c) * b * mean_luma)
    return cv2.transform(image, np.hstack([linear, offset]))


def decode(path: Path, reduce: int = 1) -> np.ndarray:
    """uint8 HxWx3 BGR; `reduce` 2, 4 or 8 decodes a JPEG at that fraction of its size (much faster)."""
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]  # fmt: skip
    try:
        image = decode_bytes(Path(path).read_bytes(), flags)
    except (OSError, cv2.error) as exc:
        raise EdgerecError(f"cannot read image {path}: {exc}") from exc
    if image is None:
        raise EdgerecError(f"cannot decode image {path} (did it change since the dataset was scanned?)")
    return image


def jpeg_reduction(sample: Sample, geometry: Geometry, augmentation: Augment) -> int:
    """The largest JPEG decode reduction (1, 2, 4, 8) that keeps the smallest random crop at least as
    large as the network input, so reduced decoding never costs resolution. 1 for other formats."""
    if Path(sample.relpath).suffix.lower() not in (".jpg", ".jpeg"):
        return 1
    narrowest = min(augmentation.ratio[0], 1 / augmentation.ratio[1])  # crop side vs sqrt(area), at worst
    needed = max(geometry.height, geometry.width) / math.sqrt(augmentation.scale[0] * narrowest)
    short_side = min(sample.height, sample.width)
    return next((k for k in (8, 4, 2) if short_side / k >= needed), 1)


def load_view(
    sample: Sample, geometry: Geometry, augmentation: Augment | None, rng: np.random.Generator | None
) -> np.ndarray:
    """The network input for one sample: `fit` (evaluation) or a random augmented view (training)."""
    if augmentation is None:
        return fit(decode(sample.path), geometry)
    if rng is None:
        raise ValueError("an augmented view needs a random generator")
    reduce = jpeg_reduction(sample, geometry, augmentation)
    return augment(decode(sample.path, reduce), geometry, augmentation, rng)


def view_rng(seed: int, view: int, index: int) -> np.random.Generator:
    """The random generator of augmented view `view` (an epoch, say) of sample `index`."""
    return np.random.default_rng((seed, view, index))


class ImageDataset:
    """A map-style dataset of (uint8 [H, W, 3] BGR array, label) pairs for a torch DataLoader, whose
    default collate makes them uint8 [B, H, W, 3] and int64 [B] tensors; decoding happens in its workers.

    With `augmentation`, item i of epoch e is the random view drawn from view_rng(seed, e, i), so the
    data seen do not depend on the number of workers. Call `set_epoch` before each epoch (with
    non-persistent workers, which copy the dataset at the start of each epoch). Forked workers may
    use OpenCV freely, but must not call cv2.setNumThreads: it deadlocked in a forked child here.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        geometry: Geometry,
        augmentation: Augment | None = None,
        seed: int = 0,
    ) -> None:
        self.samples = tuple(samples)
        self.geometry = geometry
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        rng = None if self.augmentation is None else view_rng(self.seed, self.epoch, index)
        image = load_view(self.samples[index], self.geometry, self.augmentation, rng)
        return image, self.samples[index].label


def load_images(
    samples: Sequence[Sample],
    geometry: Geometry,
    augmentation: Augment | None = None,
    seed: int = 0,
    view: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Decode every sample once into one uint8 [N, H, W, 3] BGR array (for caching features).

    Without `augmentation` each image is `fit` (the evaluation view); with it, view `view` of each
    sample is the same one `ImageDataset` yields in epoch `view`.
    """
    images = np.empty((len(samples), geometry.height, geometry.width, 3), np.uint8)

    def load(index: int) -> None:
        sample = samples[index]
        if augmentation is None:
            fit(decode(sample.path), geometry, out=images[index])
        else:
            images[index] = load_view(sample, geometry, augmentation, view_rng(seed, view, index))

    _map_threads(load, range(len(samples)), workers, progress, "decode")
    return images


T = TypeVar("T")
R = TypeVar("R")


def _map_threads(
    function: Callable[[T], R], items: Sequence[T], workers: int | None, progress: bool, desc: str
) -> list[R]:
    """`function` over `items` in a thread pool (OpenCV and hashlib release the GIL), in order."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(function, items)
        if not progress:
            return list(results)
        from tqdm import tqdm  # only here: the runtime (no [train] extra) scans folders without it

        return list(tqdm(results, total=len(items), desc=desc, unit="img"))
