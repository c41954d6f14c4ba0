#!/usr/bin/env python3
"""Where a model file's time goes in ONNX Runtime on the CPU: per kind of operator, one thread.

Runs each file on the same fitted photo with ONNX Runtime's profiler and sums the kernel times per kind:
depthwise convolutions, other convolutions (1x1 and the stem), and every other operator type. Use it to
see which part of a network INT8 speeds up on this CPU and which it does not.

    python scripts/bench/profile_ops.py build/efficientnet_lite0_imagenet_fp32.onnx \\
        edge/assets/efficientnet_lite0_imagenet_int8.onnx
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import onnxruntime as ort

from edge.core.model import Model, inference_session
from edge.core.preprocess import fit

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "tests" / "data" / "photos" / "squirrel_cls.jpg"
WARMUP = 5


@dataclass(frozen=True)
class Profile:
    path: Path
    runs: int
    microseconds: Counter  # per kind, per run

    @property
    def total(self) -> float:
        return sum(self.microseconds.values())


def profile(path: Path, runs: int) -> Profile:
    """Kernel microseconds per run and kind, from ONNX Runtime's profiler on a one-thread session."""
    model = Model.load(path, "cpu", threads=1)
    batch = fit(cv2.imread(str(PHOTO)), model.geometry)[None]
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = inference_session(path, options)
        name = session.get_inputs()[0].name
        for _ in range(WARMUP + runs):
            session.run(None, {name: batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    events = [e for e in events if e["ts"] >= starts[WARMUP]]  # the warm-up runs are not counted
    totals: Counter = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[kind(event["args"])] += event["dur"]
    return Profile(path, runs, Counter({k: v / runs for k, v in totals.items()}))


def kind(args: dict) -> str:
    """depthwise conv | other conv | the operator type. ORT's NHWC INT8 convs show [N,H,W,C] inputs."""
    op = args["op_name"]
    if op not in ("Conv", "QLinearConv", "FusedConv", "NchwcConv"):
        return op
    shapes = [next(iter(s.values())) for s in args["input_type_shape"]]
    if op == "QLinearConv":  # inputs: x [N,H,W,C], ..., w_scale [C_out], ...
        channels_in, channels_out = shapes[0][-1], (shapes[3] or [0])[0]
        return "depthwise conv" if channels_in == channels_out else "other conv"
    weight = shapes[1]  # [C_out, C_in / group, kh, kw]
    return "depthwise conv" if len(weight) == 4 and weight[1] == 1 and weight[0] > 1 else "other conv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="contract .onnx files; the first is the baseline")
    parser.add_argument("--runs", type=int, default=100, help="profiled runs per file")
    args = parser.parse_args()
    profiles = [profile(path, args.runs) for path in args.models]
    kinds = sorted({k for p in profiles for k in p.microseconds}, key=lambda k: -profiles[0].microseconds[k])
    base = profiles[0]
    print(f"one thread, {args.runs} runs, kernel time per run in ms; in brackets: baseline / this")
    print("| kind | " + " | ".join(p.path.name for p in profiles) + " |")
    print("|---|" + "---|" * len(profiles))
    for k in ["total", *kinds]:
        cells = []
        for p in profiles:
            mine, theirs = (p.total, base.total) if k == "total" else (p.microseconds[k], base.microseconds[k])
            ratio = f" ({theirs / mine:.2f}x)" if mine and theirs and p is not base else ""
            cells.append(f"{mine / 1000:.2f}{ratio}" if mine else "–")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
