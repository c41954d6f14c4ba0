"""training/data.py on a tiny image folder generated per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError
from training.data import (
    Augment,
    DataOptions,
    ImageDataset,
    augment,
    decode,
    jpeg_reduction,
    load_image_folders,
    load_images,
    scan_folder,
)

CLASSES = ("cat", "dog", "fish")
GEOMETRY = Geometry(32, 40)


def _image(label: int, index: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A distinct synthetic colour image: class colour plus a per-image gradient and noise."""
    rng = np.random.default_rng((label, index))
    h, w = size
    colour = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][label], np.float32)
    ramp = np.linspace(0, 50, w, dtype=np.float32)[None, :, None]
    image = colour + ramp + rng.normal(0, 10, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix if path.suffix.lower() != ".jpg" else ".jpg", image)
    assert ok
    path.write_bytes(data.tobytes())


def make_dataset(root: Path, per_class: int = 6) -> Path:
    """cat/dog/fish with `per_class` readable images each, in mixed formats, plus files to skip or ignore."""
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            suffix = [".jpg", ".png", ".JPG", ".webp", ".bmp", ".jpeg"][i % 6]
            _write(root / name / f"{name}{i:02d}{suffix}", _image(label, i))
    _write(root / "dog" / "gray.png", cv2.cvtColor(_image(1, 99), cv2.COLOR_BGR2GRAY))  # grayscale
    (root / "dog" / "gray.png").rename(root / "dog" / "dog99.png")
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")  # corrupt
    (root / "fish" / "empty.png").write_bytes(b"")  # unreadable: empty
    _write(root / "cat" / ".hidden.jpg", _image(0, 50))  # hidden: ignored
    _write(root / "cat" / ".thumbs" / "x.jpg", _image(0, 51))  # hidden folder: ignored
    (root / "fish" / "notes.txt").write_text("not an image")  # ignored
    (root / ".git").mkdir()  # hidden folder at the top: not a class
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


def test_scan_decodes_all_formats_and_skips_corrupt_files(data_dir: Path) -> None:
    data = load_image_folders(DataOptions(data_dir))
    assert data.classes == CLASSES
    names = {s.relpath for s in data.train + data.val}
    assert len(names) == 6 * 3 + 1
    assert "dog/dog99.png" in names and "cat/cat02.JPG" in names and "dog/dog03.webp" in names
    assert not any("hidden" in n or ".thumbs" in n for n in names)
    assert {u.path.name for u in data.unreadable} == {"broken.jpg", "empty.png"}
    assert data.warning is not None and data.warning.count("\n") == 0
    assert "broken.jpg" in data.warning and "empty.png" in data.warning and "skipped 2" in data.warning
    assert data.ignored == ("fish/notes.txt",)
    gray = next(s for s in data.train + data.val if s.relpath == "dog/dog99.png")
    assert (gray.height, gray.width) == (48, 64) and gray.label == 1
    assert decode(gray.path).shape == (48, 64, 3)


def test_no_warning_when_everything_reads(tmp_path: Path) -> None:
    root = tmp_path / "clean"
    for label, name in enumerate(CLASSES[:2]):
        for i in range(3):
            _write(root / name / f"{i}.png", _image(label, i))
    data = load_image_folders(DataOptions(root))
    assert data.warning is None and data.unreadable == ()


def test_warning_lists_at_most_twenty_files(data_dir: Path) -> None:
    for i in range(30):
        (data_dir / "fish" / f"bad{i:02d}.jpg").write_bytes(b"junk")
    data = load_image_folders(DataOptions(data_dir))
    assert len(data.unreadable) == 32
    assert "skipped 32 unreadable" in data.warning and data.warning.endswith("and 12 more")


def test_too_few_images_is_an_error_with_the_counts(data_dir: Path) -> None:
    for path in (data_dir / "fish").iterdir():
        if path.name != "fish00.jpg":
            path.unlink()
    with pytest.raises(EdgerecError, match=r"at least 2 readable.*fish=1 \(of 3 classes\)"):
        load_image_folders(DataOptions(data_dir))
    with pytest.raises(EdgerecError, match=r"cat=6, dog=7, fish=1"):
        load_image_folders(DataOptions(data_dir, min_per_class=8))
    assert load_image_folders(DataOptions(data_dir, min_per_class=1)).train_counts[2] == 1


def test_folder_errors(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(EdgerecError, match="does not exist"):
        load_image_folders(DataOptions(tmp_path / "nope"))
    single = tmp_path / "single"
    _write(single / "only" / "a.png", _image(0, 0))
    with pytest.raises(EdgerecError, match="at least 2 class subfolders"):
        load_image_folders(DataOptions(single))
    with pytest.raises(EdgerecError, match="val_fraction"):
        load_image_folders(DataOptions(data_dir, val_fraction=1.0))


def test_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "big", per_class=10)
    a = load_image_folders(DataOptions(root, val_fraction=0.3, seed=1))
    b = load_image_folders(DataOptions(root, val_fraction=0.3, seed=1))
    c = load_image_folders(DataOptions(root, val_fraction=0.3, seed=2))
    assert [s.relpath for s in a.val] == [s.relpath for s in b.val]
    assert [s.relpath for s in a.val] != [s.relpath for s in c.val]
    assert a.val_counts == (3, 3, 3) and a.train_counts == (7, 8, 7)  # dog has the extra gray image
    assert not {s.relpath for s in a.train} & {s.relpath for s in a.val}
    assert a.fingerprint == c.fingerprint  # the split is not part of the data's identity
    assert a.imbalance == pytest.approx(8 / 7)


def test_every_class_with_two_images_gets_one_val_image(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    for label, name in enumerate(CLASSES):
        for i in range(2):
            _write(root / name / f"{i}.png", _image(label, i))
    data = load_image_folders(DataOptions(root, val_fraction=0.01))
    assert data.val_counts == (1, 1, 1) and data.train_counts == (1, 1, 1)


def test_separate_val_folder(tmp_path: Path, data_dir: Path) -> None:
    val_dir = tmp_path / "val"
    for label, name in enumerate(CLASSES):
        _write(val_dir / name / "v.png", _image(label, 70))
    data = load_image_folders(DataOptions(data_dir, val_dir=val_dir))
    assert [s.label for s in data.val] == [0, 1, 2] and data.val_counts == (1, 1, 1)
    assert len(data.train) == 19 and data.metadata()["split"] == "folder"
    assert data.fingerprint != load_image_folders(DataOptions(data_dir)).fingerprint


def test_val_folder_with_other_classes_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    val_dir = tmp_path / "val"
    for name in ("bird", "cat", "dog"):
        _write(val_dir / name / "v.png", _image(0, 70))
    with pytest.raises(EdgerecError, match=r"missing \['fish'\], extra \['bird'\]"):
        load_image_folders(DataOptions(data_dir, val_dir=val_dir))


def test_val_folder_with_an_empty_class_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    val_dir = tmp_path / "val"
    for label, name in enumerate(CLASSES):
        (val_dir / name).mkdir(parents=True)
        if name != "dog":
            _write(val_dir / name / "v.png", _image(label, 70))
    with pytest.raises(EdgerecError, match=r"dog=0"):
        load_image_folders(DataOptions(data_dir, val_dir=val_dir))


def test_fingerprint_follows_content_not_mtime(data_dir: Path) -> None:
    first = scan_folder(data_dir).fingerprint()
    target = data_dir / "cat" / "cat01.png"
    os.utime(target, (1, 1))
    assert scan_folder(data_dir).fingerprint() == first
    _write(target, _image(0, 1)[::-1].copy())  # same size and format, different pixels
    changed = scan_folder(data_dir).fingerprint()
    assert changed != first
    target.rename(data_dir / "cat" / "renamed.png")
    assert scan_folder(data_dir).fingerprint() not in (first, changed)


def test_manifest_and_metadata(data_dir: Path) -> None:
    data = load_image_folders(DataOptions(data_dir, seed=3))
    manifest = data.manifest()
    assert len(manifest) == len(data.train) + len(data.val)
    entry = next(e for e in manifest if e["path"] == "dog/dog99.png")
    assert entry["label"] == 1 and entry["size"] == (data_dir / "dog" / "dog99.png").stat().st_size
    info = data.dataset_info()
    assert (info.name, info.fingerprint, info.num_train, info.num_val) == ("data", data.fingerprint, 16, 3)
    meta = data.metadata()
    assert meta["fingerprint"] == data.fingerprint and meta["classes"] == list(CLASSES)
    assert meta["seed"] == 3 and meta["unreadable_skipped"] == 2


def test_augment_shape_dtype_and_determinism() -> None:
    image = _image(2, 0, size=(120, 90))
    options = Augment()
    a = augment(image, GEOMETRY, options, np.random.default_rng(5))
    b = augment(image, GEOMETRY, options, np.random.default_rng(5))
    c = augment(image, GEOMETRY, options, np.random.default_rng(6))
    assert a.shape == (32, 40, 3) and a.dtype == np.uint8 and a.flags.c_contiguous
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_augment_without_randomness_is_a_resize() -> None:
    image = _image(0, 0, size=(64, 80))
    still = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, brightness=0, contrast=0,
                    saturation=0, rotation=0)  # fmt: skip
    out = augment(image, GEOMETRY, still, np.random.default_rng(0))
    expected = fit(image, Geometry(32, 40, crop=1.0))
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_colour_jitter_keeps_gray_gray() -> None:
    gray = cv2.cvtColor(cv2.cvtColor(_image(0, 0), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    out = augment(gray, GEOMETRY, Augment(), np.random.default_rng(1))
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 1


def test_jpeg_reduction_keeps_enough_pixels(tmp_path: Path) -> None:
    root = tmp_path / "large"
    _write(root / "a" / "big.jpg", _image(0, 0, size=(800, 1000)))
    _write(root / "a" / "big.png", _image(0, 0, size=(800, 1000)))
    _write(root / "b" / "small.jpg", _image(1, 0))
    samples = {s.relpath: s for s in scan_folder(root).samples}
    geometry, square = Geometry(100, 100), Augment(scale=(0.25, 1.0), ratio=(1.0, 1.0))
    assert jpeg_reduction(samples["a/big.jpg"], geometry, square) == 4  # 800/4 = 200 >= 100/sqrt(.25)
    assert jpeg_reduction(samples["a/big.jpg"], geometry, Augment(scale=(0.25, 1.0))) == 2  # 4:3 crops
    assert jpeg_reduction(samples["a/big.png"], geometry, square) == 1
    assert jpeg_reduction(samples["b/small.jpg"], geometry, square) == 1
    assert decode(samples["a/big.jpg"].path, 4).shape == (200, 250, 3)


def test_dataloader_with_two_workers_matches_in_process(data_dir: Path) -> None:
    data = load_image_folders(DataOptions(data_dir))
    dataset = ImageDataset(data.train, GEOMETRY, Augment(), seed=7)
    dataset.set_epoch(3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert images.shape == (len(data.train), 32, 40, 3) and images.dtype == torch.uint8
    assert labels.tolist() == [s.label for s in data.train]
    in_process = np.stack([dataset[i][0] for i in range(len(dataset))])
    assert np.array_equal(images.numpy(), in_process)  # the view depends on (seed, epoch, index) only
    dataset.set_epoch(4)
    assert not np.array_equal(dataset[0][0], in_process[0])


def test_load_images_matches_the_dataset(data_dir: Path) -> None:
    data = load_image_folders(DataOptions(data_dir))
    fitted = load_images(data.val, GEOMETRY, workers=2)
    assert fitted.shape == (len(data.val), 32, 40, 3) and fitted.dtype == np.uint8
    eval_set = ImageDataset(data.val, GEOMETRY)
    assert all(np.array_equal(fitted[i], eval_set[i][0]) for i in range(len(data.val)))
    views = load_images(data.train, GEOMETRY, Augment(), seed=7, view=2)
    train_set = ImageDataset(data.train, GEOMETRY, Augment(), seed=7)
    train_set.set_epoch(2)
    assert np.array_equal(views[5], train_set[5][0])


def test_changed_file_after_scan_is_a_clear_error(data_dir: Path) -> None:
    data = load_image_folders(DataOptions(data_dir))
    data.train[0].path.write_bytes(b"garbage")
    with pytest.raises(EdgerecError, match="cannot decode image"):
        load_images(data.train[:1], GEOMETRY)


def test_scanning_needs_neither_torch_nor_tqdm(data_dir: Path) -> None:
    """A runtime-only install (no [train] extra) can scan and decode folders for evaluation."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['tqdm'] = None\n"
        "from training.data import DataOptions, load_image_folders, load_images\n"
        "from edge.core.preprocess import Geometry\n"
        f"data = load_image_folders(DataOptions({str(data_dir)!r}))\n"
        "print(load_images(data.val, Geometry(8, 8)).shape)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("(")
