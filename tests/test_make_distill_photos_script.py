"""scripts/data/make_distill_photos.py: the seeded group split and the thumbnails that keep the pools apart;
scripts/build_default_model.py: its fidelity-step options; scripts/bench/int8_fidelity.py: its interval."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(relative: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dp = load("scripts/data/make_distill_photos.py", "make_distill_photos")


def test_split_is_by_group_seeded_and_about_half():
    groups = [f"folder{i}" for i in range(400)]
    first = [dp.pool_of("gc", g, 0) for g in groups]
    assert first == [dp.pool_of("gc", g, 0) for g in groups]  # the same command gives the same split
    assert 160 < first.count("distill") < 240
    assert set(first) == set(dp.POOLS)
    other = [dp.pool_of("gc", g, 1) for g in groups]
    assert 120 < sum(a != b for a, b in zip(first, other)) < 280  # another seed, another split
    assert [dp.pool_of("tux", g, 0) for g in groups] != first  # the source is part of the group


def test_research_split_is_kept():
    # groups and pools of the pools measured in docs/quantization.md (seed 0)
    assert dp.pool_of("tux", "animals/amphibians", 0) == "distill"
    assert dp.pool_of("tux", "animals/birds", 0) == "eval"


def test_thumb_is_a_correlation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    t = dp.thumb(image)
    assert abs(float(t @ t) - 1) < 1e-4
    brighter = np.clip(image.astype(np.int32) + 20, 0, 255).astype(np.uint8)
    assert float(dp.thumb(brighter) @ t) > dp.REPEAT  # a repeat under a brightness change
    assert float(dp.thumb(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) @ t) < 0.5


def test_colours_tell_drawings_from_photos():
    flat = np.zeros((100, 100, 3), np.uint8)
    flat[:50] = (0, 0, 255)
    noisy = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    assert dp.colours(flat) == 2
    assert dp.colours(noisy) > 1000


def test_reference_folder_must_hold_photos(tmp_path):
    with pytest.raises(dp.DistillPhotosError, match="make_imagenet_photos"):
        dp.reference_thumbs(tmp_path)


bdm = load("scripts/build_default_model.py", "build_default_model_script")


def test_build_options_for_the_fidelity_step(tmp_path):
    args = bdm.parse(["--out", str(tmp_path), "--calibration", "a", "--check", "b", "--distill", "c"])
    assert (args.distill, args.qat_epochs, args.qat_lr, args.seed) == ([Path("c")], 2.0, 1e-5, 0)
    assert bdm.parse(["--out", str(tmp_path), "--calibration", "a", "--check", "b"]).distill is None
    quant, qat = bdm.build_options(bdm.parse(["--out", "o", "--calibration", "a", "--check", "b", "--distill", "c"]))
    assert not quant.reduce_range and qat.weight_max == 127
    assert not qat.augment
    assert bdm.build_options(bdm.parse(["--out", "o", "--calibration", "a", "--check", "b", "--distill", "c",
                                        "--qat-augment"]))[1].augment
    quant, qat = bdm.build_options(bdm.parse(["--out", "o", "--calibration", "a", "--check", "b", "--distill", "c",
                                              "--reduce-range"]))
    assert quant.reduce_range and qat.weight_max == 63  # the fine-tune rounds to the 7-bit weights it will get
    assert bdm.build_options(bdm.parse(["--out", "o", "--calibration", "a", "--check", "b"]))[1] is None
    only = bdm.parse(["--add-robustness-to", "m.onnx", "--robustness", "photos"])
    assert (only.add_robustness_to, only.robustness) == (Path("m.onnx"), Path("photos"))


@pytest.mark.parametrize("argv", [
    ["--add-robustness-to", "m.onnx"],  # nothing to measure on
    ["--out", "o", "--calibration", "a", "--check", "b", "--distill", "c", "--qat-epochs", "0"],
    ["--out", "o", "--calibration", "a", "--check", "b", "--qat-lr", "-1"],
])
def test_build_rejects(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        bdm.parse(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


fidelity = load("scripts/bench/int8_fidelity.py", "int8_fidelity")


def test_clopper_pearson_interval():
    low, high = fidelity.clopper_pearson(354, 375)  # the QAT row of docs/quantization.md
    assert (round(low, 4), round(high, 4)) == (0.9157, 0.965)
    assert fidelity.clopper_pearson(0, 10) == (0.0, pytest.approx(0.3085, abs=1e-4))  # (alpha/2)^(1/n) rule
    assert fidelity.clopper_pearson(10, 10) == (pytest.approx(0.6915, abs=1e-4), 1.0)


def test_implementations_counts_differences_and_fp32_margins():
    fp32 = np.array([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7], [0.5, 0.45, 0.05], [0.9, 0.05, 0.05]])
    top1 = {"int32": np.array([0, 2, 1, 0]), "exact": np.array([0, 2, 0, 1])}
    line = fidelity.implementations("x", top1, fp32)
    # int32 and exact differ on photos 2 and 3; int32 differs from FP32 on photo 2 only, whose margin is 0.05
    assert line.startswith("x: int32 and exact differ in top-1 on 2/4 photos")
    assert "where int32 differs from FP32: median 0.050, largest 0.050" in line
    same = fidelity.implementations("y", {"int32": fp32.argmax(1), "exact": fp32.argmax(1)}, fp32)
    assert "on 0/4 photos" in same and "from FP32: none" in same


def test_by_margin_counts_agreement_in_bands_of_fp32s_lead():
    fp32 = np.array([[0.65, 0.35, 0.0], [0.1, 0.2, 0.7], [0.5, 0.47, 0.03], [0.9, 0.05, 0.05], [0.38, 0.3, 0.32]])
    # margins 0.3, 0.5, 0.03, 0.85, 0.06; INT8 differs on the near tie (0.03) and on the 0.06 one
    line = fidelity.by_margin("agreement", np.array([0, 2, 1, 0, 2]), fp32)
    assert line == ("agreement by FP32's margin: 0-0.05 0/1, 0.05-0.1 0/1, 0.1-0.2 0/0, >= 0.2 3/3; "
                    "FP32's top-1 probability where they differ: at most 0.500")
    assert fidelity.by_margin("", fp32.argmax(1), fp32).startswith("by FP32's margin: 0-0.05 1/1")
    assert fidelity.by_margin("", fp32.argmax(1), fp32).endswith(">= 0.2 3/3")


def test_margin_figure_draws_one_row_per_file_and_a_column_per_band():
    fp32 = np.array([[0.65, 0.35, 0.0], [0.1, 0.2, 0.7], [0.5, 0.47, 0.03], [0.9, 0.05, 0.05]])
    rows = {"int8": np.array([0, 2, 1, 0]), "FP32 moved": fp32.argmax(1)}
    assert [same for _, same, _ in fidelity.margin_bands(rows["int8"], fp32)] == [0, 0, 0, 3]
    image = fidelity.margin_figure(rows, fp32, ["title", "subtitle"])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[1] > 5 * 96  # 4 bands + all
    one = fidelity.margin_figure({"int8": rows["int8"]}, fp32, ["title", "subtitle"])
    assert image.shape[0] - one.shape[0] == 30  # one more row of cells
