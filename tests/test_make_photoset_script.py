"""scripts/make_photoset.py on a tiny fake Tux Paint stamps tree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_photoset.py"
spec = importlib.util.spec_from_file_location("make_photoset", SCRIPT)
ps = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = ps
spec.loader.exec_module(ps)

RED = (0, 0, 255)


def stamp(path: Path, height: int = 40, width: int = 20) -> None:
    """A red opaque rectangle of height x width in the middle of a larger transparent PNG."""
    image = np.zeros((height + 30, width + 10, 4), np.uint8)
    image[10 : 10 + height, 5 : 5 + width] = (*RED, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def fake_stamps(root: Path) -> None:
    for folder in ps.CLASSES.values():
        stamp(root / folder / "a.png")
        stamp(root / folder / "sub" / "b.png")
        stamp(root / folder / "cartoon" / "c.png")
    for relative in ps.NOT_PHOTOS:
        stamp(root / relative)


def test_builds_one_folder_per_class_without_cartoons_or_drawings(tmp_path: Path) -> None:
    fake_stamps(tmp_path / "deb" / "usr" / "share" / "tuxpaint" / "stamps")
    options = ps.PhotosetOptions(source=tmp_path / "deb", out=tmp_path / "out", size=64)
    result = ps.build(options)

    assert result.counts == dict.fromkeys(ps.CLASSES, 2)
    for name in ps.CLASSES:
        assert sorted(p.name for p in (tmp_path / "out" / name).iterdir()) == ["a.jpg", "sub_b.jpg"]


def test_photo_is_cropped_scaled_and_centred_on_white(tmp_path: Path) -> None:
    fake_stamps(tmp_path / "stamps")
    ps.build(ps.PhotosetOptions(source=tmp_path / "stamps", out=tmp_path / "out", size=100, margin=0.1))
    image = cv2.imread(str(tmp_path / "out" / "fruit" / "a.jpg"))

    assert image.shape == (100, 100, 3)
    # The 40x20 opaque part fills the 80-pixel inner height: rows 10..89, columns 30..69.
    np.testing.assert_allclose(image[50, 50], RED, atol=12)
    np.testing.assert_allclose(image[12, 50], RED, atol=12)
    np.testing.assert_allclose(image[50, 10], (255, 255, 255), atol=12)
    np.testing.assert_allclose(image[5, 50], (255, 255, 255), atol=12)


def test_refuses_existing_class_folders_unless_overwrite(tmp_path: Path) -> None:
    fake_stamps(tmp_path / "stamps")
    stale = tmp_path / "out" / "bird" / "old.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    options = ps.PhotosetOptions(source=tmp_path / "stamps", out=tmp_path / "out", size=64)

    with pytest.raises(ps.PhotosetError, match="pass --overwrite"):
        ps.build(options)
    ps.build(ps.PhotosetOptions(source=options.source, out=options.out, size=64, overwrite=True))
    assert not stale.exists()


def test_main_reports_missing_stamps_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = ps.main(["--source", str(tmp_path), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("make_photoset: error: no Tux Paint stamps")
    assert err.count("\n") == 1
