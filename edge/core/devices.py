"""`--device` choices and the ONNX Runtime execution providers (with options) each one asks for.

Pure Python: the config validates device names without loading onnxruntime. A choice may carry one
option after a colon: the GPU index for `cuda:1` / `tensorrt:1`, the OpenVINO device for `openvino:GPU`.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgerecError

CPU = "CPUExecutionProvider"
# device name -> providers to request, best first (CPU is always appended as the fallback).
DEVICES: dict[str, tuple[str, ...]] = {
    "cpu": (CPU,),
    "cuda": ("CUDAExecutionProvider",),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
    "openvino": ("OpenVINOExecutionProvider",),
    "coreml": ("CoreMLExecutionProvider",),
    "directml": ("DmlExecutionProvider",),
    "qnn": ("QNNExecutionProvider",),
    "xnnpack": ("XnnpackExecutionProvider",),
}
# What `auto` tries, in order. OpenVINO is left out: on CPUs with AMX it runs FP32 files in bf16 by default,
# which changes labels (../shared/MEASURED.md); ask for it with --device openvino.
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
GPU_INDEXED = ("cuda", "tensorrt")
OPENVINO_TYPE = re.compile(r"^(CPU|GPU(\.\d+)?|NPU|AUTO:[A-Z.,0-9]+|HETERO:[A-Z.,0-9]+|MULTI:[A-Z.,0-9]+)$")
Provider = tuple[str, dict[str, str]]


@dataclass(frozen=True)
class Device:
    """A parsed --device value: ``name`` from DEVICES or "auto", and its option (GPU index, OpenVINO type)."""

    name: str
    option: str = ""

    def __str__(self) -> str:
        return f"{self.name}:{self.option}" if self.option else self.name


def parse_device(text: str) -> Device:
    """'auto', 'cpu', 'cuda:1', 'tensorrt', 'openvino:GPU'... -> Device; anything else is a one-line error."""
    name, _, option = text.partition(":")
    if name != "auto" and name not in DEVICES:
        raise EdgerecError(f"unknown device {text!r}; valid: auto, {', '.join(DEVICES)} "
                           "(cuda:N / tensorrt:N pick a GPU, openvino:CPU|GPU|NPU an OpenVINO device)")
    if option and name in GPU_INDEXED and not option.isdigit():
        raise EdgerecError(f"device {text!r}: the part after ':' is a GPU index, e.g. {name}:0")
    if option and name == "openvino" and not OPENVINO_TYPE.match(option):
        raise EdgerecError(f"device {text!r}: OpenVINO device must be CPU, GPU, GPU.N, NPU, AUTO:..., HETERO:...")
    if option and name not in (*GPU_INDEXED, "openvino"):
        raise EdgerecError(f"device {text!r}: {name} takes no option after ':'")
    return Device(name, option)


def resolve_providers(device: str, available: Sequence[str], cache_dir: Path | None = None) -> list[Provider]:
    """Providers with their options for a --device choice, given what this onnxruntime build has.

    `auto` picks the first of AUTO_ORDER that is available; an explicit choice that is not available is an
    error listing what is. ``cache_dir`` holds TensorRT engines and OpenVINO blobs, so a restart is fast.
    """
    choice = parse_device(device)
    if choice.name == "auto":
        name = next(n for n in AUTO_ORDER if all(p in available for p in DEVICES[n]))
        choice = Device(name)
    missing = [p for p in DEVICES[choice.name] if p not in available]
    if missing:
        usable = [name for name, needs in DEVICES.items() if all(p in available for p in needs)]
        raise EdgerecError(f"device {device!r} needs {', '.join(missing)}, which this onnxruntime lacks; "
                           f"available here: {', '.join(['auto', *usable])}")
    cache = cache_dir or default_cache_dir()
    providers = [(p, provider_options(p, choice, cache)) for p in DEVICES[choice.name]]
    return providers if choice.name == "cpu" else [*providers, (CPU, {})]


def provider_options(provider: str, choice: Device, cache: Path) -> dict[str, str]:
    """The options a Jetson or Intel user needs; ONNX Runtime takes them as strings."""
    gpu = {"device_id": choice.option or "0"}
    if provider == "TensorrtExecutionProvider":
        engines = str(cache / "tensorrt")
        return {**gpu, "trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": engines, "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": engines}
    if provider == "CUDAExecutionProvider":
        return gpu
    if provider == "OpenVINOExecutionProvider":
        return {"device_type": choice.option or "CPU", "cache_dir": str(cache / "openvino")}
    return {}


def default_cache_dir() -> Path:
    """$STATE_DIRECTORY (set by systemd's StateDirectory=) or $XDG_CACHE_HOME/edgerec or ~/.cache/edgerec."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgerec"


def physical_cores(cpuinfo: str | None = None) -> int:
    """Physical cores, which ONNX Runtime's default intra-op pool uses (hyper-threads are not counted).

    From the (physical id, core id) pairs of /proc/cpuinfo; where it has none (ARM boards list no core
    ids, and have no hyper-threads) or cannot be read, the number of CPUs this process may run on.
    """
    if cpuinfo is None:
        cpuinfo = _read_cpuinfo()
    cores = set()
    for block in cpuinfo.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    if cores:
        return len(cores)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")
"""The instruction sets INT8 speed and answers depend on: VNNI (x86) and the dot-product extensions (ARM) sum
u8 x s8 products in 32 bits in one instruction; AVX2 alone needs two and saturates (docs/quantization.md)."""


INT8_UNSATURATED = "session.x64quantprecision"
"""ONNX Runtime's session setting for x86 CPUs without VNNI: multiply INT8 tensors as u8 x u8 with 32-bit sums
instead of the u8 x s8 pairs whose 16-bit sums saturate. It costs CPU there (10.8-15.5 against 7.4-8.1 ms for
the default model, one thread, AMD Zen 3) and buys FP32's labels, so every session sets it there unless told
`--fast-int8` (`Model.load(int32_sums=...)`); with VNNI it gives the same numbers 2x slower (8.5 against 4.3 ms
an image, one thread, AMD Zen 4: scripts/bench/bench_int8_sums.py), so it is set only where `int8_sums_saturate`."""
KEPT_FLOAT = ("WeightBiasQuantization",)
"""ONNX Runtime graph optimisations every edgerec session turns off (``disabled_optimizers``), so that the layers
a file keeps in float run in float. WeightBiasQuantization (ONNX Runtime 1.20 and later) gives every convolution
or Gemm that reads a quantized tensor but has float weights symmetric *per-tensor* INT8 weights (one scale for all
of a layer's channels) when the session opens: a file with its depthwise convolutions kept in float then agreed
with FP32 on 74% of photos instead of 91% (AMD Zen 4, docs/quantization.md). Names ONNX Runtime does not know are
ignored, so an older or newer ONNX Runtime opens every file as before."""
ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l")
"""platform.machine() of ARM CPUs (Linux, macOS)."""
SUMMING_IN_32_BITS = ("avx512_vnni", "avx_vnni", "asimd")
"""Instruction sets with which ONNX Runtime's INT8 kernels sum every product in 32 bits: VNNI (x86) and ARM's
NEON (its kernels widen to 16-bit products and add them in 32 bits)."""


def int8_sums_saturate(cpu: CpuInfo | None = None) -> bool:
    """Whether this CPU's INT8 kernels add pairs of u8 x s8 products in a saturating 16-bit sum (x86 with AVX2
    and no VNNI, and an x86 whose flags cannot be read: counted as saturating, so an exact figure stays exact
    there, only slower). ARM never does, whether its flags can be read or not (macOS has no /proc/cpuinfo)."""
    if cpu is None:
        if platform.machine().lower() in ARM_MACHINES:
            return False
        cpu = cpu_info()
    return not any(feature in cpu.features for feature in SUMMING_IN_32_BITS)


def int8_sums(int32_sums: bool = True) -> str:
    """How this CPU sums INT8 products in a session opened with `int32_sums`: "32-bit" or "16-bit saturating"."""
    return "16-bit saturating" if int8_sums_saturate() and not int32_sums else "32-bit"


@dataclass(frozen=True)
class CpuInfo:
    name: str
    family: str
    """x86 only ("" elsewhere), as are `model`; with the name they tell a Zen 3 from a Zen 4."""
    model: str
    features: tuple[str, ...]
    """Those of CPU_FEATURES this CPU has, in that order."""
    cpus: int
    """Logical CPUs of the machine this runs on (os.cpu_count)."""


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """The CPU a figure is measured on, from /proc/cpuinfo (x86 "flags", ARM "Features"; "unknown" where it
    cannot be read)."""
    if cpuinfo is None:
        cpuinfo = _read_cpuinfo()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or "unknown CPU"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return CpuInfo(name, fields.get("cpu family", ""), fields.get("model", ""),
                   tuple(f for f in CPU_FEATURES if f in flags), os.cpu_count() or 1)


def cpu_description(cpuinfo: str | None = None) -> str:
    """'AMD EPYC (family 25 model 17; avx2 avx512f avx512_vnni), 2 CPUs': what every benchmark figure names."""
    cpu = cpu_info(cpuinfo)
    details = [f"family {cpu.family} model {cpu.model}"] if cpu.family else []
    details.append(" ".join(cpu.features) or "none of the INT8 extensions listed")
    return f"{cpu.name} ({'; '.join(details)}), {cpu.cpus} CPUs"


def _read_cpuinfo() -> str:
    """/proc/cpuinfo, or "" where there is none (not Linux) or it cannot be read."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
