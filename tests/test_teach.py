"""`edgerec teach`: a new head on the embedded model's features, written as a contract file, runtime only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS, make_tiny_model, run_cli

from edge.core import onnx_edit
from edge.core.metadata import FeaturesInfo, from_props
from edge.core.model import Model, default_model_path
from edge.errors import EdgerecError
from edge.learn.head import TeachOptions, teach
from edge.learn.softmax_regression import FitOptions, fit_softmax_regression
from edge.tools.evaluate import evaluate

CLASSES = {"animal": ["baboon.jpg", "chelsea.jpg", "squirrel_cls.jpg", "chicky_512.jpg"],
           "food": ["coffee.jpg", "orange.jpg"]}


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """DATA/<class>/ with real photos and a VAL/<class>/ of other framings of them (left/right parts)."""
    root = tmp_path_factory.mktemp("teach")
    for label, names in CLASSES.items():
        for name in names:
            image = cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            _write(root / "data" / label / name, image[:, : int(w * 0.8)])
            _write(root / "val" / label / name, image[:, w - int(w * 0.8):])
    return root / "data", root / "val"


@pytest.fixture(scope="module")
def taught(photos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    data, val = photos
    out = tmp_path_factory.mktemp("out") / "taught.onnx"
    return teach(TeachOptions(data, out, val_dir=val, views=("flip", "crop-tl"), device="cpu")), out


def test_teach_writes_a_contract_file_with_the_new_labels_and_features(taught) -> None:
    report, out = taught
    model = Model.load(out, "cpu")
    assert model.labels == ["animal", "food"] and model.info.precision == "int8"
    assert model.info.features == FeaturesInfo("features", 1280)
    training = model.info.training
    assert training["trained_by"] == "teach" and training["views"] == ["image", "flip", "crop-tl"]
    assert training["base_sha256"] == hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert model.info.metrics["val_top1"] == report.val_top1 == 1.0 and report.val_n == 6
    assert model.info.metrics["val_top1_low95"] == pytest.approx(report.val_interval[0])
    assert model.info.dataset.num_train == 6 and model.info.dataset.num_val == 6
    probs, features = model.features(np.zeros((2, 224, 224, 3), np.uint8))
    assert probs.shape == (2, 2) and features.shape == (2, 1280)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary files left


def test_teach_validation_probabilities_are_evaluates(taught, photos: tuple[Path, Path]) -> None:
    report, out = taught
    model = Model.load(out, "cpu")
    seen: list[np.ndarray] = []
    infer = model.infer
    model.infer = lambda batch: seen.append(infer(batch)) or seen[-1]  # what evaluate computes, image by image
    result = evaluate(model, photos[1])
    assert result.top1 == report.val_top1 and len(seen) == report.val_n
    np.testing.assert_array_equal(np.concatenate(seen), report.val_probs)  # bit for bit


def test_the_taught_file_runs_in_info_classify_evaluate_and_run(taught, photos: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    _, out = taught
    info = run_cli("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "features" in info.stdout and "output 'features' float32 [N, 1280]" in info.stdout
    assert "training trained_by" in info.stdout and "teach" in info.stdout
    classify = run_cli("classify", "--model", str(out), str(photos[1] / "food" / "orange.jpg"), "--json")
    assert json.loads(classify.stdout)["top"][0]["label"] == "food", classify.stderr
    evaluated = run_cli("evaluate", str(out), str(photos[1]), "--json")
    assert json.loads(evaluated.stdout.splitlines()[-1])["top1"] == 1.0, evaluated.stderr
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (320, 240))
    for _ in range(4):
        writer.write(cv2.resize(cv2.imread(str(PHOTOS / "coffee.jpg")), (320, 240)))
    writer.release()
    events = tmp_path / "events.jsonl"
    ran = run_cli("run", "--model", str(out), "--source", str(clip), "--as-fast-as-possible", "--max-frames", "4",
                  "--no-display", "--events", str(events))
    assert ran.returncode == 0, ran.stderr
    assert "food" in events.read_text()


def test_a_base_without_features_is_refused_in_one_line(photos: tuple[Path, Path], tmp_path: Path) -> None:
    old = make_tiny_model(tmp_path / "old.onnx")
    done = run_cli("teach", str(photos[0]), "--out", str(tmp_path / "x.onnx"), "--base", str(old))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"edgerec: error: {old} has no features output, so teach cannot build on it; valid: the embedded default "
        "(leave out --base) or a file written by this edgerec's `edgerec train` (`edgerec info` shows a features "
        "line)"]
    assert not (tmp_path / "x.onnx").exists()
    info = run_cli("info", str(old))
    assert "none (edgerec teach cannot use this file as a base)" in info.stdout


def test_teach_refuses_bad_input_in_one_line(photos: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "other" / "animal").mkdir(parents=True)
    done = run_cli("teach", str(photos[0]), "--out", str(tmp_path / "x.onnx"), "--val-dir", str(tmp_path / "other"))
    assert done.returncode == 2 and "missing ['food']" in done.stderr and len(done.stderr.splitlines()) == 1
    done = run_cli("teach", str(photos[0]), "--out", str(tmp_path / "no" / "x.onnx"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_a_declared_features_output_the_graph_lacks_is_refused(tmp_path: Path) -> None:
    from edge.core.metadata import DatasetInfo, ModelInfo

    info = ModelInfo(labels=["blue", "green", "red"], input_size=(8, 8), crop=1.0, arch="tiny-test",
                     precision="fp32", dataset=DatasetInfo("synthetic"), features=FeaturesInfo("features", 3))
    assert from_props(info.to_props(), "m.onnx") == info
    path = make_tiny_model(tmp_path / "m.onnx", metadata=info.to_props())
    with pytest.raises(EdgerecError, match="declares an output 'features' the graph lacks"):
        Model.load(path, "cpu")
    with pytest.raises(EdgerecError, match='features must be'):
        from_props({**info.to_props(), "edgerec.features": '{"output": "features", "dim": 0}'}, "m.onnx")


def test_softmax_regression_separates_and_folds_the_standardization() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 20)) * [5.0] + 40.0  # far from zero mean and unit scale on purpose
    labels = np.repeat(np.arange(3), 30)
    features = (centres[labels] + rng.normal(0, 1, (90, 20))).astype(np.float32)
    head = fit_softmax_regression(features, labels, 3, FitOptions(l2=0.1, steps=200))
    assert head.train_top1 == 1.0 and head.weight.shape == (20, 3)
    again = fit_softmax_regression(features, labels, 3, FitOptions(l2=0.1, steps=200))
    np.testing.assert_array_equal(head.weight, again.weight)  # deterministic
    logits = features @ head.weight + head.bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert -np.log(probs[np.arange(90), labels]).mean() == pytest.approx(head.loss, rel=1e-3)


def test_onnx_edit_keeps_every_field_it_does_not_declare() -> None:
    onnx = pytest.importorskip("onnx")
    data = default_model_path().read_bytes()
    model = onnx_edit.parse(data)
    again = onnx.load_from_string(model.SerializeToString())
    assert again == onnx.load_from_string(data)  # opsets, attributes, tensors, doc strings: all kept


def test_the_taught_file_passes_the_onnx_checker(taught) -> None:
    onnx = pytest.importorskip("onnx")
    _, out = taught
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_split_and_fingerprint_are_trainings(photos: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="compares with training/data.py ([train] extra)")
    from edge.learn.data import find_files
    from training.data import DataOptions, load_image_folders

    data = photos[0]
    ours = find_files(data, None, 0.5, 3)
    theirs = load_image_folders(DataOptions(train_dir=data, val_fraction=0.5, seed=3, min_per_class=1))
    assert [f.relpath for f in ours.val] == [s.relpath for s in theirs.val]
    report = teach(TeachOptions(data, tmp_path / "m.onnx", val_fraction=0.5, seed=3, device="cpu"))
    assert Model.load(report.out, "cpu").info.dataset.fingerprint == theirs.fingerprint


def test_the_camera_view_is_a_corruption_seeded_by_the_photo() -> None:
    from edge.learn.data import VIEWS

    image = cv2.imread(str(sorted(PHOTOS.glob("*.jpg"))[0]))
    view = VIEWS["camera"](image)
    assert view.shape == image.shape and view.dtype == np.uint8
    assert np.array_equal(view, VIEWS["camera"](image.copy()))  # the same photo, the same view, every run
    assert np.abs(view.astype(np.int16) - image).mean() > 1  # a real change of the pixels
