"""edgerec evaluate on the tiny colour model and a generated folder: exact counts, figures, JSON, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, make_tiny_model, run_cli

from edge.core.model import Model
from edge.errors import EdgerecError
from edge.progress import progress
from edge.tools.evaluate import OTHER, EvalOptions, evaluate, top1_interval, write_report
from edge.tools.figures import render_confusion

BGR = {"blue": (200, 40, 30), "green": (30, 190, 50), "red": (20, 60, 210)}


def _write(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 36)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), colour, np.uint8))


@pytest.fixture
def colour_folder(tmp_path: Path) -> Path:
    """3 blue, 3 green (+1 corrupt), 4 red of which one is green: the tiny model gets 9 of 10 right."""
    root = tmp_path / "colours"
    for name in BGR:
        for i in range(3):
            _write(root / name / f"{name}{i}.png", BGR[name], (24 + 8 * i, 36))
    _write(root / "red" / "wrong.jpg", BGR["green"])
    (root / "green" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("ignored")
    return root


def test_counts_and_per_class_metrics(tiny_model: Path, colour_folder: Path):
    report = evaluate(Model.load(tiny_model, "cpu"), colour_folder)
    assert report.n == 10
    assert report.top1 == pytest.approx(0.9)
    assert report.top5 == 1.0 and report.top_k == 3  # 3 labels: top-3 holds every truth
    assert report.precision == "fp32"
    assert report.classes == report.columns == ["blue", "green", "red"]
    assert report.confusion.tolist() == [[3, 0, 0], [0, 3, 0], [0, 1, 3]]
    blue, green, red = (report.per_class[c] for c in ("blue", "green", "red"))
    assert (blue.precision, blue.recall, blue.f1, blue.support) == (1.0, 1.0, 1.0, 3)
    assert (green.precision, green.recall, green.support) == (0.75, 1.0, 3)
    assert green.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert (red.precision, red.recall, red.support) == (1.0, 0.75, 4)
    assert report.macro_f1 == pytest.approx((1 + 2 * 0.75 / 1.75 * 2) / 3)
    assert [(m.path.name, m.true_label, m.predicted_label) for m in report.mistakes] == [("wrong.jpg", "red", "green")]
    assert [u.path.name for u in report.unreadable] == ["corrupt.jpg"]
    assert report.warning().count("\n") == 0 and "corrupt.jpg" in report.warning()
    assert report.latency_ms > 0 and report.latency_p95_ms >= report.latency_ms


def test_batches_give_the_same_report(tiny_model: Path, colour_folder: Path):
    model = Model.load(tiny_model, "cpu")
    calls = []
    one = evaluate(model, colour_folder)
    many = evaluate(model, colour_folder, EvalOptions(batch=4, on_progress=lambda d, t: calls.append((d, t))))
    assert many.confusion.tolist() == one.confusion.tolist() and many.mistakes == one.mistakes
    assert calls[-1] == (11, 11) and len(calls) == 3  # 11 files (corrupt one included) in batches of 4


def test_folders_map_to_labels_by_name_and_may_cover_some(tmp_path: Path):
    """Labels without a folder are fine; predictions of them land in the OTHER column."""
    model = Model.load(make_tiny_model(tmp_path / "m.onnx", labels=["blue", "green", "red", "spare"]), "cpu")
    root = tmp_path / "two"
    for name in ("red", "blue"):
        for i in range(2):
            _write(root / name / f"{i}.png", BGR[name])
    _write(root / "red" / "greenish.png", BGR["green"])
    report = evaluate(model, root)
    assert report.classes == ["blue", "red"]
    assert report.columns == ["blue", "red", OTHER]
    assert report.confusion.tolist() == [[2, 0, 0], [0, 2, 1]]
    assert report.per_class["red"].recall == pytest.approx(2 / 3)
    assert set(report.per_class) == {"blue", "red"}


def test_unknown_class_folder_is_a_one_line_error(tiny_model: Path, colour_folder: Path):
    (colour_folder / "purple").mkdir()
    with pytest.raises(EdgerecError, match="'purple'.*its labels: blue, green, red"):
        evaluate(Model.load(tiny_model, "cpu"), colour_folder)
    result = run_cli("evaluate", str(tiny_model), str(colour_folder))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgerec: error:") and "purple" in lines[0]
    assert "blue, green, red" in lines[0] and "Traceback" not in result.stderr


def test_folder_without_images_is_an_error(tiny_model: Path, tmp_path: Path):
    (tmp_path / "empty" / "red").mkdir(parents=True)
    with pytest.raises(EdgerecError, match="no images"):
        evaluate(Model.load(tiny_model, "cpu"), tmp_path / "empty")


def test_cli_json_and_report_files(tiny_model: Path, colour_folder: Path, tmp_path: Path):
    out = tmp_path / "report"
    result = run_cli("evaluate", str(tiny_model), str(colour_folder), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["top1"] == pytest.approx(0.9) and summary["top5"] == 1.0 and summary["n"] == 10
    assert summary["top1_interval95"] == pytest.approx([0.596, 0.982], abs=0.001)  # 9 of 10: Wilson's interval
    assert summary["precision"] == "fp32" and summary["latency_ms"] > 0
    assert summary["per_class"]["red"] == {"precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "support": 4}
    assert summary["confusion"]["counts"] == [[3, 0, 0], [0, 3, 0], [0, 1, 3]]
    assert "corrupt.jpg" in result.stderr and result.stderr.count("\n") == 1  # one warning line
    assert json.loads((out / "metrics.json").read_text())["top1"] == summary["top1"]
    confusion = cv2.imread(summary["files"]["confusion"])
    sheet = cv2.imread(summary["files"]["misclassified"])
    assert confusion is not None and confusion.shape[0] > 200 and confusion.shape[1] > 300
    assert sheet is not None and sheet.shape[0] >= 160 + 40
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_cli_text_output(tiny_model: Path, colour_folder: Path):
    result = run_cli("evaluate", str(tiny_model), str(colour_folder))
    assert result.returncode == 0, result.stderr
    assert "top-1 90.0% (9/10 right, 95% interval 59.6-98.2%)" in result.stdout
    assert "wrong.jpg: red -> green" in result.stdout


@pytest.mark.parametrize(("correct", "n", "low", "high"), [
    (56, 59, 0.861, 0.983),  # the default split of the 5-class photo set (docs/training.md)
    (912, 1000, 0.893, 0.928),  # Fashion-MNIST's 1000 validation images
    (0, 10, 0.0, 0.278),
    (10, 10, 0.722, 1.0),
])
def test_top1_interval_is_wilsons(correct: int, n: int, low: float, high: float):
    assert top1_interval(correct / n, n) == pytest.approx((low, high), abs=0.001)


def test_contact_sheet_without_mistakes(tiny_model: Path, tmp_path: Path):
    for name in BGR:
        _write(tmp_path / "ok" / name / "a.png", BGR[name])
    report = evaluate(Model.load(tiny_model, "cpu"), tmp_path / "ok")
    files = write_report(report, tmp_path / "out")
    assert report.top1 == 1.0 and not report.mistakes
    assert cv2.imread(str(files.misclassified)) is not None  # overwrites a stale sheet from an earlier run


def test_confusion_figure_with_many_long_labels():
    names = [f"class number {i} with a rather long descriptive name" for i in range(40)]
    counts = np.random.default_rng(0).integers(0, 50, (40, 41))
    image = render_confusion(counts, names, [*names, OTHER], ["title"])
    assert image.dtype == np.uint8 and image.shape[0] < 2000 and image.shape[1] < 2500


def test_evaluate_runs_without_torch(tiny_model: Path, colour_folder: Path, tmp_path: Path):
    """The runtime install has no torch, matplotlib or tqdm: evaluate must not import them."""
    code = ("import sys; sys.modules.update(torch=None, matplotlib=None, tqdm=None)\n"
            "from edge.app.cli import main\n"
            f"rc = main(['evaluate', {str(tiny_model)!r}, {str(colour_folder)!r}, '--json', "
            f"'--out', {str(tmp_path / 'r')!r}])\n"
            "assert not any(m.startswith('training') for m in sys.modules), 'edge imported training'\n"
            "sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["top1"] == pytest.approx(0.9)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_progress_draws_only_on_a_terminal(monkeypatch, tqdm_installed: bool):
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    with progress("evaluate", io.StringIO()) as on_progress:
        assert on_progress is None
    terminal = _Terminal()
    with progress("evaluate", terminal) as on_progress:
        on_progress(3, 10)
        on_progress(10, 10)
    assert "evaluate" in terminal.getvalue() and "/10" in terminal.getvalue()
