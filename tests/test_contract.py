"""The model-file contract: metadata round trip, classification, and every refusal a user can meet."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_tiny_model, run_cli

from edge.core.metadata import DatasetInfo, ModelInfo, from_props
from edge.core.model import Model
from edge.errors import EdgerecError


def test_metadata_round_trips_through_the_file(tmp_path: Path) -> None:
    info = ModelInfo(labels=["cat", "empty shelf"], label_ids=["n1", "n2"], input_size=(160, 192), crop=0.9,
                     arch="efficientnet_lite0", precision="int8",
                     dataset=DatasetInfo("shelves", "abc123", 120, 30),
                     metrics={"val_top1_fp32": 0.97, "val_top1_int8": 0.965}, training={"epochs": 8})
    assert from_props(info.to_props(), "x.onnx") == info
    path = make_tiny_model(tmp_path / "m.onnx", labels=["cat", "empty shelf", "dog"], size=8)
    loaded = Model.load(path, "cpu")
    assert loaded.labels == ["cat", "empty shelf", "dog"]
    assert loaded.info.dataset.fingerprint == "0" * 16


def test_classify_labels_frames_of_any_size_and_batches_them(tiny_model: Path) -> None:
    model = Model.load(tiny_model, "cpu")
    red = np.zeros((480, 640, 3), np.uint8)
    red[..., 2] = 255
    blue_gray = np.full((100, 70), 90, np.uint8)  # gray frames are accepted too
    blue = np.zeros((1080, 1920, 3), np.uint8)
    blue[..., 0] = 200
    predictions = model.classify([red, blue, blue_gray], top_k=2)
    assert [p.label for p in predictions[:2]] == ["red", "blue"]
    assert len(predictions[2].top) == 2
    assert predictions[0].top[0].score > predictions[0].top[1].score
    assert model.provider == "CPUExecutionProvider"


def test_cli_classify_json_lines(tmp_path: Path, tiny_model: Path) -> None:
    image = np.zeros((50, 60, 3), np.uint8)
    image[..., 1] = 250
    cv2.imwrite(str(tmp_path / "green.png"), image)
    result = run_cli("classify", str(tmp_path / "green.png"), "--model", str(tiny_model), "--json", "-k", "3")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip())
    assert line["file"].endswith("green.png")
    assert line["top"][0]["label"] == "green" and line["top"][0]["index"] == 1
    assert len(line["top"]) == 3 and line["provider"] == "CPUExecutionProvider" and line["ms"] > 0


def _assert_refused(result, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgerec: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model")
    _assert_refused(run_cli("info", str(bad)), "notes.onnx", "not a loadable ONNX model")


def test_refuses_a_missing_file(tmp_path: Path) -> None:
    _assert_refused(run_cli("classify", "x.jpg", "--model", str(tmp_path / "nope.onnx")), "nope.onnx", "no such")


def test_refuses_a_model_without_metadata(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "plain.onnx", metadata={})
    _assert_refused(run_cli("info", str(path)), "plain.onnx", "not an edgerec model file", "edgerec.labels")


def test_refuses_float_input(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "float.onnx", input_type="float")
    _assert_refused(run_cli("info", str(path)), "float.onnx", "uint8", "tensor(float)")


def test_refuses_channels_first_input(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "nchw.onnx", layout="NCHW")
    _assert_refused(run_cli("info", str(path)), "nchw.onnx", "shape")


def test_refuses_label_count_that_differs_from_outputs(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "labels.onnx", labels=["a", "b"], classes=3)
    _assert_refused(run_cli("info", str(path)), "labels.onnx", "3 classes", "2 labels")


def test_refuses_bad_metadata_values(tmp_path: Path) -> None:
    info = ModelInfo(labels=["a", "b", "c"], input_size=(8, 8), crop=1.0, arch="t", precision="fp16",
                     dataset=DatasetInfo("x"))
    path = make_tiny_model(tmp_path / "prec.onnx", metadata=info.to_props())
    _assert_refused(run_cli("info", str(path)), "prec.onnx", "precision", "fp16")
    with pytest.raises(EdgerecError, match="input_size"):
        from_props({**info.to_props(), "edgerec.input_size": "[224]", "edgerec.precision": '"fp32"'}, "m.onnx")
    with pytest.raises(EdgerecError, match="format version 7"):
        from_props({**info.to_props(), "edgerec.format_version": "7"}, "m.onnx")


def test_refuses_unreadable_image(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _assert_refused(run_cli("classify", str(tmp_path / "broken.jpg"), "--model", str(tiny_model)),
                    "broken.jpg", "not a readable image")


def test_info_json_names_the_metadata(tiny_model: Path) -> None:
    result = run_cli("info", str(tiny_model), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["labels"] == ["blue", "green", "red"] and info["precision"] == "fp32"
    assert info["input_size"] == [8, 8]


def test_classify_skips_an_unreadable_file_names_it_goes_on_and_exits_1(tmp_path: Path, tiny_model: Path) -> None:
    """A folder (or a shell glob) with bad files among good ones: the others are classified, each bad one is
    named on one line, and the exit status says not all were (1; 2 stays for bad arguments)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("a_red.png", (0, 0, 255)), ("c_green.png", (0, 255, 0))):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), colour, np.uint8))
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "d_empty.png").write_bytes(b"")
    for paths in ([str(folder)], sorted(map(str, folder.iterdir()))):
        result = run_cli("classify", *paths, "--model", str(tiny_model), "--json")
        assert result.returncode == 1, result.stderr
        assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == \
            [str(folder / "a_red.png"), str(folder / "c_green.png")]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"edgerec: error: {folder / 'b_broken.jpg'}: not a readable image")
        assert lines[1].startswith(f"edgerec: error: {folder / 'd_empty.png'}: ") and lines[1].endswith("; skipped")
