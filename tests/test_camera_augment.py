"""`edgerec train --augment camera` (the default kind of augmented views): the views also draw a camera corruption
(edge.tools.corruptions)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS

from edge.app.cli import build_parser, main
from edge.app.train_args import train_kwargs
from edge.core.preprocess import Geometry
from edge.errors import EdgerecError
from training.data import Augment, augment
from training.train import TrainOptions, check_options

SQUIRREL = cv2.imread(str(PHOTOS / "squirrel_cls.jpg"), cv2.IMREAD_COLOR)
NET = Geometry(224, 224)
PLAIN = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, brightness=0.0, contrast=0.0, saturation=0.0,
                rotation=0.0)


def test_a_camera_view_is_corrupted_before_the_crop():
    """With every other augmentation off the plain view is the centre region resized; the camera view of
    the same generator differs from it, and the same seed gives the same corrupted view."""
    plain = augment(SQUIRREL, NET, PLAIN, np.random.default_rng(1))
    camera = Augment(**{**vars(PLAIN), "camera": 1.0})
    first = augment(SQUIRREL, NET, camera, np.random.default_rng(1))
    assert first.shape == plain.shape == (224, 224, 3)
    assert not np.array_equal(first, plain)
    assert np.array_equal(first, augment(SQUIRREL, NET, camera, np.random.default_rng(1)))


def test_camera_share_zero_changes_nothing():
    a = augment(SQUIRREL, NET, Augment(), np.random.default_rng(5))
    b = augment(SQUIRREL, NET, Augment(camera=0.0), np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_camera_is_the_default_kind_of_augmented_views(tmp_path: Path):
    """Default since scripts/bench/bench_augment.py measured it (docs/robustness.md); with no augmented views (the
    default count) there is nothing to corrupt, which the library accepts."""
    assert TrainOptions(tmp_path, tmp_path / "out").augment == "camera"
    check_options(TrainOptions(tmp_path, tmp_path / "out"))
    check_options(TrainOptions(tmp_path, tmp_path / "out", augment="standard", augmented_views=1))
    with pytest.raises(EdgerecError, match="augment must be one of camera, standard"):
        check_options(TrainOptions(tmp_path, tmp_path / "out", augment="snow"))


def test_the_cli_refuses_augment_without_views_and_defaults_to_camera(tmp_path: Path, capsys):
    """An explicit --augment without --augmented-views would change nothing: one line, status 2."""
    for kind in ("camera", "standard"):
        assert main(["train", str(tmp_path), "--out", str(tmp_path / "o"), "--augment", kind]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--augment {kind} chooses the kind" in err and "--augmented-views" in err
    args = build_parser().parse_args(["train", "photos", "--out", "m", "--augmented-views", "2"])
    assert train_kwargs(args)["augment"] == "camera"
    args = build_parser().parse_args(["train", "photos", "--out", "m", "--augmented-views", "2", "--augment",
                                      "standard"])
    assert train_kwargs(args)["augment"] == "standard"


def test_a_camera_view_draws_only_the_named_corruptions():
    """`Augment.corruptions` restricts the draw (a benchmark holds the others out of training): with only
    `jpeg` named every camera view equals the plain view of the same photo under one of jpeg's severities."""
    from edge.tools.corruptions import CORRUPTIONS

    camera = Augment(**{**vars(PLAIN), "camera": 1.0, "corruptions": ("jpeg",)})
    for seed in range(4):
        view = augment(SQUIRREL, NET, camera, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        rng.random(), rng.integers(1)  # the draws of the share and of the name among one
        severity = int(rng.integers(1, 6))
        expected = augment(CORRUPTIONS["jpeg"](SQUIRREL, severity, rng), NET, PLAIN, rng)
        assert np.array_equal(view, expected)
