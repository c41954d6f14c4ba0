"""Real photos through the real ImageNet model: the embedded INT8 file, and FP32 exported from torch here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PHOTOS, run_cli

from edge.core.model import Model, default_model_path
from edge.tools.classify import read_image


def expected() -> dict[str, set[str]]:
    with open(PHOTOS / "expected.tsv", newline="") as f:
        return {row["file"]: set(row["accepted_wnids"].split(",")) for row in csv.DictReader(f, delimiter="\t")}


EXPECTED = expected()


def top1_ids(model: Model) -> dict[str, str]:
    files = sorted(EXPECTED)
    predictions = model.classify([read_image(PHOTOS / f) for f in files], top_k=1)
    return {f: model.info.label_ids[p.top[0].index] for f, p in zip(files, predictions)}


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    pytest.importorskip("torch", reason="the FP32 reference is exported from torch ([train] extra)")
    from edge.core.metadata import DatasetInfo, ModelInfo
    from edge.core.preprocess import Geometry, fit
    from training.default_model import IMAGENET_DIR, imagenet_labels
    from training.export import export_onnx
    from training.models import CROP, create_model

    labels, ids = imagenet_labels(IMAGENET_DIR)
    info = ModelInfo(labels=labels, label_ids=ids, input_size=(224, 224), crop=CROP, arch="efficientnet_lite0",
                     precision="fp32", dataset=DatasetInfo("imagenet-1k"))
    check = np.stack([fit(read_image(PHOTOS / f), info.geometry) for f in sorted(EXPECTED)])
    assert info.geometry == Geometry(224, 224, CROP)
    path = tmp_path_factory.mktemp("fp32") / "lite0_fp32.onnx"
    export_onnx(create_model(), info, path, check)
    return Model.load(path, "cpu")


def test_golden_photos_int8_embedded_default() -> None:
    model = Model.load(None, "cpu")
    assert model.info.precision == "int8" and len(model.labels) == 1000
    got = top1_ids(model)
    assert len(got) >= 5
    wrong = {f: got[f] for f in got if got[f] not in EXPECTED[f]}
    assert not wrong, wrong


def test_embedded_default_stores_its_robustness_figures() -> None:
    # scripts/build_default_model.py --add-robustness-to ... --robustness <the 82 ImageNet photos>
    # (docs/robustness.md), INT8 summed in 32 bits whatever CPU stored them; `edgerec info` shows them as one line
    result = run_cli("info", str(default_model_path()))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("robustness"))
    assert "clean top-1 89.0%, mean corruption accuracy 66.3%" in row and "on 82 images, seed 0" in row
    assert row.endswith("INT8 summed in 32 bits (as on ARM and VNNI x86)")


def test_embedded_default_says_how_its_weights_were_fine_tuned() -> None:
    # scripts/build_default_model.py --distill (docs/quantization.md): quantization-aware distillation from FP32
    result = run_cli("info", str(default_model_path()))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("training qat"))
    assert "distilled from FP32, 64 steps (2 epochs, lr 1e-05, seed 0) on 512 unlabelled photos" in row
    assert "calibration_images  512" in result.stdout


def test_golden_photos_fp32_export(fp32_model: Model) -> None:
    got = top1_ids(fp32_model)
    wrong = {f: got[f] for f in got if got[f] not in EXPECTED[f]}
    assert not wrong, wrong


def test_int8_default_agrees_with_fp32_on_every_clear_golden_photo(fp32_model: Model) -> None:
    """Clear = FP32's top-1 probability >= 0.5 (5 of the 6; chelsea.jpg is a near tie between cat breeds)."""
    int8 = Model.load(None, "cpu")
    files = sorted(EXPECTED)
    images = [read_image(PHOTOS / f) for f in files]
    reference = fp32_model.classify(images, top_k=1)
    clear = [i for i, p in enumerate(reference) if p.score >= 0.5]
    assert len(clear) >= 5
    got = int8.classify(images, top_k=1)
    assert [got[i].label for i in clear] == [reference[i].label for i in clear]


def test_cli_classify_json_on_a_folder_of_real_photos() -> None:
    result = run_cli("classify", str(PHOTOS), "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {Path(line["file"]).name: line for line in lines}
    assert set(by_file) == set(EXPECTED)
    assert by_file["squirrel_cls.jpg"]["top"][0]["label"] == "fox squirrel"
    assert by_file["coffee.jpg"]["top"][0]["label"] == "espresso"
    assert all(line["model"] == str(default_model_path()) for line in lines)
