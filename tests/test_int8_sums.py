"""INT8 answers the same on every CPU: 32-bit sums by default, the saturating x86 kernels only when asked
(edge.core.devices.int8_sums_saturate, Model.load(int32_sums=...), --fast-int8 / [model] fast_int8;
docs/quantization.md)."""

from __future__ import annotations

import logging

import pytest
from conftest import make_tiny_model, run_cli
from test_bench import PI5, X86

import edge.core.model as model_module
from edge.app import bench as bench_module
from edge.app.bench import bench, cpu_note
from edge.core.devices import INT8_UNSATURATED, cpu_info, int8_sums, int8_sums_saturate
from edge.core.model import Model
from edge.live.capture import SourceOptions
from edge.loop import pipeline
from edge.loop.options import RunOptions

ZEN3 = "model name\t: AMD EPYC 7R13\ncpu family\t: 25\nmodel\t\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n"
ALDER_LAKE = "model name\t: 12th Gen Intel(R) Core(TM) i5-1235U\nflags\t\t: sse2 avx avx2 avx_vnni\n"


def unsaturated(model: Model) -> bool:
    """Whether the session was opened with ONNX Runtime's 32-bit-sum setting."""
    try:
        return model.session.get_session_options().get_session_config_entry(INT8_UNSATURATED) == "1"
    except Exception as error:  # onnxruntime raises when the entry was never set
        assert "does not have configuration" in str(error)
        return False


@pytest.fixture
def saturating(monkeypatch):
    """This CPU taken for an x86 without VNNI."""
    for module in (model_module, pipeline, bench_module):
        monkeypatch.setattr(module, "int8_sums_saturate", lambda: True)
    monkeypatch.setattr("edge.core.devices.int8_sums_saturate", lambda cpu=None: True)


@pytest.mark.parametrize("text, saturates", [(X86, False), (PI5, False), (ALDER_LAKE, False), (ZEN3, True),
                                             ("", True)])
def test_int8_sums_saturate_only_on_x86_without_vnni_or_where_unknown(text, saturates):
    assert int8_sums_saturate(cpu_info(text)) is saturates


def test_an_arm_machine_never_saturates_even_without_cpuinfo(monkeypatch):
    import edge.core.devices as devices

    monkeypatch.setattr(devices, "_read_cpuinfo", lambda: "")
    monkeypatch.setattr(devices.platform, "machine", lambda: "arm64")
    assert not devices.int8_sums_saturate()
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    assert devices.int8_sums_saturate()


def test_the_setting_is_made_by_default_and_only_where_the_kernels_saturate(saturating, monkeypatch):
    assert unsaturated(Model.load(None, "cpu", threads=1))
    assert not unsaturated(Model.load(None, "cpu", threads=1, int32_sums=False))
    monkeypatch.setattr(model_module, "int8_sums_saturate", lambda: False)  # VNNI, ARM: the same numbers, slower
    assert not unsaturated(Model.load(None, "cpu", threads=1))


def test_the_run_loads_with_32_bit_sums_unless_fast_int8(saturating, caplog):
    options = RunOptions(SourceOptions("demo"), device="cpu", threads=1)
    with caplog.at_level(logging.INFO, "edgerec.pipeline"):
        exact = pipeline.load_models(options, options.camera_options(), None, spinning=False)
        fast = pipeline.load_models(RunOptions(SourceOptions("demo"), device="cpu", threads=1, fast_int8=True),
                                    options.camera_options(), None, spinning=False)
    assert unsaturated(next(iter(exact.values()))) and not unsaturated(next(iter(fast.values())))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model ")]
    assert lines[0].endswith("spinning off, INT8 in 32-bit sums")
    assert lines[1].endswith("spinning off, INT8 in 16-bit saturating sums (fast_int8)")


def test_the_run_says_nothing_of_the_sums_where_there_is_no_choice(tmp_path):
    fp32 = Model.load(make_tiny_model(tmp_path / "tiny.onnx"), "cpu", threads=1)
    assert pipeline.sums_note(fp32, fast_int8=True) == ""
    if not int8_sums_saturate():
        assert pipeline.sums_note(Model.load(None, "cpu", threads=1), fast_int8=True) == ""


def test_bench_names_the_sums_it_timed(saturating):
    assert [r.int8_sums for r in bench([None], "cpu", threads=1, runs=2)] == ["32-bit"]
    assert [r.int8_sums for r in bench([None], "cpu", threads=1, runs=2, fast_int8=True)] == ["16-bit saturating"]
    assert cpu_note("32-bit") == "; INT8 in 32-bit sums (--fast-int8: the faster saturating kernels)"
    assert cpu_note("16-bit saturating") == "; INT8 in 16-bit saturating sums (--fast-int8)"
    assert int8_sums(False) == "16-bit saturating" and int8_sums(True) == "32-bit"


def test_fast_int8_is_a_flag_of_the_commands_that_run_a_model():
    for command in ("run", "classify", "bench"):
        done = run_cli(command, "--help")
        assert done.returncode == 0 and "--fast-int8" in done.stdout, command
    done = run_cli("classify", "--fast-int8", "--samples", "--top-k", "1")
    assert done.returncode == 0 and done.stdout.count("\n") == 3, done.stderr
