#!/usr/bin/env python3
"""Would a per-class offset on INT8's outputs make it agree with FP32 more often? (docs/quantization.md)

    python scripts/bench/int8_logit_offset.py --fp32 build/base/efficientnet_lite0_imagenet_fp32.onnx \\
        --int8 edge/assets/efficientnet_lite0_imagenet_int8.onnx \\
        --fit /tmp/distill-photos/distill --held-out /tmp/distill-photos/eval

The offset of each class is the mean over the --fit photos of FP32's log-probability minus INT8's, plain or
weighted by the two files' probabilities of that class (so that photos where the class matters count); it
is added, times a scale, to INT8's log-probabilities before the arg max: a bias correction on the logits,
which softmax leaves the arg max of unchanged up to those offsets. Prints top-1 agreement with FP32 on
both sets without and with each offset and scale; this CPU's fused kernels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from int8_fidelity import probabilities  # noqa: E402

from edge.core.devices import cpu_description  # noqa: E402
from edge.core.model import Model  # noqa: E402
from training.calibration import load_images  # noqa: E402

SCALES = (0.25, 0.5, 1.0)


def log_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities(path, images), 1e-12, 1.0))


def offsets(fp32: np.ndarray, int8: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class offsets from log-probabilities of the fit photos: plain mean, probability-weighted mean."""
    diff = fp32 - int8
    weight = np.exp(fp32) + np.exp(int8)
    return {"mean": diff.mean(0), "weighted": (diff * weight).sum(0) / np.maximum(weight.sum(0), 1e-9)}


def agree(int8: np.ndarray, fp32: np.ndarray, shift: np.ndarray | float = 0.0) -> int:
    return int(((int8 + shift).argmax(1) == fp32.argmax(1)).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--int8", type=Path, required=True)
    parser.add_argument("--fit", type=Path, action="append", required=True, help="photos the offsets are fitted on")
    parser.add_argument("--held-out", type=Path, action="append", required=True, help="photos they are judged on")
    args = parser.parse_args(argv)
    geometry = Model.load(args.fp32, device="cpu").geometry
    sets = {"fit": load_images(args.fit, geometry), "held out": load_images(args.held_out, geometry)}
    fp32 = {name: log_probabilities(args.fp32, images) for name, images in sets.items()}
    int8 = {name: log_probabilities(args.int8, images) for name, images in sets.items()}
    print(f"CPU: {cpu_description()}")
    counts = {name: len(images) for name, images in sets.items()}
    print("offset, scale: agreement with FP32 on " + ", ".join(f"{name} ({n} photos)" for name, n in counts.items()))
    print("none: " + ", ".join(str(agree(int8[name], fp32[name])) for name in sets))
    for kind, offset in offsets(fp32["fit"], int8["fit"]).items():
        for scale in SCALES:
            counted = (agree(int8[name], fp32[name], scale * offset) for name in sets)
            print(f"{kind} x{scale:g}: " + ", ".join(map(str, counted)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
