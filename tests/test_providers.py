"""--device maps onto ONNX Runtime execution providers with their options; faked provider lists stand in
for GPUs and NPUs (this machine has none)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli

from edge.core.devices import default_cache_dir, parse_device, physical_cores, resolve_providers
from edge.errors import EdgerecError

CPU = "CPUExecutionProvider"
TRT, CUDA, OV = "TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"


def names(providers: list) -> list[str]:
    return [name for name, _ in providers]


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert names(resolve_providers("auto", [TRT, CUDA, CPU])) == [TRT, CUDA, CPU]
    assert names(resolve_providers("auto", [CUDA, CPU])) == [CUDA, CPU]
    assert names(resolve_providers("auto", [CPU])) == [CPU]


def test_auto_does_not_pick_openvino_silently() -> None:
    assert names(resolve_providers("auto", [OV, CPU])) == [CPU]
    assert names(resolve_providers("openvino", [OV, CPU])) == [OV, CPU]


def test_explicit_choice_keeps_cpu_fallback() -> None:
    assert names(resolve_providers("cuda", [CUDA, CPU])) == [CUDA, CPU]
    assert names(resolve_providers("cpu", [CUDA, CPU])) == [CPU]


def test_tensorrt_gets_fp16_and_an_engine_cache_so_the_second_start_is_fast(tmp_path: Path) -> None:
    providers = dict(resolve_providers("tensorrt:1", [TRT, CUDA, CPU], cache_dir=tmp_path))
    trt = providers[TRT]
    assert trt["device_id"] == "1" and trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_engine_cache_path"] == str(tmp_path / "tensorrt")
    assert providers[CUDA] == {"device_id": "1"}  # TensorRT falls back to CUDA on the same GPU, then CPU
    assert list(providers) == [TRT, CUDA, CPU]


def test_cuda_device_id_and_openvino_device_type(tmp_path: Path) -> None:
    assert dict(resolve_providers("cuda:2", [CUDA, CPU]))[CUDA] == {"device_id": "2"}
    ov = dict(resolve_providers("openvino:GPU.1", [OV, CPU], cache_dir=tmp_path))[OV]
    assert ov == {"device_type": "GPU.1", "cache_dir": str(tmp_path / "openvino")}
    assert dict(resolve_providers("openvino", [OV, CPU], cache_dir=tmp_path))[OV]["device_type"] == "CPU"


def test_engine_cache_lives_in_the_service_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/other")
    assert default_cache_dir() == tmp_path / "state" / "cache"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edgerec"


def test_unavailable_choice_lists_what_is_available() -> None:
    with pytest.raises(EdgerecError, match=r"device 'cuda' needs CUDAExecutionProvider.*available here: auto, cpu$"):
        resolve_providers("cuda", [CPU])
    with pytest.raises(EdgerecError, match="tensorrt"):
        resolve_providers("tensorrt", [CUDA, CPU])


@pytest.mark.parametrize("text, message", [
    ("npu9", "unknown device 'npu9'; valid: auto, cpu, cuda"),
    ("cuda:first", "GPU index"),
    ("openvino:TPU", "OpenVINO device must be"),
    ("cpu:1", "cpu takes no option"),
])  # fmt: skip
def test_bad_device_values_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(EdgerecError, match=message):
        parse_device(text)


def test_unknown_device_is_refused_on_the_command_line(tiny_model: Path) -> None:
    result = run_cli("classify", "x.jpg", "--model", str(tiny_model), "--device", "npu9")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "unknown device 'npu9'; valid: auto, cpu, cuda" in result.stderr
    result = run_cli("info", str(tiny_model))
    assert result.returncode == 0


def test_bench_json_reports_the_provider_actually_used(tiny_model: Path) -> None:
    import json

    result = run_cli("bench", str(tiny_model), "--runs", "3", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["provider"] == CPU


def test_an_accelerator_that_fails_is_named_not_the_file(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from edge.core import model as model_module

    real = ort.InferenceSession

    def session(path, options, providers, **kwargs):  # OpenVINO "fails to compile", as under a strict unit
        if providers[0][0] == OV:
            raise RuntimeError("OpenVINO-EP: can't protect\nmore detail")
        return real(path, options, providers=providers, **kwargs)

    monkeypatch.setattr(model_module.ort, "InferenceSession", session)
    monkeypatch.setattr(model_module.ort, "get_available_providers", lambda: [OV, CPU])
    with pytest.raises(EdgerecError) as error:
        model_module.Model.load(tiny_model, "openvino")
    assert str(error.value) == (f"{tiny_model}: {OV} could not run this model (OpenVINO-EP: can't protect); "
                                "--device cpu runs it")
    with pytest.raises(EdgerecError, match="not a loadable ONNX model"):
        model_module.Model.load(Path(__file__), "openvino")  # a bad file is still called a bad file


@pytest.mark.parametrize("cpuinfo, cores", [
    ("".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i % 2}\n\n" for i in range(4)), 2),  # 2 cores, HT
    ("".join(f"processor\t: {i}\nphysical id\t: {i // 2}\ncore id\t\t: 0\n\n" for i in range(4)), 2),  # 2 sockets
])
def test_default_threads_count_physical_cores_not_hyperthreads(cpuinfo: str, cores: int) -> None:
    assert physical_cores(cpuinfo) == cores


def test_default_threads_without_core_ids_are_the_cpus_we_may_use() -> None:
    arm = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0b\n\n" for i in range(4))  # a Pi 5
    assert physical_cores(arm) == len(os.sched_getaffinity(0))
