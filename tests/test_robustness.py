"""edgerec evaluate --robustness: the clean row is plain evaluate, the table, mCA, two models, files, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_tiny_model, run_cli

from edge.core.model import Model
from edge.errors import EdgerecError
from edge.tools.corruptions import SEVERITIES
from edge.tools.evaluate import EvalOptions, evaluate
from edge.tools.robustness import RobustnessOptions, describe, discordant, robustness, summaries, write_report

BGR = {"blue": (200, 40, 30), "green": (30, 190, 50), "red": (20, 60, 210)}


@pytest.fixture
def colour_folder(tmp_path: Path) -> Path:
    """Textured colour photos (the tiny model labels by the dominant channel), 2 per class, one mislabelled."""
    rng = np.random.default_rng(0)
    root = tmp_path / "colours"
    for name, colour in BGR.items():
        for i in range(2):
            (root / name).mkdir(parents=True, exist_ok=True)
            texture = rng.integers(-30, 30, (48, 64, 3))
            cv2.imwrite(str(root / name / f"{i}.png"), np.clip(np.array(colour) + texture, 0, 255).astype(np.uint8))
    cv2.imwrite(str(root / "red" / "wrong.png"), np.full((48, 64, 3), BGR["green"], np.uint8))
    return root


def test_clean_row_is_plain_evaluate(tiny_model: Path, colour_folder: Path):
    model = Model.load(tiny_model, "cpu")
    report = robustness(model, colour_folder, RobustnessOptions(corruptions=("jpeg", "fog")))
    plain = evaluate(model, colour_folder)
    assert report.clean.top1 == plain.top1 == pytest.approx(6 / 7)
    assert report.clean.confusion.tolist() == plain.confusion.tolist()
    assert report.correct.shape == (2, len(SEVERITIES), 7) and report.n == 7


def test_cli_clean_row_equals_plain_evaluate(tiny_model: Path, colour_folder: Path):
    plain = run_cli("evaluate", str(tiny_model), str(colour_folder), "--json")
    robust = run_cli("evaluate", str(tiny_model), str(colour_folder), "--json", "--robustness",
                     "--corruptions", "jpeg,pixelate")
    assert plain.returncode == 0 and robust.returncode == 0, plain.stderr + robust.stderr
    top1 = json.loads(plain.stdout.strip().splitlines()[-1])["top1"]
    [summary] = json.loads(robust.stdout.strip().splitlines()[-1])["models"]
    assert summary["clean"]["top1"] == top1
    assert list(summary["corruptions"]) == ["jpeg", "pixelate"]
    assert len(summary["corruptions"]["jpeg"]["top1"]) == 5


def test_mca_is_the_mean_over_conditions_and_the_drop_relative(tiny_model: Path, colour_folder: Path):
    report = robustness(Model.load(tiny_model, "cpu"), colour_folder,
                        RobustnessOptions(corruptions=("over_exposure", "gaussian_noise")))
    table = report.accuracy
    assert report.mca == pytest.approx(table.mean())
    assert report.relative_drop == pytest.approx((report.clean.top1 - report.mca) / report.clean.top1)
    low, high = report.mca_interval()
    assert 0.0 <= low <= report.mca <= high <= 1.0
    assert report.summary()["corruptions"]["gaussian_noise"]["top1"] == table[1].tolist()


def test_a_transform_reaches_the_model_before_fit(tiny_model: Path, colour_folder: Path):
    """EvalOptions.transform sees the decoded photo and its index; here it makes every photo green."""
    seen = []

    def paint_green(image: np.ndarray, index: int) -> np.ndarray:
        seen.append((index, image.shape))
        return np.full_like(image, BGR["green"])

    report = evaluate(Model.load(tiny_model, "cpu"), colour_folder, EvalOptions(transform=paint_green))
    assert report.top1 == pytest.approx(2 / 7)  # only the green folder's two are right
    assert [i for i, _ in seen] == list(range(7)) and seen[0][1] == (48, 64, 3)


def test_runs_are_deterministic_and_two_models_see_the_same_pixels(tiny_model: Path, colour_folder: Path,
                                                                   tmp_path: Path):
    options = RobustnessOptions(corruptions=("shot_noise", "motion_blur"), seed=3)
    a = robustness(Model.load(tiny_model, "cpu"), colour_folder, options)
    twin = make_tiny_model(tmp_path / "twin.onnx", precision="int8")
    b = robustness(Model.load(twin, "cpu"), colour_folder, options)
    assert np.array_equal(a.correct, b.correct) and discordant(a, b) == (0, 0)
    lines = describe([a, b])
    assert any("right only by the first model" in line for line in lines)
    out = summaries([a, b])
    assert [m["precision"] for m in out["models"]] == ["fp32", "int8"]
    assert out["discordant"] == {"right_only_first": 0, "right_only_second": 0, "predictions": 2 * 5 * 7}


def test_report_files(tiny_model: Path, colour_folder: Path, tmp_path: Path):
    report = robustness(Model.load(tiny_model, "cpu"), colour_folder, RobustnessOptions(corruptions=("jpeg",)))
    files = write_report([report, report], tmp_path / "out")
    heat = cv2.imread(str(files.heatmap))
    assert heat is not None and heat.shape[1] > 2 * 300  # two panels side by side
    saved = json.loads(files.metrics.read_text())
    assert saved["models"][0]["mca"] == pytest.approx(report.mca)
    assert not list((tmp_path / "out").glob(".*"))


def test_unknown_corruption_is_refused(tiny_model: Path, colour_folder: Path):
    with pytest.raises(EdgerecError, match="'snow'"):
        robustness(Model.load(tiny_model, "cpu"), colour_folder, RobustnessOptions(corruptions=("snow",)))
    result = run_cli("evaluate", str(tiny_model), str(colour_folder), "--robustness", "--corruptions", "snow")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "known:" in result.stderr


def test_cli_compare_text_and_files(tiny_model: Path, colour_folder: Path, tmp_path: Path):
    twin = make_tiny_model(tmp_path / "twin.onnx", precision="int8")
    result = run_cli("evaluate", str(colour_folder), "--model", str(tiny_model), "--robustness", "--compare",
                     str(twin), "--corruptions", "fog", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("mean corruption accuracy") == 2 and "tiny.onnx" in result.stdout
    assert "twin.onnx" in result.stdout and (tmp_path / "r" / "robustness.png").is_file()


def test_compare_without_robustness_is_refused(tiny_model: Path, colour_folder: Path):
    result = run_cli("evaluate", str(tiny_model), str(colour_folder), "--compare", str(tiny_model))
    assert result.returncode == 2 and "--robustness" in result.stderr


def test_info_shows_stored_robustness(tmp_path: Path):
    from edge.core.metadata import DatasetInfo, ModelInfo

    info = ModelInfo(labels=["blue", "green", "red"], input_size=(8, 8), crop=1.0, arch="tiny-test", precision="int8",
                     dataset=DatasetInfo("synthetic"),
                     metrics={"val_top1_int8": 0.9, "robust_clean_top1": 0.9, "robust_mca": 0.72})
    path = make_tiny_model(tmp_path / "m.onnx", metadata=info.to_props())
    result = run_cli("info", str(path))
    assert result.returncode == 0, result.stderr
    assert "clean top-1 90.0%, mean corruption accuracy 72.0% (relative drop 20.0%)" in result.stdout
    assert "metric val_top1_int8" in result.stdout and "metric robust_mca" not in result.stdout
    exact = make_tiny_model(tmp_path / "exact.onnx", metadata=replace(
        info, metrics={**info.metrics, "robust_int32_sums": 1.0}).to_props())
    assert run_cli("info", str(exact)).stdout.count(
        "mean corruption accuracy 72.0% (relative drop 20.0%), INT8 summed in 32 bits (as on ARM and VNNI x86)") == 1
    plain = run_cli("info", str(make_tiny_model(tmp_path / "plain.onnx")))
    assert plain.returncode == 0 and "robustness" not in plain.stdout


def test_progress_counts_across_conditions_once_for_all_models(tiny_model: Path, colour_folder: Path):
    """Each corrupted photo is run through both models, so progress counts photos, not photos x models."""
    from edge.tools.robustness import compare

    calls = []
    model = Model.load(tiny_model, "cpu")
    reports = compare([model, model], colour_folder,
                      RobustnessOptions(corruptions=("jpeg",), on_progress=lambda d, t: calls.append((d, t))))
    per_model = 7 * (1 + len(SEVERITIES))  # clean + 5 severities of one corruption, 7 images each
    assert len(reports) == 2 and calls[-1] == (per_model, per_model)
    assert all(b[0] > a[0] for a, b in zip(calls, calls[1:]))


def test_conditions_in_several_threads_give_the_same_numbers(tiny_model: Path, colour_folder: Path):
    """workers=3: the conditions run at once, each in its own thread; every figure is as one at a time, and the
    progress still counts up to photos x passes."""
    from edge.tools.robustness import compare

    model = Model.load(tiny_model, "cpu", threads=1)
    names = ("gaussian_noise", "low_light", "jpeg", "motion_blur")
    one = compare([model, model], colour_folder, RobustnessOptions(corruptions=names, seed=2))
    calls = []
    three = compare([model, model], colour_folder, RobustnessOptions(
        corruptions=names, seed=2, workers=3, on_progress=lambda d, t: calls.append((d, t))))
    for a, b in zip(one, three):
        assert np.array_equal(a.correct, b.correct) and a.clean.top1 == b.clean.top1
    per_model = 7 * (1 + len(names) * len(SEVERITIES))
    assert calls[-1] == (per_model, per_model) and all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    with pytest.raises(EdgerecError, match="workers must be >= 1"):
        compare([model], colour_folder, RobustnessOptions(corruptions=names, workers=0))


def test_compare_equals_one_model_at_a_time(tiny_model: Path, colour_folder: Path, tmp_path: Path):
    """Corrupting each photo once for both models changes no number: each report is what the model alone gets."""
    from edge.tools.robustness import compare

    other = Model.load(make_tiny_model(tmp_path / "other.onnx", labels=["red", "green", "blue"]), "cpu")
    model = Model.load(tiny_model, "cpu")
    options = RobustnessOptions(corruptions=("gaussian_noise", "low_light"), seed=5)
    together = compare([model, other], colour_folder, options)
    alone = [robustness(m, colour_folder, options) for m in (model, other)]
    for a, b in zip(together, alone):
        assert np.array_equal(a.correct, b.correct) and a.clean.top1 == b.clean.top1
        assert a.clean.confusion.tolist() == b.clean.confusion.tolist() and a.clean.model == b.clean.model


def test_an_image_list_is_evaluated_as_a_folder_of_its_files(tiny_model: Path, colour_folder: Path, tmp_path: Path):
    """A chosen list (training's validation images) gives what a folder holding just those files gives."""
    import shutil

    from edge.tools.evaluate import ImageList, list_folder

    chosen = [f for f in list_folder(colour_folder, ["blue", "green", "red"]).files if f[0].stem != "1"]
    copy = tmp_path / "copy"
    for path, _ in chosen:
        (copy / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy / path.parent.name / path.name)
    model = Model.load(tiny_model, "cpu")
    options = RobustnessOptions(corruptions=("fog",), seed=1)
    listed = robustness(model, ImageList("chosen", ["blue", "green", "red"], chosen), options)
    folder = robustness(model, copy, options)
    assert listed.n == folder.n == 4 and listed.clean.data_dir == "chosen"
    assert np.array_equal(listed.correct, folder.correct) and listed.clean.top1 == folder.clean.top1


def test_each_photo_is_decoded_once_for_all_passes_and_a_bad_file_is_reported_in_each(
        tiny_model: Path, colour_folder: Path, monkeypatch: pytest.MonkeyPatch):
    import edge.tools.evaluate as evaluate_module

    (colour_folder / "red" / "broken.png").write_bytes(b"not a png")
    decoded: list[Path] = []
    real = evaluate_module.decode_image

    def counting(path: Path, unreadable: list) -> np.ndarray | None:
        decoded.append(path)
        return real(path, unreadable)

    monkeypatch.setattr(evaluate_module, "decode_image", counting)
    options = RobustnessOptions(corruptions=("gaussian_noise", "pixelate"))
    report = robustness(Model.load(tiny_model, device="cpu"), colour_folder, options)
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == 8  # 7 photos and the broken file, once each
    assert [u.path.name for u in report.clean.unreadable] == ["broken.png"]
    assert report.accuracy.shape == (2, len(SEVERITIES))

    cache, unreadable = evaluate_module.DecodedPhotos(limit=0), []  # nothing kept: decoded at each pass
    decoded.clear()
    for _ in range(3):
        cache.get(colour_folder / "blue" / "0.png", unreadable)
    assert len(decoded) == 3 and not unreadable


def test_load_models_one_thread_each_and_a_condition_per_core_unless_threads_are_asked(tiny_model: Path):
    from edge.core.devices import physical_cores
    from edge.tools.robustness import load_models

    models, workers = load_models([tiny_model, tiny_model])
    assert [m.threads for m in models] == [1, 1] and workers == physical_cores()
    models, workers = load_models([tiny_model], threads=2)
    assert models[0].threads == 2 and workers == 1
