#!/usr/bin/env python3
"""Run one network on several runtimes in one process: latency, precision used, and whether they agree.

Each runtime gets the same uint8 NHWC BGR photo (fitted with edge.core.preprocess.fit), batch 1 and the same
thread count, set explicitly for each. Timing rounds are interleaved (each round runs every runtime once),
so a noisy neighbour slows all of them alike: compare the ratios of one run, not absolute figures across
runs. A short pause before each call (--pause-ms) lets the previous runtime's worker threads stop spinning
before the next runtime starts, as a camera loop leaves idle time between frames; --pause-ms 0 runs them
back to back, as edge.app.bench.time_interleaved does. A runtime that is not installed or cannot run the file
gets a row that says why; the others go on.

    python scripts/build_default_model.py --out /tmp/peers-build \\
        --calibration /tmp/ocvdoc/usr/share/doc/opencv-doc/examples/data --check tests/data/photos
    python scripts/bench/bench_peers.py --fp32 /tmp/peers-build/efficientnet_lite0_imagenet_fp32.onnx
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from edge.app.bench import Timing
from edge.core.model import Model, default_model_path
from edge.core.preprocess import fit
from edge.errors import EdgerecError

REPO = Path(__file__).resolve().parents[2]
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class PeerOptions:
    fp32: Path
    int8: Path = field(default_factory=default_model_path)
    photo: Path = REPO / "tests" / "data" / "photos" / "squirrel_cls.jpg"
    runs: int = 200
    threads: int = 2
    pause_ms: float = 10.0  # idle time before each timed call


@dataclass(frozen=True)
class PeerRow:
    runtime: str
    precision: str = ""  # what the runtime actually computed in, as it reports it
    timing: Timing | None = None
    label: str = ""  # top-1 on the photo
    score: float = 0.0
    max_abs_diff: float = 0.0  # of the probabilities, vs ONNX Runtime FP32
    failure: str = ""  # why the runtime has no figures


@dataclass(frozen=True)
class PeerReport:
    rows: list[PeerRow]
    cpu: str
    threads: int
    runs: int
    pause_ms: float
    omp_wait_policy: str  # libgomp (torch) spins or sleeps between parallel regions; matters on a loaded machine
    photo: Path
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    others_cpu: float  # share of all CPUs that other processes used while the rounds ran (0..1)


class OrtRuntime:
    """ONNX Runtime on CPU through the project's own Model (intra_op_num_threads = threads)."""

    def __init__(self, path: Path, threads: int):
        self.model = Model.load(path, "cpu", threads)
        self.precision = self.model.info.precision

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model.infer(x)


class TorchRuntime:
    """torch eager: training.models' network with ImageNet weights in the Deployable wrapper (uint8 NHWC BGR)."""

    def __init__(self, arch: str, threads: int):
        import torch

        from training.models import Deployable, create_model

        torch.set_num_threads(threads)
        self.torch = torch
        self.net = Deployable(create_model(arch, pretrained=True)).eval()
        self.precision = str(next(self.net.parameters()).dtype).removeprefix("torch.")  # no autocast

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(x)).numpy()


class Cv2DnnRuntime:
    """OpenCV's dnn module, new engine (OpenCV 5.0's classic engine cannot parse the dynamic batch axis).
    OpenCV 5.0 names it ENGINE_NEW; 5.1 dropped the classic engine and calls the new one ENGINE_OPENCV."""

    def __init__(self, path: Path, threads: int):
        cv2.setNumThreads(threads)
        engine = getattr(cv2.dnn, "ENGINE_NEW", None)
        self.net = cv2.dnn.readNetFromONNX(str(path), cv2.dnn.ENGINE_OPENCV if engine is None else engine)
        self.precision = "fp32"  # DNN_TARGET_CPU, the default; fp16 only with DNN_TARGET_CPU_FP16

    def run(self, x: np.ndarray) -> np.ndarray:
        self.net.setInput(x)
        return self.net.forward()


class OpenVinoRuntime:
    """OpenVINO on CPU; ``precision_hint`` None leaves INFERENCE_PRECISION_HINT at the plugin's default.

    ``precision`` reports what the compiled convolutions run in (OpenVINO may lower an FP32 model to bf16,
    and runs an INT8 QDQ model's convolutions in u8) and the precision hint that governs the rest.
    """

    def __init__(self, path: Path, threads: int, precision_hint: str | None):
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        layers = [{k: v.astype(str) for k, v in op.get_rt_info().items() if k in ("layerType", "runtimePrecision")}
                  for op in compiled.get_runtime_model().get_ops()]
        convs = sorted({i["runtimePrecision"] for i in layers if i["layerType"] == "Convolution"})
        self.precision = f"convolutions {'+'.join(convs)}, hint {hint}"
        self.request = compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x}, share_inputs=True)[0]


def peers(options: PeerOptions, reference: OrtRuntime) -> dict[str, Callable[[], object]]:
    """Every runtime to compare, by row name; the reference (ONNX Runtime FP32) comes first."""
    fp32, int8, threads = options.fp32, options.int8, options.threads
    return {
        "onnxruntime FP32": lambda: reference,
        "onnxruntime INT8": lambda: OrtRuntime(int8, threads),
        "torch eager": lambda: TorchRuntime(reference.model.info.arch, threads),
        "cv2.dnn FP32 file": lambda: Cv2DnnRuntime(fp32, threads),
        "cv2.dnn INT8 file": lambda: Cv2DnnRuntime(int8, threads),
        "OpenVINO FP32 file, default hint": lambda: OpenVinoRuntime(fp32, threads, None),
        "OpenVINO FP32 file, hint f32": lambda: OpenVinoRuntime(fp32, threads, "f32"),
        "OpenVINO INT8 file, default hint": lambda: OpenVinoRuntime(int8, threads, None),
    }


def bench_peers(options: PeerOptions) -> PeerReport:
    load_before = os.getloadavg()
    reference = OrtRuntime(options.fp32, options.threads)
    x = load_photo(options.photo, reference.model)
    opened = {name: try_open(open_runtime, x) for name, open_runtime in peers(options, reference).items()}
    running = [name for name, (runtime, _, _) in opened.items() if runtime is not None]
    calls = [partial(opened[name][0].run, x) for name in running]
    before = cpu_seconds()
    timings = dict(zip(running, time_rounds(calls, options.runs, options.pause_ms / 1000)))
    others_cpu = others_share(before, cpu_seconds())
    load_after = os.getloadavg()
    expected, labels = opened["onnxruntime FP32"][1], reference.model.labels
    rows = [PeerRow(name, failure=failure) if failure else
            PeerRow(name, runtime.precision, timings[name], labels[int(probs.argmax())], float(probs.max()),
                    float(np.abs(probs - expected).max()))
            for name, (runtime, probs, failure) in opened.items()]
    return PeerReport(rows, cpu_description(), options.threads, options.runs, options.pause_ms,
                      os.environ.get("OMP_WAIT_POLICY", "unset"), options.photo, load_before, load_after, others_cpu)


def time_rounds(calls: list[Callable[[], object]], runs: int, pause_s: float, warmup: int = 10) -> list[Timing]:
    """Interleaved rounds like edge.app.bench.time_interleaved, with ``pause_s`` of idle time before each call."""
    samples: list[list[float]] = [[] for _ in calls]
    for call in calls:
        for _ in range(warmup):
            call()
    for _ in range(runs):
        for call, sample in zip(calls, samples):
            time.sleep(pause_s)
            start = time.perf_counter()
            call()
            sample.append((time.perf_counter() - start) * 1000)
    return [Timing(float(np.median(s)), float(np.percentile(s, 95))) for s in samples]


def load_photo(path: Path, model: Model) -> np.ndarray:
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise EdgerecError(f"{path}: not a readable image")
    return np.ascontiguousarray(fit(photo, model.geometry)[None])


def try_open(open_runtime: Callable[[], object], x: np.ndarray) -> tuple[object, np.ndarray, str]:
    """Open a runtime and run it once on ``x``; a runtime that is missing or fails gives the reason instead."""
    try:
        runtime = open_runtime()
        return runtime, np.asarray(runtime.run(x), np.float32).reshape(len(x), -1), ""
    except ImportError as exc:
        return None, np.empty(0), f"not installed ({exc.name})"
    except Exception as exc:  # each runtime raises its own types; one failing peer must not stop the others
        return None, np.empty(0), "failed: " + " ".join(str(exc).split())[:200]


def cpu_seconds() -> tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    own = os.times()
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def others_share(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Share of all CPUs that other processes kept busy between two ``cpu_seconds`` readings."""
    wall, busy, own = (b - a for a, b in zip(before, after))
    return max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def cpu_description() -> str:
    """The CPU model name and which of the SIMD/matrix extensions that matter here it has."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    flags = set(fields.get("flags", "").split())
    present = ", ".join(f for f in CPU_FLAGS if f in flags) or "none"
    absent = ", ".join(f for f in CPU_FLAGS if f not in flags) or "none"
    return f"{fields.get('model name', 'unknown')}, {os.cpu_count()} logical CPUs; has {present}; lacks {absent}"


def format_report(report: PeerReport) -> str:
    base = report.rows[0].timing.median_ms
    lines = [f"CPU: {report.cpu}",
             f"batch 1, threads per runtime {report.threads}, {report.runs} interleaved rounds, "
             f"{report.pause_ms:g} ms pause before each call, OMP_WAIT_POLICY {report.omp_wait_policy}, "
             f"photo {report.photo.name}",
             f"load average (1/5/15 min) before {_load(report.load_before)}, after {_load(report.load_after)}; "
             f"other processes used {report.others_cpu:.0%} of the CPUs while the rounds ran",
             "",
             "| runtime | precision used | median ms | p95 ms | time / ORT FP32 | top-1 (p) "
             "| max abs prob diff vs ORT FP32 |",
             "|---|---|---|---|---|---|---|"]
    for row in report.rows:
        if row.failure:
            lines.append(f"| {row.runtime} | — | — | — | — | {row.failure} | — |")
            continue
        lines.append(f"| {row.runtime} | {row.precision} | {row.timing.median_ms:.2f} | {row.timing.p95_ms:.2f} | "
                     f"{row.timing.median_ms / base:.2f}x | {row.label} ({row.score:.3f}) | {row.max_abs_diff:.1e} |")
    return "\n".join(lines)


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True, help="FP32 contract file (scripts/build_default_model.py)")
    parser.add_argument("--int8", type=Path, default=default_model_path(),
                        help="INT8 contract file (default: the embedded model)")
    parser.add_argument("--photo", type=Path, default=PeerOptions.photo, help="BGR photo (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=200, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=2, help="threads for every runtime")
    parser.add_argument("--pause-ms", type=float, default=PeerOptions.pause_ms,
                        help="idle time before each timed call (default: %(default)s; 0 = back to back)")
    args = parser.parse_args(argv)
    try:
        report = bench_peers(PeerOptions(args.fp32, args.int8, args.photo, args.runs, args.threads, args.pause_ms))
    except EdgerecError as exc:
        print(f"bench_peers: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
