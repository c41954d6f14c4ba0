"""`edgerec train` end to end on a tiny generated data set: files, metadata, gate, resume, two processes.

One training run (module fixture) is shared by the tests that only read its output; the others copy it or
train again. Everything is small (64 px, 3 classes of 12 images, the last 2 blocks fine-tuned) so that the
file runs in well under two minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import run_cli

from edge.app.cli import build_parser, main
from edge.app.train_args import GATE_FAILED, UNKNOWN_KEPT, describe_report, train_kwargs
from edge.core.model import Model
from edge.core.novelty import DEFAULT_TARGET_KEPT
from edge.core.preprocess import fit
from training import gate as gate_module
from training import train as train_module
from training.data import DataOptions, load_image_folders
from training.distributed import World
from training.train import TrainOptions, calibration_samples, learning_rate, train

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("checks", "stripes", "spots")
FLAGS = ["--img-size", "64", "--finetune-blocks", "2", "--head-epochs", "4", "--epochs", "2", "--batch-size", "8",
         "--calibration-images", "8", "--val-fraction", "0.25", "--workers", "2", "--robustness-images", "0", "--quiet"]
ROBUSTNESS_IMAGES = 6  # of the 9 validation images: the shared run measures a seeded subset


def synthetic(label: int, index: int, size: int = 80) -> np.ndarray:
    """Class 0: a checkerboard, 1: stripes, 2: spots, each in a random colour on a random background."""
    rng = np.random.default_rng((label, index))
    y, x = np.mgrid[:size, :size]
    period = int(rng.integers(8, 14))
    if label == 0:
        mask = ((x // period) + (y // period)) % 2 == 0
    elif label == 1:
        mask = (x + y * rng.uniform(-0.3, 0.3)) % period < period / 2
    else:
        mask = np.zeros((size, size), bool)
        for cx, cy in rng.integers(0, size, (6, 2)):
            mask |= (x - cx) ** 2 + (y - cy) ** 2 < (period * 0.6) ** 2
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    image[mask] = rng.integers(0, 256, 3)
    noise = rng.normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "patterns"
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}"), synthetic(label, i))
    (root / "spots" / "broken.jpg").write_bytes(b"not an image")
    return root


def options(dataset: Path, out: Path, **changes: object) -> TrainOptions:
    """The options FLAGS give on the command line (the CLI test below holds the two equal)."""
    args = build_parser().parse_args(["train", str(dataset), "--out", str(out), *FLAGS])
    return replace(TrainOptions(**train_kwargs(args)), **changes)


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run") / "out"
    # 36 images in 4 views cannot show 98% agreement (training.gate): asking for none keeps INT8
    return train(options(dataset, out, min_int8_agreement=0.0, robustness_images=ROBUSTNESS_IMAGES))


def test_writes_int8_deliverable_with_full_metadata(trained, dataset: Path) -> None:
    out = trained.out_dir
    for name in ("model.onnx", "model-fp32.onnx", "model-int8.onnx", "checkpoint.pt", "report/curves.png",
                 "report/confusion.png", "report/metrics.json"):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert trained.gate_passed and trained.deliverable == out / "model.onnx"
    assert (out / "model.onnx").read_bytes() == (out / "model-int8.onnx").read_bytes()

    data = load_image_folders(DataOptions(dataset, val_fraction=0.25))
    for name, precision in (("model.onnx", "int8"), ("model-fp32.onnx", "fp32")):
        info = Model.load(out / name, device="cpu").info
        assert info.precision == precision
        assert info.labels == sorted(CLASSES) and info.input_size == (64, 64)
        assert info.dataset.fingerprint == data.fingerprint and info.dataset.num_train == 27
        assert info.metrics["val_top1_fp32"] == pytest.approx(trained.gate.fp32_top1)
        assert info.metrics["val_top1_int8"] == pytest.approx(trained.gate.int8_top1)
        assert info.training["finetune_blocks"] == 2 and info.training["data"]["unreadable_skipped"] == 1
    assert "broken.jpg" in trained.data_warning

    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["gate_passed"] and metrics["deliverable_precision"] == "int8"
    decision = metrics["int8_gate"]
    assert decision["precision"] == "int8" and decision["refused_because"] is None
    assert decision["paired"] == 4 * 36 and decision["val_images"] == 9 and decision["min_agreement"] == 0.0
    assert decision["agreed"] == round(decision["agreement"] * 144) and 0 < decision["mcnemar_p"] <= 1
    assert decision["speedup_this_cpu"] > 0 and metrics["quantization_attempts"][0]["paired"] == 144
    assert sum(map(sum, metrics["confusion"])) == 9
    stages = [h["stage"] for h in metrics["history"]]
    assert stages.count("finetune") == 2 and 1 <= stages.count("head") <= 4
    assert [s.name for s in trained.stages] == ["head", "finetune"]


def test_summary_says_which_precision_and_why(trained) -> None:
    text = "\n".join(describe_report(trained))
    assert re.search(r"^model        \S+model\.onnx is INT8 \(default recipe\), [\d.]+x FP32's speed on this CPU "
                     r"\(1 thread\)$", text, re.M), text
    assert re.search(r"^why          INT8 agrees with FP32 on \d+/144 paired predictions \([\d.]+%, 95% interval "
                     r"[\d.]+-[\d.]+%; needs >= 0% at its low end\); McNemar p=\S+ on 9 validation images \(\d+ right "
                     r"only in FP32, \d+ only in INT8\); top-1 on the paired predictions FP32 [\d.]+%, INT8 [\d.]+%$",
                     text, re.M), text


def test_stored_robustness_is_what_evaluate_robustness_gives(trained, dataset: Path, tmp_path: Path) -> None:
    """Both files store the clean top-1 and mCA of the chosen validation images; `edgerec evaluate --robustness`
    on a folder of just those images (and plain evaluate, for the clean row) gives the same numbers."""
    data = load_image_folders(DataOptions(dataset, val_fraction=0.25))
    chosen = calibration_samples(data.val, ROBUSTNESS_IMAGES, seed=0)
    folder = tmp_path / "chosen"
    for sample in chosen:
        (folder / sample.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.path, folder / sample.relpath)
    out = trained.out_dir
    for name in ("model.onnx", "model-fp32.onnx", "model-int8.onnx"):
        stored = json.loads(_cli("info", str(out / name), "--json"))["metrics"]
        int8 = name != "model-fp32.onnx"  # both stored and evaluated with 32-bit sums, on any CPU
        robust = json.loads(_cli("evaluate", str(out / name), str(folder), "--robustness", "--json"))["models"][0]
        plain = json.loads(_cli("evaluate", str(out / name), str(folder), "--json"))
        assert stored["robust_clean_top1"] == robust["clean"]["top1"] == plain["top1"], name
        assert stored["robust_mca"] == robust["mca"] and 0 <= robust["mca"] <= 1, name
        assert stored["robust_images"] == ROBUSTNESS_IMAGES and stored["robust_seed"] == 0
        assert stored.get("robust_int32_sums") == (1.0 if int8 else None), name
        text = _cli("info", str(out / name))
        expected = (f"clean top-1 {100 * robust['clean']['top1']:.1f}%, mean corruption accuracy "
                    f"{100 * robust['mca']:.1f}% ")
        sums = ", INT8 summed in 32 bits (as on ARM and VNNI x86)" if int8 else ""
        assert re.search(rf"^robustness +{re.escape(expected)}\(relative drop [\d.]+%\) on 6 images, seed 0"
                         rf"{re.escape(sums)}$", text, re.M), text
    assert (out / "model.onnx").read_bytes() == (out / "model-int8.onnx").read_bytes()
    metrics = json.loads((out / "report" / "metrics.json").read_text())["robustness"]
    assert metrics["model.onnx"] == metrics["model-int8.onnx"] and metrics["model-fp32.onnx"]["robust_images"] == 6
    assert [m["n"] for m in metrics["tables"]["models"]] == [6, 6] and (out / "report" / "robustness.png").is_file()
    assert re.search(r"^robustness   model\.onnx \(INT8\) on 6 validation images under 11 camera corruptions x 5 "
                     r"severities \(seed 0\): clean top-1 [\d.]+%, mean corruption accuracy [\d.]+% ",
                     "\n".join(describe_report(trained)), re.M)


def test_robustness_images_0_stores_none(dataset: Path, tmp_path: Path) -> None:
    off = train(options(dataset, tmp_path / "off", min_int8_agreement=0.0, head_epochs=2, epochs=0, finetune_blocks=0))
    assert off.robustness == () and not (off.out_dir / "report" / "robustness.png").exists()
    assert "robust_mca" not in Model.load(off.deliverable, device="cpu").info.metrics
    assert not [line for line in describe_report(off) if line.startswith("robustness")]


def _cli(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] if "--json" in args else result.stdout


def test_deliverable_classifies_the_classes(trained, dataset: Path) -> None:
    """The patterns are easy: the INT8 file, run by the runtime alone, names most validation images."""
    assert trained.gate.int8_top1 >= 0.66 and trained.gate.fp32_top1 >= 0.66
    model = Model.load(trained.deliverable, device="cpu")
    frames = [synthetic(label, 100 + i) for label in range(3) for i in range(4)]
    predicted = [p.label for p in model.classify(frames, top_k=1)]
    assert sum(p == CLASSES[i // 4] for i, p in enumerate(predicted)) >= 8


def test_refused_int8_writes_fp32_and_exits_0_unless_int8_is_required(trained, dataset: Path, tmp_path: Path,
                                                                      capsys) -> None:
    """Resuming the finished run only exports again; asking 100% agreement refuses any INT8 file."""
    out = tmp_path / "out"
    shutil.copytree(trained.out_dir, out)
    run = subprocess.run([sys.executable, "-m", "edge.app.cli", "train", str(dataset), "--out", str(out), *FLAGS,
                          "--resume", "--min-int8-agreement", "1"], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "edgerec:" not in run.stderr and "Traceback" not in run.stderr
    assert re.search(r"^model        \S+model\.onnx is FP32: INT8 refused with every calibration tried \(default\); "
                     r"the best, model-int8\.onnx, runs at [\d.]+x FP32's speed on this CPU \(1 thread\)$",
                     run.stdout, re.M), run.stdout
    assert re.search(r"^why          agreement's 95% interval reaches down to [\d.]+%, below the 100% required: INT8 "
                     r"\(default\) agrees with FP32 on \d+/144 paired predictions", run.stdout, re.M), run.stdout
    assert re.search(r"^validation   \d+/\d+ right, 95% interval [\d.]+-[\d.]+% for model\.onnx; one image is [\d.]+ "
                     r"points$", run.stdout, re.M), run.stdout
    info = Model.load(out / "model.onnx", device="cpu").info
    assert info.precision == "fp32" and info.metrics["int8_gate_passed"] == 0.0
    assert info.metrics["int8_paired_predictions"] == 144 and info.metrics["int8_min_agreement"] == 1.0
    assert (out / "model.onnx").read_bytes() == (out / "model-fp32.onnx").read_bytes()
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["deliverable_precision"] == "fp32"
    assert "below the 100% required" in metrics["int8_gate"]["refused_because"]
    assert 0 <= metrics["val_top1_interval95"][0] <= metrics["val_top1_fp32"] <= metrics["val_top1_interval95"][1]

    status = main(["train", str(dataset), "--out", str(out), *FLAGS, "--resume", "--min-int8-agreement", "1",
                   "--require-int8"])
    assert status == GATE_FAILED
    err = capsys.readouterr().err
    assert err.startswith("edgerec: --require-int8: the gate refused INT8 (agreement's 95% interval") and \
        err.count("\n") == 1, err


def test_the_gate_decides_on_exact_int8_not_on_this_cpus_kernels(trained, dataset: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """x86 CPUs without VNNI saturate INT8 sums; a file that is exact on the boards must not fail for it."""
    fp32 = tmp_path / "model-fp32.onnx"
    shutil.copyfile(trained.out_dir / "model-fp32.onnx", fp32)
    geometry = Model.load(fp32, device="cpu").geometry
    val = load_image_folders(DataOptions(dataset, val_fraction=0.25)).val
    images = np.stack([fit(cv2.imread(str(s.path)), geometry) for s in val])
    labels = np.array([s.label for s in val])
    real = gate_module.predict

    def saturating(path: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
        predictions = real(path, images, batch)  # this CPU gets every INT8 answer wrong
        return (predictions + 1) % len(CLASSES) if "int8" in Path(path).name else predictions

    monkeypatch.setattr(gate_module, "predict", saturating)
    report = gate_module.gate_int8(fp32, images, images, labels, options=gate_module.GateOptions(min_agreement=0.0))
    assert report.passed and report.int8_top1 >= report.fp32_top1 - 0.5
    assert report.int8_cpu_top1 <= report.fp32_top1 - 0.5  # reported beside it, not gated on
    assert Model.load(tmp_path / "model.onnx", device="cpu").info.precision == "int8"
    metrics = Model.load(tmp_path / "model.onnx", device="cpu").info.metrics
    assert metrics["val_top1_int8_training_cpu"] == pytest.approx(report.int8_cpu_top1)


class Interrupted(Exception):
    pass


def test_resume_continues_where_the_run_stopped(trained, dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """Stopped after the first fine-tuning epoch and resumed, a run ends with the uninterrupted run's weights."""
    save = train_module.Checkpoint.save

    def save_then_stop(self, net, state):
        save(self, net, state)
        if state["stage"] == "finetune" and state["epoch"] == 1:
            raise Interrupted

    out = tmp_path / "out"
    monkeypatch.setattr(train_module.Checkpoint, "save", save_then_stop)
    with pytest.raises(Interrupted):
        train(options(dataset, out, min_int8_agreement=0.0, checkpoint_every=0))
    assert not (out / "model.onnx").exists()
    written = []

    def save_and_count(self, net, state):
        written.append((state["stage"], state["epoch"]))
        save(self, net, state)

    monkeypatch.setattr(train_module.Checkpoint, "save", save_and_count)
    resumed = train(options(dataset, out, min_int8_agreement=0.0, resume=True))
    assert written == [("done", 0)]  # epochs shorter than --checkpoint-every (30 s): written at the stage's end only
    assert [(h["stage"], h["epoch"]) for h in resumed.history] == [(h["stage"], h["epoch"]) for h in trained.history]
    for got, want in zip(resumed.history, trained.history):
        assert got["val_top1"] == want["val_top1"] and got["train_loss"] == pytest.approx(want["train_loss"])
    a = torch.load(out / "checkpoint.pt", weights_only=False)["best_model"]
    b = torch.load(trained.out_dir / "checkpoint.pt", weights_only=False)["best_model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in b)


def test_the_stages_after_training_reuse_the_fitted_images_of_the_cache_stage(dataset: Path, tmp_path: Path,
                                                                             monkeypatch) -> None:
    """What the cache stage kept is not decoded again, the rest is, and both are what `load_images` gives; past
    the byte budget nothing more is kept."""
    from edge.core.preprocess import Geometry
    from training.data import load_images
    from training.train import Run

    data = load_image_folders(DataOptions(dataset, None, 0.2, 0))
    geometry = Geometry(64, 64, 0.875)
    run = Run(options(dataset, tmp_path), World())
    samples = list(data.train)
    run.keep(samples[:5], load_images(samples[:5], geometry))
    decoded = []
    monkeypatch.setattr(train_module, "load_images", lambda s, *a, **k: decoded.extend(s) or load_images(s, *a, **k))
    got = run.fitted_images(samples, geometry)
    assert np.array_equal(got, load_images(samples, geometry)) and decoded == samples[5:]
    monkeypatch.setattr(train_module, "KEPT_FITTED_BYTES", sum(i.nbytes for i in run.kept.values()) + 1)
    run.keep(samples[5:7], got[5:7])
    assert len(run.kept) == 5


def test_resume_refuses_a_checkpoint_of_other_settings(trained, dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(trained.out_dir, out)
    status = main(["train", str(dataset), "--out", str(out), *FLAGS, "--resume", "--img-size", "96"])
    assert status == 2
    assert "trained with other img_size" in capsys.readouterr().err


def test_two_processes_write_the_artifacts_once(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "edge.app.torchrun", str(dataset), "--out", str(out), *FLAGS,
                          "--min-int8-agreement", "0"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("model        ") == 1  # the summary comes from rank 0 alone
    assert "2 processes" in run.stdout
    info = Model.load(out / "model.onnx", device="cpu").info
    assert info.precision == "int8" and info.training["processes"] == 2
    history = json.loads((out / "report" / "metrics.json").read_text())["history"]
    assert len({(h["stage"], h["epoch"]) for h in history}) == len(history)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "model-fp32.onnx", "model-int8.onnx",
                                                     "model.onnx", "report"]


def test_bad_input_is_one_line_and_status_2(dataset: Path, tmp_path: Path, capsys) -> None:
    cases = [(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "does not exist"),
             (["train", str(dataset), "--out", str(tmp_path / "o"), "--img-size", "100"], "multiple of 32"),
             (["train", str(dataset), "--out", str(tmp_path / "o"), "--finetune-blocks", "16"], "0 (head only) to 15"),
             (["train", str(dataset), "--out", str(tmp_path / "o"), "--resume"], "nothing to resume"),
             (["train", str(dataset), "--out", str(tmp_path / "o"), "--arch", "resnet50"], "unknown architecture")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("edgerec: error: ") and message in err and err.count("\n") == 1, err


def test_every_file_can_say_unknown_with_a_threshold_from_the_training_photos(trained, dataset: Path) -> None:
    data = load_image_folders(DataOptions(dataset, val_fraction=0.25))
    for name in ("model.onnx", "model-fp32.onnx", "model-int8.onnx"):
        model = Model.load(trained.out_dir / name, device="cpu")
        novelty = model.info.novelty
        assert novelty is not None and novelty.calibration["photos"] == len(data.train), name
        assert 0.9 <= novelty.calibration["kept"] < 1.0 and novelty.target_kept == 0.95
        assert model.novelty is not None and model.novelty.threshold == novelty.threshold


def test_cli_defaults_are_the_options_defaults() -> None:
    args = build_parser().parse_args(["train", "photos", "--out", "m"])
    assert replace(TrainOptions(**train_kwargs(args)), progress=False) == TrainOptions(Path("photos"), Path("m"))
    assert UNKNOWN_KEPT == DEFAULT_TARGET_KEPT
    assert "3 = --require-int8 and the" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    rates = [learning_rate(step, 100, 10, 1.0) for step in range(101)]
    assert rates[0] < rates[5] < rates[9] <= 1.0
    assert rates[10] == pytest.approx(1.0) and rates[55] == pytest.approx(0.5) and rates[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_calibration_samples_are_balanced_and_seeded(dataset: Path) -> None:
    data = load_image_folders(DataOptions(dataset, val_fraction=0.25))
    chosen = calibration_samples(data.train, 7, seed=1)
    assert len(chosen) == 7 and len(set(chosen)) == 7
    assert sorted(np.bincount([s.label for s in chosen]).tolist()) == [2, 2, 3]
    assert chosen == calibration_samples(data.train, 7, seed=1) != calibration_samples(data.train, 7, seed=2)
    assert len(calibration_samples(data.train, 500, seed=1)) == len(data.train)


def test_time_limit_plans_and_cuts_stage_2(tmp_path: Path) -> None:
    run = train_module.Run(TrainOptions(tmp_path, tmp_path, epochs=8, time_limit=1.0), World())
    run.start = time.perf_counter() - 49.5  # 10.5 s of the minute left
    assert run.finetune_epochs({"epoch": 0, "finetune_epoch_estimate": 2.0}) == 5
    assert run.finetune_epochs({"epoch": 0, "finetune_epoch_estimate": 20.0}) == 0  # stage 2 skipped
    assert run.replan(8, 2, 4.0, bad_epochs=0) == (4, "time limit")
    assert run.replan(8, 2, 4.0, bad_epochs=3) == (2, "early stop")
    assert run.replan(2, 2, 4.0, bad_epochs=3) == (2, None)  # the last planned epoch: not an early stop
    untimed = train_module.Run(TrainOptions(tmp_path, tmp_path, epochs=8), World())
    assert untimed.finetune_epochs({"epoch": 0}) == 8 and untimed.replan(8, 2, 1e9, bad_epochs=0) == (8, None)


def test_quantization_aware_fine_tune_is_the_last_recipe(trained, dataset: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With the post-training recipes out of the way, the gate fine-tunes with fake INT8 on the training images
    it does not compare on (int8_pairs=9: the validation images only) and quantizes the result."""
    out = tmp_path / "out"
    shutil.copytree(trained.out_dir, out)
    monkeypatch.setattr(gate_module, "RECIPES", ())
    report = train(options(dataset, out, resume=True, min_int8_agreement=0.0, int8_pairs=9, qat_images=27))
    assert [a.recipe for a in report.gate.attempts] == ["qat"] and report.gate.passed
    assert report.gate.evidence.paired == 9
    info = Model.load(out / "model.onnx", device="cpu").info
    assert info.precision == "int8" and info.quantization["recipe"] == "qat"
    qat = json.loads((out / "report" / "metrics.json").read_text())["qat"]
    assert qat["images"] == 27 and qat["steps"] == 7  # 27 images and their mirror images in batches of 8
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the fine-tuned float file is gone
