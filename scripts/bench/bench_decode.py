#!/usr/bin/env python3
"""What decoding an MJPEG camera's 1080p frame costs at full, half and quarter size, and what `fit` costs after.

    python scripts/bench/bench_decode.py [PHOTO ...] [--size 1920x1080] [--quality 85] [--runs 100] [--labels]

A frame (PHOTO scaled to cover --size, else the bench's sample photo) is JPEG-encoded once, as a camera would
send it; then, with OpenCV on one thread and time.thread_time (CPU time, steady on a busy machine), medians of
--runs calls, the variants taking turns:

- `cv2.imdecode` with IMREAD_COLOR (what OpenCV's capture hands over now), IMREAD_REDUCED_COLOR_2 and
  IMREAD_REDUCED_COLOR_4 (libjpeg's DCT scaling: the decoder never makes the full-size pixels);
- `Fitter.fit` of each decoded frame to the default model's input;
- how far each fitted input is from INTER_AREA on the full-size decode's crop (mean abs difference, 0-255).

Times and differences are on the first photo. With --labels, every photo's frame also goes through the embedded
default model: its top-1 on each decode's fitted input against its top-1 on INTER_AREA's input from the full
decode, beside the baseline of docs/preprocess.md (INTER_AREA on the crop moved by one pixel).

Not used by `edgerec run` (its frames come from cv2.VideoCapture, decoded at full size): this prices the idea.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_preprocess import area, cover, on_crop, parse_size, read_image  # noqa: E402
from bench_watch import cpu_model  # noqa: E402

from edge.app.bench import sample_frame  # noqa: E402
from edge.core.model import Model  # noqa: E402
from edge.core.preprocess import Fitter, Geometry, fit  # noqa: E402

MODES = {"full (IMREAD_COLOR)": cv2.IMREAD_COLOR, "1/2 (IMREAD_REDUCED_COLOR_2)": cv2.IMREAD_REDUCED_COLOR_2,
         "1/4 (IMREAD_REDUCED_COLOR_4)": cv2.IMREAD_REDUCED_COLOR_4}


def medians(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median CPU ms of each call, the calls taking turns."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.thread_time()
            call()
            samples[name].append((time.thread_time() - start) * 1000)
    return {name: float(np.median(values)) for name, values in samples.items()}


def area_reference(frame: np.ndarray, geometry: Geometry, shift: int = 0) -> np.ndarray:
    """INTER_AREA on fit's crop of `frame`, moved `shift` pixels right and down."""
    return on_crop(area, frame, geometry, shift)


def report(frame: np.ndarray, quality: int, runs: int, geometry: Geometry) -> list[str]:
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SystemExit("bench_decode: OpenCV cannot encode JPEG")
    decoded = {name: cv2.imdecode(jpeg, flag) for name, flag in MODES.items()}
    fitters = {name: Fitter(geometry) for name in MODES}
    out = np.empty((geometry.height, geometry.width, 3), np.uint8)
    decode_ms = medians({name: (lambda f=flag: cv2.imdecode(jpeg, f)) for name, flag in MODES.items()}, runs)
    fit_ms = medians({name: (lambda n=name: fitters[n].fit(decoded[n], out)) for name in MODES}, runs)
    reference = area_reference(decoded["full (IMREAD_COLOR)"], geometry).astype(np.int16)
    lines = ["| decode | frame | decode ms | fit ms | both ms | input vs INTER_AREA on the full decode (mean abs) |",
             "|---|---|---|---|---|---|"]
    for name, image in decoded.items():
        diff = float(np.abs(fitters[name].fit(image).astype(np.int16) - reference).mean())
        lines.append(f"| {name} | {image.shape[1]}x{image.shape[0]} | {decode_ms[name]:.2f} | {fit_ms[name]:.3f} "
                     f"| {decode_ms[name] + fit_ms[name]:.2f} | {diff:.2f} |")
    return [f"{cpu_model()}; OpenCV {cv2.__version__} on 1 thread; a {frame.shape[1]}x{frame.shape[0]} frame as "
            f"JPEG quality {quality} ({len(jpeg) / 1024:.0f} KiB); CPU ms, median of {runs} calls each; "
            f"input {geometry.width}x{geometry.height}, crop {geometry.crop}:", "", *lines]


def label_table(frames: list[np.ndarray], quality: int, model: Model) -> list[str]:
    """Top-1 on each decode's input against top-1 on INTER_AREA's input from the full decode, over the frames."""
    geometry = model.geometry
    inputs: dict[str, list[np.ndarray]] = {name: [] for name in MODES}
    inputs["INTER_AREA, crop moved 1 px (baseline)"] = []
    references = []
    for frame in frames:
        jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        full = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        references.append(area_reference(full, geometry))
        inputs["INTER_AREA, crop moved 1 px (baseline)"].append(area_reference(full, geometry, shift=1))
        for name, flag in MODES.items():
            inputs[name].append(fit(cv2.imdecode(jpeg, flag), geometry))
    reference = model.infer(np.stack(references))
    confident = reference.max(axis=1) >= 0.5
    lines = ["", f"default model ({model.info.precision}) on {len(frames)} frames; confident = INTER_AREA's top-1 "
             "probability >= 0.5", "",
             "| input | top-1 same as INTER_AREA | of them confident | max abs prob diff: median, max |",
             "|---|---|---|---|"]
    for name, images in inputs.items():
        probs = model.infer(np.stack(images))
        same = probs.argmax(axis=1) == reference.argmax(axis=1)
        change = np.abs(probs - reference).max(axis=1)
        lines.append(f"| {name} | {same.sum()}/{len(frames)} | {same[confident].sum()}/{confident.sum()} "
                     f"| {np.median(change):.3f}, {change.max():.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path,
                        help="photos to make the frames from (default: the bench's sample photo)")
    parser.add_argument("--size", type=parse_size, default=(1920, 1080), help="frame WIDTHxHEIGHT")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality the camera uses (1-100)")
    parser.add_argument("--runs", type=int, default=100, help="timed calls per variant")
    parser.add_argument("--labels", action="store_true",
                        help="also compare the default model's top-1 on each decode with INTER_AREA's, every photo")
    args = parser.parse_args()
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality must be 1-100, got {args.quality}")
    cv2.setNumThreads(1)
    width, height = args.size
    frames = [cover(read_image(path), width, height) for path in args.photos] or [sample_frame(height, width)]
    model = Model.load(None, "cpu", 1)
    print("\n".join(report(frames[0], args.quality, args.runs, model.geometry)))
    if args.labels:
        print("\n".join(label_table(frames, args.quality, model)))


if __name__ == "__main__":
    main()
