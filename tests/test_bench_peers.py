"""scripts/bench/bench_peers.py: its runtime adapters compute what ONNX Runtime computes (no timing asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PHOTOS, make_tiny_model

from edge.core.model import default_model_path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "bench_peers.py"
spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
bp = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bp
spec.loader.exec_module(bp)


def colour_frames(size: int = 8) -> np.ndarray:
    """Three noisy frames, dominated by blue, green and red: the tiny model labels them 0, 1, 2."""
    frames = np.random.default_rng(0).integers(0, 60, (3, size, size, 3), dtype=np.uint8)
    for i in range(3):
        frames[i, ..., i] += 150
    return frames


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny_model(tmp_path / "tiny.onnx")


def test_cv2_dnn_matches_onnxruntime_on_the_same_file(tiny: Path) -> None:
    frames = colour_frames()
    expected = bp.OrtRuntime(tiny, 2).run(frames)
    got = bp.Cv2DnnRuntime(tiny, 2).run(frames)
    assert list(expected.argmax(1)) == [0, 1, 2]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_openvino_matches_onnxruntime_and_reports_its_precision(tiny: Path) -> None:
    pytest.importorskip("openvino")
    frames = colour_frames()
    runtime = bp.OpenVinoRuntime(tiny, 2, "f32")
    np.testing.assert_allclose(runtime.run(frames), bp.OrtRuntime(tiny, 2).run(frames), atol=1e-5)
    assert runtime.precision.endswith("hint f32")


def test_torch_eager_gives_the_embedded_int8_models_label_on_a_real_photo() -> None:
    pytest.importorskip("torch")
    reference = bp.OrtRuntime(default_model_path(), 2)
    x = bp.load_photo(PHOTOS / "squirrel_cls.jpg", reference.model)
    torch_probs = bp.TorchRuntime(reference.model.info.arch, 2).run(x)
    expected = reference.run(x)
    assert torch_probs.argmax() == expected.argmax()
    assert reference.model.labels[int(torch_probs.argmax())] == "fox squirrel"


def test_a_runtime_that_cannot_open_gives_a_reason_instead_of_figures(tmp_path: Path) -> None:
    def missing() -> object:
        import edgerec_no_such_runtime  # noqa: F401

    def broken() -> object:
        return bp.Cv2DnnRuntime(tmp_path / "absent.onnx", 2)

    x = colour_frames()
    assert bp.try_open(missing, x)[2] == "not installed (edgerec_no_such_runtime)"
    assert bp.try_open(broken, x)[2].startswith("failed: ")


def test_report_table_has_one_row_per_runtime_with_ratio_to_the_reference() -> None:
    timing = bp.Timing(2.0, 3.0)
    rows = [bp.PeerRow("onnxruntime FP32", "fp32", timing, "cat", 0.9, 0.0),
            bp.PeerRow("slow", "fp32", bp.Timing(5.0, 6.0), "cat", 0.9, 1e-7),
            bp.PeerRow("absent", failure="not installed (x)")]
    report = bp.PeerReport(rows, "cpu", 2, 10, 5.0, "unset", Path("p.jpg"), (1.0, 1.0, 1.0), (1.2, 1.0, 1.0), 0.25)
    table = bp.format_report(report).splitlines()
    assert "| slow | fp32 | 5.00 | 6.00 | 2.50x | cat (0.900) | 1.0e-07 |" in table
    assert any(line.startswith("| absent |") and "not installed (x)" in line for line in table)
    assert "5 ms pause before each call, OMP_WAIT_POLICY unset" in table[1]
    assert "before 1.00 / 1.00 / 1.00, after 1.20 / 1.00 / 1.00; other processes used 25% of the CPUs" in table[2]
