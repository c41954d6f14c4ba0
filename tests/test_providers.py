"""--device maps onto ONNX Runtime execution providers; faked provider lists stand in for GPUs/NPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from edge.errors import EdgerecError
from edge.model import resolve_providers

CPU = "CPUExecutionProvider"


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    assert resolve_providers("auto", gpu) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    assert resolve_providers("auto", ["CUDAExecutionProvider", CPU]) == ["CUDAExecutionProvider", CPU]
    assert resolve_providers("auto", [CPU]) == [CPU]


def test_auto_does_not_pick_openvino_silently() -> None:
    assert resolve_providers("auto", ["OpenVINOExecutionProvider", CPU]) == [CPU]
    assert resolve_providers("openvino", ["OpenVINOExecutionProvider", CPU]) == ["OpenVINOExecutionProvider", CPU]


def test_explicit_choice_keeps_cpu_fallback() -> None:
    assert resolve_providers("cuda", ["CUDAExecutionProvider", CPU]) == ["CUDAExecutionProvider", CPU]
    assert resolve_providers("cpu", [CPU]) == [CPU]


def test_unavailable_choice_lists_what_is_available() -> None:
    with pytest.raises(EdgerecError, match=r"device 'cuda' needs CUDAExecutionProvider.*available here: auto, cpu$"):
        resolve_providers("cuda", [CPU])
    with pytest.raises(EdgerecError, match="tensorrt"):
        resolve_providers("tensorrt", ["CUDAExecutionProvider", CPU])


def test_unknown_device_is_refused_on_the_command_line(tiny_model: Path) -> None:
    result = run_cli("info", str(tiny_model))
    assert result.returncode == 0
    result = run_cli("classify", "x.jpg", "--model", str(tiny_model), "--device", "npu9")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "unknown device 'npu9'; valid: auto, cpu, cuda" in result.stderr
