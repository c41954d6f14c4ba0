"""`evaluate` and `explain` take the model as `--model` (default: the embedded one) or, as before, first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import PHOTOS, run_cli

SQUIRREL = PHOTOS / "squirrel_cls.jpg"
FAST = ("--window", "112", "--stride", "112")  # 4 occluded copies: the form is under test, not the heat


@pytest.fixture
def imagenet_folder(tmp_path: Path) -> Path:
    """One ImageNet class folder holding the squirrel photo."""
    folder = tmp_path / "inet" / "fox squirrel"
    folder.mkdir(parents=True)
    shutil.copy(SQUIRREL, folder)
    return tmp_path / "inet"


def _json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_evaluate_uses_the_embedded_model_by_default(imagenet_folder: Path):
    summary = _json(run_cli("evaluate", str(imagenet_folder), "--json"))
    assert Path(summary["model"]).name == "efficientnet_lite0_imagenet_int8.onnx"
    assert summary["n"] == 1 and summary["top1"] == 1.0


def test_evaluate_takes_model_first_or_as_option(tiny_model: Path, tmp_path: Path):
    folder = tmp_path / "c" / "red"
    folder.mkdir(parents=True)
    shutil.copy(SQUIRREL, folder)  # any photo: the forms must agree, not be right
    first = _json(run_cli("evaluate", str(tiny_model), str(tmp_path / "c"), "--json"))
    option = _json(run_cli("evaluate", str(tmp_path / "c"), "--model", str(tiny_model), "--json"))
    assert first["model"] == option["model"] == str(tiny_model) and first["top1"] == option["top1"]


def test_explain_uses_the_embedded_model_by_default(tmp_path: Path):
    summary = _json(run_cli("explain", str(SQUIRREL), "--out", str(tmp_path / "h.png"), *FAST, "--json"))
    assert summary["top_label"] == "fox squirrel" and summary["variants"] == 4


def test_explain_takes_model_first_or_as_option(tiny_model: Path, tmp_path: Path):
    first = _json(run_cli("explain", str(tiny_model), str(SQUIRREL), "--out", str(tmp_path / "a.png"), "--json"))
    option = _json(run_cli("explain", str(SQUIRREL), "-m", str(tiny_model), "--out", str(tmp_path / "b.png"),
                           "--json"))
    assert first["top_label"] == option["top_label"] and first["top_label"] in ("blue", "green", "red")


@pytest.mark.parametrize("args", [
    ("evaluate", "a.onnx", "dir", "--model", "b.onnx"),
    ("evaluate", "a.onnx", "dir", "extra"),
    ("explain", "a.onnx", "photo.jpg", "--model", "b.onnx", "--out", "h.png"),
])
def test_a_model_named_twice_or_too_many_arguments_is_one_line(args: tuple[str, ...]):
    result = run_cli(*args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("edgerec: error:")
    assert "[MODEL]" in result.stderr or "twice" in result.stderr
