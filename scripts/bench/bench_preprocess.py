"""Compare resize methods for edge.core.preprocess: time and difference from cv2.INTER_AREA, side by side.

    python scripts/bench/bench_preprocess.py PHOTO [PHOTO ...] [--runs 200] [--net 224x224] [--crop 0.875]
        [--sizes 640x480,960x540,1280x720,1920x1080]

Each photo becomes one frame per source size (scaled with INTER_AREA to cover the size, then centre
cropped, so frames are as sharp as a camera's). Every method resizes the same centre-crop view of the
same frames; times are medians over --runs calls, the methods taking turns so that load from other
processes hits them alike, once with cv2.setNumThreads(1) and once with OpenCV's default thread count.
Differences are against cv2.INTER_AREA on that view, averaged over the photos (max over photos after /).
Without photos, a synthetic frame is used, and the table says so.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.core.preprocess import Fitter, Geometry, fit, plan  # noqa: E402

SOURCE_SIZES = [(640, 480), (960, 540), (1280, 720), (1920, 1080)]
"""Camera frames, and 960x540: a region of a quarter of a 1080p frame (crop scale 2.1 for a 224 network)."""


@dataclass(frozen=True)
class Method:
    name: str
    resize: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """(crop view, out) -> out."""
    whole_frame: bool = False
    """The method crops by itself: it gets the whole frame."""
    box_multiple: bool = False
    """The method needs the crop sides to be a multiple of its integer factor; its reference is then
    INTER_AREA on that trimmed crop, so the difference measures the resize and not the trim."""


def area(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    return cv2.resize(view, _size(out), dst=out, interpolation=cv2.INTER_AREA)


def linear(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    return cv2.resize(view, _size(out), dst=out, interpolation=cv2.INTER_LINEAR)


def linear_exact(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    return cv2.resize(view, _size(out), dst=out, interpolation=cv2.INTER_LINEAR_EXACT)


def integer_area_then_linear(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    """INTER_AREA by floor(scale), OpenCV's integer-scale path, then INTER_LINEAR for the rest (< 2x)."""
    factor = _integer_factor(view, out)
    if factor > 1:
        size = (view.shape[1] // factor, view.shape[0] // factor)
        view = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
    return cv2.resize(view, _size(out), dst=out, interpolation=cv2.INTER_LINEAR)


def pyrdown_then_linear(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    """cv2.pyrDown (5x5 Gaussian, /2) while the scale is >= 2, then INTER_LINEAR."""
    while view.shape[0] >= 2 * out.shape[0] and view.shape[1] >= 2 * out.shape[1]:
        view = cv2.pyrDown(view)
    return cv2.resize(view, _size(out), dst=out, interpolation=cv2.INTER_LINEAR)


def linear_2x_then_box(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    """INTER_LINEAR to twice the output size, then a 2x2 box (INTER_AREA at exactly 2x)."""
    large = cv2.resize(view, (2 * out.shape[1], 2 * out.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(large, _size(out), dst=out, interpolation=cv2.INTER_AREA)


def box_then_linear(view: np.ndarray, out: np.ndarray) -> np.ndarray:
    """2x2 box halvings to the power of two nearest the scale, then INTER_LINEAR for the rest (0.71x-1.41x)."""
    scale = min(view.shape[0] / out.shape[0], view.shape[1] / out.shape[1])
    for _ in range(max(0, round(np.log2(scale)))):
        view = cv2.resize(view, (view.shape[1] // 2, view.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(view, _size(out), dst=out, interpolation=cv2.INTER_LINEAR)


def _integer_factor(view: np.ndarray, out: np.ndarray) -> int:
    return max(1, int(min(view.shape[0] / out.shape[0], view.shape[1] / out.shape[1])))


def _size(image: np.ndarray) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


def methods(geometry: Geometry) -> list[Method]:
    fitter = Fitter(geometry)
    return [
        Method("cv2 INTER_AREA (reference)", area),
        Method("cv2 INTER_LINEAR", linear),
        Method("cv2 INTER_LINEAR_EXACT", linear_exact),
        Method("INTER_AREA x floor(scale) + LINEAR", integer_area_then_linear, box_multiple=True),
        Method("pyrDown chain + LINEAR", pyrdown_then_linear),
        Method("LINEAR to 2x + 2x2 box", linear_2x_then_box),
        Method("2x2 box to nearest 2^k + LINEAR", box_then_linear, box_multiple=True),
        Method("edge.core.preprocess.Fitter.fit", lambda frame, out: fitter.fit(frame, out), whole_frame=True),
    ]


def source_frames(photos: list[Path], width: int, height: int) -> list[np.ndarray]:
    if not photos:
        return [synthetic_frame(width, height)]
    return [cover(read_image(path), width, height) for path in photos]


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"bench_preprocess: cannot read image {path}")
    return image


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale `image` to cover width x height (INTER_AREA down, INTER_CUBIC up), then centre crop."""
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def synthetic_frame(width: int, height: int) -> np.ndarray:
    """Smooth colour noise plus sharp shapes and fine stripes: enough detail to show aliasing."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(frame, centre, int(rng.integers(5, height // 6)), colour, -1, cv2.LINE_AA)
    frame[:, : width // 4][:, ::3] = 255
    return frame


def method_input(frame: np.ndarray, geometry: Geometry, method: Method, out: np.ndarray) -> np.ndarray:
    return frame if method.whole_frame else reference_input(frame, geometry, method, out)


def reference_input(frame: np.ndarray, geometry: Geometry, method: Method, out: np.ndarray) -> np.ndarray:
    """The crop `fit` uses (trimmed to the method's integer factor where it needs one)."""
    box = plan(frame.shape[0], frame.shape[1], geometry)
    view = frame[box.top : box.top + box.height, box.left : box.left + box.width]
    if method.box_multiple:
        factor = _integer_factor(view, out)
        view = view[: view.shape[0] - view.shape[0] % factor, : view.shape[1] - view.shape[1] % factor]
    return view


def difference(frames: list[np.ndarray], geometry: Geometry, method: Method) -> tuple[list[float], list[float]]:
    """Mean abs difference and PSNR against INTER_AREA, one per frame."""
    out, reference = _output(geometry), _output(geometry)
    mads, psnrs = [], []
    for frame in frames:
        area(reference_input(frame, geometry, method, out), reference)
        method.resize(method_input(frame, geometry, method, out), out)
        error = out.astype(np.float64) - reference
        mads.append(float(np.mean(np.abs(error))))
        mse = float(np.mean(error**2))
        psnrs.append(math.inf if mse == 0 else 10 * math.log10(255**2 / mse))
    return mads, psnrs


def timings(frame: np.ndarray, geometry: Geometry, all_methods: list[Method], runs: int) -> list[float]:
    """Median ms per method; the methods take turns on every run."""
    out = _output(geometry)
    inputs = [method_input(frame, geometry, method, out) for method in all_methods]
    samples: list[list[float]] = [[] for _ in all_methods]
    for run in range(runs + 3):
        for method, image, sample in zip(all_methods, inputs, samples, strict=True):
            start = time.perf_counter()
            method.resize(image, out)
            if run >= 3:  # the first runs warm caches and buffers
                sample.append(time.perf_counter() - start)
    return [1e3 * statistics.median(sample) for sample in samples]


def _output(geometry: Geometry) -> np.ndarray:
    return np.empty((geometry.height, geometry.width, 3), np.uint8)


def print_resize_table(photos: list[Path], geometry: Geometry, runs: int,
                       sizes: list[tuple[int, int]]) -> None:
    all_methods = methods(geometry)
    default_threads = cv2.getNumThreads()
    source = f"{len(photos)} photos" if photos else "1 synthetic frame (no photos given)"
    print(
        f"net {geometry.width}x{geometry.height}, crop {geometry.crop}, {source}, median of {runs} runs, "
        f"OpenCV {cv2.__version__}, default threads {default_threads}"
    )
    print()
    print(
        "| source | method | ms, 1 thread | × vs AREA | ms, default threads | × vs AREA "
        "| mean abs diff vs AREA (max) | PSNR dB min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for width, height in sizes:
        frames = source_frames(photos, width, height)
        cv2.setNumThreads(1)
        single = timings(frames[0], geometry, all_methods, runs)
        cv2.setNumThreads(default_threads)
        multi = timings(frames[0], geometry, all_methods, runs)
        for method, one, many in zip(all_methods, single, multi, strict=True):
            mads, psnrs = difference(frames, geometry, method)
            mad = f"{statistics.mean(mads):.2f} ({max(mads):.2f})"
            print(
                f"| {width}x{height} | {method.name} | {one:.3f} | {single[0] / one:.1f} | {many:.3f} "
                f"| {multi[0] / many:.1f} | {mad} | {min(psnrs):.1f} |"
            )


def print_label_table(photos: list[Path], sizes: list[tuple[int, int]]) -> None:
    """Top-1 of the default model on each method's input against its top-1 on INTER_AREA's."""
    from edge.core.model import Model

    model = Model.load()
    geometry = model.geometry
    candidates = [
        ("edge.core.preprocess.fit", lambda frame: fit(frame, geometry)),
        ("cv2 INTER_LINEAR", lambda frame: on_crop(linear, frame, geometry, shift=0)),
        ("LINEAR to 2x + 2x2 box", lambda frame: on_crop(linear_2x_then_box, frame, geometry, shift=0)),
        ("2x2 box to nearest 2^k + LINEAR", lambda frame: on_crop(box_then_linear, frame, geometry, shift=0)),
        ("INTER_AREA, crop moved 1 px (baseline)", lambda frame: on_crop(area, frame, geometry, shift=1)),
    ]
    print(f"\ndefault model ({model.info.arch}, {model.info.precision}, {model.provider}), net {geometry}")
    print("confident = INTER_AREA's top-1 probability >= 0.5\n")
    print("| source | input | top-1 same as INTER_AREA | of them confident | max abs prob diff: median, max |")
    print("|---|---|---|---|---|")
    for width, height in sizes:
        frames = source_frames(photos, width, height)
        reference = model.infer(np.stack([on_crop(area, frame, geometry, shift=0) for frame in frames]))
        confident = reference.max(axis=1) >= 0.5
        for name, prepare in candidates:
            probs = model.infer(np.stack([prepare(frame) for frame in frames]))
            same = probs.argmax(axis=1) == reference.argmax(axis=1)
            change = np.abs(probs - reference).max(axis=1)
            print(
                f"| {width}x{height} | {name} | {same.sum()}/{len(frames)} | {same[confident].sum()}/{confident.sum()} "
                f"| {np.median(change):.3f}, {change.max():.3f} |"
            )


def on_crop(resize: Callable, frame: np.ndarray, geometry: Geometry, shift: int) -> np.ndarray:
    """`resize` on fit's crop of `frame`, moved `shift` pixels right and down."""
    box = plan(frame.shape[0], frame.shape[1], geometry)
    top, left = box.top + shift, box.left + shift
    return resize(frame[top : top + box.height, left : left + box.width], _output(geometry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path, help="photos to build the source frames from")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per method and source size")
    parser.add_argument("--net", default="224x224", help="network input WIDTHxHEIGHT")
    parser.add_argument("--crop", type=float, default=0.875, help="centre-crop fraction")
    parser.add_argument("--sizes", type=_sizes, default=SOURCE_SIZES,
                        help="source sizes, WIDTHxHEIGHT,... (default: 640x480,960x540,1280x720,1920x1080)")
    parser.add_argument(
        "--labels", action="store_true", help="also compare the default model's top-1 with INTER_AREA's"
    )
    args = parser.parse_args()
    net_w, net_h = (int(v) for v in args.net.split("x"))
    print_resize_table(args.photos, Geometry(net_h, net_w, args.crop), args.runs, args.sizes)
    if args.labels:
        print_label_table(args.photos, args.sizes)


def parse_size(text: str) -> tuple[int, int]:
    """"1920x1080" -> (1920, 1080); the bench scripts' WIDTHxHEIGHT arguments."""
    try:
        width, height = (int(v) for v in text.split("x"))
    except ValueError:
        width = height = 0
    if min(width, height) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}")
    return width, height


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [parse_size(size) for size in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT[,WIDTHxHEIGHT...], got {text!r}") from None


if __name__ == "__main__":
    main()
