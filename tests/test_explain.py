"""edgerec explain: occlusion sensitivity on the tiny colour model and on a real photo with the default model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS, make_tiny_model, run_cli

from edge.core.model import Model
from edge.errors import EdgerecError
from edge.tools.explain import ExplainOptions, _positions, explain, render

SQUIRREL = PHOTOS / "squirrel_cls.jpg"
SQUIRREL_BOX = (110, 350, 130, 360)  # top, bottom, left, right: the animal, checked by eye on a grid overlay


@pytest.fixture(scope="module")
def squirrel_explanation():
    return explain(Model.load(None, "cpu"), cv2.imread(str(SQUIRREL)))  # defaults: window 32, stride 16 at 224


def test_positions_cover_both_edges():
    assert _positions(224, 32, 16) == list(range(0, 193, 16))  # 13 positions, the last flush with the edge
    assert _positions(30, 8, 5) == [0, 5, 10, 15, 20, 22]
    assert _positions(8, 8, 4) == [0]


def test_heat_marks_the_patch_that_decides(tmp_path: Path):
    """The tiny model labels by mean colour: on grey with one red square, covering the square costs P(red)."""
    model = Model.load(make_tiny_model(tmp_path / "m.onnx", size=32), "cpu")
    image = np.full((32, 32, 3), 128, np.uint8)
    image[4:12, 18:26] = (0, 0, 255)
    e = explain(model, image, ExplainOptions(window=8, stride=4, batch=7))
    assert e.label == "red" and e.variants == 49
    y, x = np.unravel_index(e.heat.argmax(), e.heat.shape)
    assert 4 <= y < 12 and 18 <= x < 26
    assert e.heat[20:, :10].max() == pytest.approx(0, abs=1e-6)  # covering grey with grey changes nothing


def test_heat_concentrates_on_the_squirrel(squirrel_explanation):
    e = squirrel_explanation
    assert e.label == "fox squirrel" and e.variants == 13 * 13
    heat = e.heat_on_image()
    assert heat.shape == cv2.imread(str(SQUIRREL)).shape[:2]
    top, bottom, left, right = SQUIRREL_BOX
    inside = np.zeros(heat.shape, bool)
    inside[top:bottom, left:right] = True
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    assert inside[y, x], f"peak at {(y, x)} outside the squirrel"
    assert heat[inside].mean() > 3 * heat[~inside].mean()


def test_render_keeps_the_image_size(squirrel_explanation):
    image = cv2.imread(str(SQUIRREL))
    out = render(image, squirrel_explanation)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)


def test_unknown_label_is_an_error(tiny_model: Path):
    with pytest.raises(EdgerecError, match="'rde'.*did you mean 'red'"):
        explain(Model.load(tiny_model, "cpu"), np.zeros((8, 8, 3), np.uint8), ExplainOptions(label="rde"))


def test_cli_writes_an_overlay_the_size_of_the_image(tmp_path: Path):
    out = tmp_path / "heat.png"
    result = run_cli("explain", str(Model.load(None, "cpu").path), str(SQUIRREL), "--out", str(out),
                     "--window", "56", "--stride", "56", "--label", "fox squirrel", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["label"] == "fox squirrel" and summary["variants"] == 16 and summary["peak_drop"] > 0
    written = cv2.imread(str(out))
    assert written is not None and written.shape == cv2.imread(str(SQUIRREL)).shape


def test_cli_refuses_an_unknown_output_format_before_working(tiny_model: Path, tmp_path: Path):
    result = run_cli("explain", str(tiny_model), str(SQUIRREL), "--out", str(tmp_path / "heat.xyz"))
    assert result.returncode != 0 and result.stderr.startswith("edgerec: error:")
    assert result.stderr.count("\n") == 1 and ".png" in result.stderr
