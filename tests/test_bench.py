import json

import cv2
import pytest
from conftest import make_tiny_model

from edge.app.bench import bench_pipeline, decoded_frame, pipeline_table
from edge.app.cli import main
from edge.core.devices import cpu_description, cpu_info


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_pipeline_bench_times_the_path_against_session_run_on_both_clocks(tiny):
    before = cv2.getNumThreads()
    result = bench_pipeline(tiny, "cpu", threads=2, runs=6, opencv_threads=1, spinning=False)

    assert cv2.getNumThreads() == before and result.wall_threads == 2 and not result.spinning
    for rows in (result.wall, result.cpu_1thread):
        assert [(r.frame_size, r.places, r.sink) for r in rows] == [
            ("640x480", "whole", "null"), ("640x480", "whole", "pixels"),
            ("1920x1080", "whole", "null"), ("1920x1080", "whole", "pixels"),
            ("1920x1080", "1 quarter", "null"), ("1920x1080", "1 quarter", "pixels"),
            ("1920x1080", "3 quarters", "null"), ("1920x1080", "3 quarters", "pixels")]
        for row in rows:
            ms = {name: t.median_ms for name, t in row.stages.items()}
            regions = 3 if row.places == "3 quarters" else 1
            assert ("overlay" in ms) == (row.sink == "pixels")
            assert 0 < ms["preprocess"] < ms["frame"] and 0 < ms["beyond-model"] < ms["frame"]
            assert row.beyond_pct == pytest.approx(100 * ms["beyond-model"] / regions / row.session.median_ms)
            assert row.infer_per_region_pct == pytest.approx(100 * ms["infer"] / regions / row.session.median_ms)
            assert row.target_pct == ({"640x480": 10, "1920x1080": 25}[row.frame_size] if row.places == "whole"
                                      else 15)
    # a 1920x1080 frame costs more to fit than a 640x480 one, three quarter regions more than one (CPU time)
    cpu = {(r.frame_size, r.places, r.sink): r.stages["preprocess"].median_ms for r in result.cpu_1thread}
    assert cpu["1920x1080", "whole", "null"] > cpu["640x480", "whole", "null"]
    assert cpu["1920x1080", "3 quarters", "null"] > cpu["1920x1080", "1 quarter", "null"]
    table = pipeline_table(result)
    assert len(table) == 3 + 16 + 1 and table[0].startswith(f"CPU: {cpu_description()}")
    assert "tiny.onnx" in table[1] and "spinning off" in table[1]


def test_bench_pipeline_cli_json_and_one_model_only(tiny, capsys):
    assert main(["bench", "--pipeline", str(tiny), "--device", "cpu", "--runs", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs"] == 3 and len(result["wall"]) == len(result["cpu_1thread"]) == 8
    assert result["spinning"] and result["opencv_threads"] == 1 and result["cpu"] == cpu_description()

    assert main(["bench", "--pipeline", str(tiny), str(tiny)]) == 2
    assert "at most one MODEL" in capsys.readouterr().err


X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16

processor\t: 1
model name\t: AMD EPYC 9R14
"""
PI5 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41

Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


@pytest.mark.parametrize("text, name, features, family", [
    (X86, "AMD EPYC 9R14", ("avx2", "avx512f", "avx512_vnni"), "family 25 model 17; "),
    (PI5, "Raspberry Pi 5 Model B Rev 1.0", ("asimd", "asimddp"), ""),
])
def test_figures_name_the_cpu_and_the_extensions_int8_depends_on(text, name, features, family):
    cpu = cpu_info(text)
    assert (cpu.name, cpu.features) == (name, features)
    assert cpu_description(text).startswith(f"{name} ({family}{' '.join(features)}), ")


def test_an_unreadable_cpuinfo_still_describes_something():
    assert cpu_description("").startswith("unknown CPU (none of the INT8 extensions listed), ")


def test_pipeline_bench_can_take_the_camera_frames_as_mjpeg_decoded_at_a_fraction(tiny, capsys):
    result = bench_pipeline(tiny, "cpu", threads=1, runs=3, decode_scale=2)
    assert result.decode_scale == 2 and len(result.wall) == len(result.cpu_1thread) == 8
    assert "camera frames JPEG-decoded at 1/2 size (--decode-scale): the path sees 320x240, 960x540" in \
        pipeline_table(result)[1]
    assert decoded_frame(1080, 1920, 2).shape == (540, 960, 3) and decoded_frame(480, 640, 1).shape == (480, 640, 3)
    assert main(["bench", str(tiny), "--decode-scale", "2"]) == 2
    assert "--decode-scale applies to --pipeline" in capsys.readouterr().err
