"""scripts/data/fashion_mnist_to_folders.py on a tiny fake Fashion-MNIST written in the IDX format."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "data" / "fashion_mnist_to_folders.py"
spec = importlib.util.spec_from_file_location("fashion_mnist_to_folders", SCRIPT)
fm = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fm
spec.loader.exec_module(fm)

PER_CLASS = {"train": 4, "t10k": 3}  # images per class in the fake splits
SIZE = 6  # fake images are SIZE x SIZE


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    return header + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()


def fake_split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels cycle through the 10 classes; every image is distinct and encodes its own index."""
    count = 10 * PER_CLASS[prefix]
    labels = (np.arange(count) % 10).astype(np.uint8)
    rng = np.random.default_rng(len(prefix))
    images = rng.integers(0, 256, size=(count, SIZE, SIZE), dtype=np.uint8)
    images[:, 0, 0] = np.arange(count)
    return images, labels


def write_fake(folder: Path, compress: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for prefix in PER_CLASS:
        images, labels = fake_split(prefix)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = folder / f"{prefix}-{kind}-ubyte"
            data = idx_bytes(array)
            if compress:
                name.with_name(name.name + ".gz").write_bytes(gzip.compress(data))
            else:
                name.write_bytes(data)
        splits[prefix] = (images, labels)
    return splits


def options(source: Path, out: Path, **changes) -> fm.ConvertOptions:
    values = dict(source=source, out=out, train_per_class=3, val_per_class=2, seed=0, progress=False)
    values.update(changes)
    return fm.ConvertOptions(**values)


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_layout_counts_and_content(tmp_path: Path) -> None:
    splits = write_fake(tmp_path / "src", compress=True)
    result = fm.convert(options(tmp_path / "src", tmp_path / "out"))

    assert result.counts == {"train": 30, "val": 20}
    for split, prefix, per_class in (("train", "train", 3), ("val", "t10k", 2)):
        images, labels = splits[prefix]
        assert sorted(p.name for p in (tmp_path / "out" / split).iterdir()) == sorted(fm.CLASSES)
        for label, name in enumerate(fm.CLASSES):
            files = sorted((tmp_path / "out" / split / name).glob("*.png"))
            assert len(files) == per_class
            for path in files:
                assert len(path.stem) == 5
                index = int(path.stem)
                assert labels[index] == label
                np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), images[index])


def test_same_seed_same_files_other_seed_other_choice(tmp_path: Path) -> None:
    write_fake(tmp_path / "src", compress=False)
    fm.convert(options(tmp_path / "src", tmp_path / "a"))
    fm.convert(options(tmp_path / "src", tmp_path / "b"))
    fm.convert(options(tmp_path / "src", tmp_path / "c", seed=1))

    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert set(tree(tmp_path / "a")) != set(tree(tmp_path / "c"))


def test_finds_files_inside_an_extracted_deb(tmp_path: Path) -> None:
    write_fake(tmp_path / "deb" / "usr" / "share" / "datasets" / "fashion-mnist", compress=True)
    result = fm.convert(options(tmp_path / "deb", tmp_path / "out", train_per_class=1, val_per_class=1))
    assert result.counts == {"train": 10, "val": 10}


def test_asking_for_more_than_a_class_holds_fails_before_writing(tmp_path: Path) -> None:
    write_fake(tmp_path / "src", compress=True)
    with pytest.raises(fm.ConversionError, match="val: class T-shirt_top has 3 images, fewer than the 5"):
        fm.convert(options(tmp_path / "src", tmp_path / "out", val_per_class=5))
    assert not (tmp_path / "out").exists()


def test_refuses_non_empty_output_unless_overwrite(tmp_path: Path) -> None:
    write_fake(tmp_path / "src", compress=True)
    stale = tmp_path / "out" / "train" / "Bag" / "stale.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")

    with pytest.raises(fm.ConversionError, match="pass --overwrite"):
        fm.convert(options(tmp_path / "src", tmp_path / "out"))
    fm.convert(options(tmp_path / "src", tmp_path / "out", overwrite=True))
    assert not stale.exists()
    assert len(list((tmp_path / "out" / "train").rglob("*.png"))) == 30


def test_read_idx_rejects_bad_magic_and_wrong_length(tmp_path: Path) -> None:
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((4, 3), np.uint8))[:-1])
    with pytest.raises(fm.ConversionError, match="not an IDX file"):
        fm.read_idx(bad_magic)
    with pytest.raises(fm.ConversionError, match=r"header says shape \(4, 3\)"):
        fm.read_idx(short)


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    array = np.arange(-6, 6, dtype=">i4").reshape(2, 3, 2)
    path = tmp_path / "ints.gz"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(fm.read_idx(path), array)


def test_main_reports_missing_source_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = fm.main(["--quiet", "--source", str(tmp_path / "nowhere"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fashion_mnist_to_folders: error: no Fashion-MNIST files")
    assert err.count("\n") == 1
