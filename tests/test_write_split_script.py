"""scripts/data/write_split.py writes the very split `edgerec train` makes, in the listing order evaluate uses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_script

from edge.core.datasets import list_images
from training.data import DataOptions, load_image_folders

split = load_script("write_split")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name, count in (("cats", 7), ("dogs", 5), ("owls", 4)):
        (root / name / "sub").mkdir(parents=True)
        for i in range(count):
            folder = root / name / ("sub" if i % 3 == 0 else "")
            cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    (root / "owls" / "broken.jpg").write_bytes(b"not an image")
    return root


@pytest.mark.parametrize(("fraction", "seed"), [(0.2, 0), (0.5, 3)])
def test_the_folders_hold_the_training_split(photos: Path, tmp_path: Path, fraction: float, seed: int):
    out = tmp_path / f"split-{seed}"
    assert split.main([str(photos), str(out), "--val-fraction", str(fraction), "--seed", str(seed)]) == 0
    data = load_image_folders(DataOptions(photos, None, fraction, seed))
    for folder, samples in (("train", data.train), ("val", data.val)):
        listed, _ = list_images(out / folder, data.classes)
        assert [p.relative_to(out / folder).as_posix() for p, _ in listed] == [s.relpath for s in samples]
        assert [label for _, label in listed] == [s.label for s in samples]
        assert all((out / folder / s.relpath).read_bytes() == s.path.read_bytes() for s in samples)
    assert not (out / "val" / "owls" / "broken.jpg").exists() and not list(tmp_path.glob(".split-*"))


def test_an_existing_folder_is_refused(photos: Path, tmp_path: Path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="exists"):
        split.main([str(photos), str(tmp_path / "taken")])
