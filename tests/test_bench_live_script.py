import importlib.util

from conftest import REPO, make_tiny_model

from edge.core.model import Model


def load_script():
    spec = importlib.util.spec_from_file_location("bench_live", REPO / "scripts" / "bench" / "bench_live.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_bench_measures_frame_age_and_finds_no_stale_frame(tmp_path):
    model = Model.load(make_tiny_model(tmp_path / "tiny.onnx"), "cpu", 1)
    summary, watched, cpu = load_script().measure(fps=40, seconds=1.0, size=(160, 120), model=model, decode_scale=2)
    assert summary.stopped_by == "duration" and summary.inferred == summary.frames >= 20
    assert summary.frame_age.count == summary.inferred and summary.frame_age.p95_ms < 25 + 15  # interval + slack
    assert watched.newer_at_read == 0  # every read handed over the newest frame
    assert 0 < cpu < 2.5  # CPU seconds per second on at most 2 cores (and a little slack)
