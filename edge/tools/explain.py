"""Occlusion sensitivity: which parts of an image drove a prediction. What `edgerec explain` runs.

A grey square slides over the fitted network input; every occluded copy goes through the model
(`Model.infer`, in batches) and the drop in the target label's probability is spread over the pixels the
square covered. Where covering the image hurts the score most is what the model looked at. It needs
nothing but ONNX Runtime, so it works for INT8 files as well as FP32, and with no torch installed.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edge.core.model import Model
from edge.core.preprocess import Plan, fit, plan
from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.tools.figures import put, shorten


@dataclass(frozen=True)
class ExplainOptions:
    label: str | None = None
    """The label to explain; None = the model's top-1 for this image."""
    window: int | None = None
    """Side of the grey square, in network-input pixels; None = 1/7 of the input's shorter side (32 at 224)."""
    stride: int | None = None
    """Step between square positions, in network-input pixels; None = half the window."""
    batch: int = 32
    """Occluded copies per inference call."""
    fill: int = 128
    """Grey level of the square (the middle of the uint8 range)."""


@dataclass(frozen=True)
class Explanation:
    label: str
    index: int
    score: float  # the label's probability on the whole, unoccluded input
    top_label: str  # the model's top-1 for the image (may differ from `label` when one was asked for)
    top_score: float
    heat: np.ndarray  # float32 [net height, net width]: mean probability drop when a square covers the pixel
    crop: Plan  # where the network input was cut from the image: heat maps onto this box
    image_shape: tuple[int, int]  # height, width of the image explained
    stride: int  # network-input pixels between square positions
    variants: int  # occluded copies run through the model
    ms: float  # time for all of them

    def heat_on_image(self, smooth: float = 0.0) -> np.ndarray:
        """`heat` resized onto the image: float32 [image height, image width], 0 outside the crop box.
        `smooth` > 0 first blurs it with a Gaussian of that sigma (network-input pixels)."""
        heat = cv2.GaussianBlur(self.heat, (0, 0), smooth) if smooth > 0 else self.heat
        full = np.zeros(self.image_shape, np.float32)
        box = self.crop
        full[box.top:box.top + box.height, box.left:box.left + box.width] = cv2.resize(
            heat, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        return full


def explain(model: Model, image: np.ndarray, options: ExplainOptions | None = None) -> Explanation:
    """Occlusion-sensitivity map of `options.label` (default: the top-1) for one BGR image."""
    net_h, net_w = model.info.input_size
    options = _resolve(options or ExplainOptions(), net_h, net_w)
    start = time.perf_counter()
    fitted = fit(image, model.geometry)
    probs = model.infer(fitted[None])[0]
    index = int(probs.argmax()) if options.label is None else _label_index(options.label, model.labels)
    boxes = [(y, x) for y in _positions(net_h, options.window, options.stride)
             for x in _positions(net_w, options.window, options.stride)]
    drops = _occluded_drops(model, fitted, boxes, index, float(probs[index]), options)
    heat = _spread(drops, boxes, options.window, (net_h, net_w))
    top = int(probs.argmax())
    return Explanation(
        label=model.labels[index], index=index, score=float(probs[index]), top_label=model.labels[top],
        top_score=float(probs[top]), heat=heat, crop=plan(image.shape[0], image.shape[1], model.geometry),
        image_shape=(image.shape[0], image.shape[1]), stride=options.stride, variants=len(boxes),
        ms=(time.perf_counter() - start) * 1000)


def _resolve(options: ExplainOptions, net_h: int, net_w: int) -> ExplainOptions:
    """The options with the default window and stride filled in for this input size, checked."""
    window = options.window or max(1, round(min(net_h, net_w) / 7))
    options = replace(options, window=window, stride=options.stride or max(1, window // 2))
    _check(options, net_h, net_w)
    return options


def _check(options: ExplainOptions, net_h: int, net_w: int) -> None:
    if not 1 <= options.window <= min(net_h, net_w):
        raise EdgerecError(f"window must be between 1 and the input size {min(net_h, net_w)}, got {options.window}")
    if not 1 <= options.stride <= options.window:
        raise EdgerecError(f"stride must be between 1 and the window ({options.window}), got {options.stride}")
    if options.batch < 1:
        raise EdgerecError(f"batch must be >= 1, got {options.batch}")
    if not 0 <= options.fill <= 255:
        raise EdgerecError(f"fill must be a grey level 0..255, got {options.fill}")


def _label_index(label: str, labels: list[str]) -> int:
    if label in labels:
        return labels.index(label)
    close = difflib.get_close_matches(label, labels, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "; `edgerec info MODEL` lists them"
    raise EdgerecError(f"label {label!r} is not one of the model's {len(labels)} labels{hint}")


def _positions(size: int, window: int, stride: int) -> list[int]:
    """Square offsets along one side: every `stride`, plus the last one flush with the edge."""
    positions = list(range(0, size - window + 1, stride))
    return positions if positions[-1] == size - window else [*positions, size - window]


def _occluded_drops(model: Model, fitted: np.ndarray, boxes: list[tuple[int, int]], index: int, score: float,
                    options: ExplainOptions) -> np.ndarray:
    """score - probability of `index` with a grey square at each box, in batches."""
    batch = np.empty((min(options.batch, len(boxes)), *fitted.shape), np.uint8)
    drops = np.empty(len(boxes), np.float32)
    w = options.window
    for start in range(0, len(boxes), len(batch)):
        chunk = boxes[start:start + len(batch)]
        for slot, (y, x) in zip(batch, chunk):
            slot[:] = fitted
            slot[y:y + w, x:x + w] = options.fill
        drops[start:start + len(chunk)] = score - model.infer(batch[:len(chunk)])[:, index]
    return drops


def _spread(drops: np.ndarray, boxes: list[tuple[int, int]], window: int, shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's mean drop over the squares that covered it."""
    total = np.zeros(shape, np.float32)
    count = np.zeros(shape, np.float32)
    for drop, (y, x) in zip(drops, boxes):
        total[y:y + window, x:x + window] += drop
        count[y:y + window, x:x + window] += 1
    return total / np.maximum(count, 1)


def render(image: np.ndarray, explanation: Explanation, alpha: float = 0.6) -> np.ndarray:
    """The image, mostly desaturated, with the heat (positive drops, scaled to the largest) in a colour map
    over the crop box, the area outside the box dimmed, and the label, score and scale written at the top."""
    image = fit_channels(image)
    heat = np.clip(explanation.heat_on_image(smooth=explanation.stride / 2), 0, None)
    peak = float(heat.max())
    weight = (heat / peak if peak > 0 else heat)[..., None]
    colours = cv2.applyColorMap((255 * weight).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.float32)
    base = 0.3 * image + 0.7 * grey  # mostly grey, so the colour map reads on colourful photos too
    out = base * (1 - alpha * weight) + colours * (alpha * weight)
    box = explanation.crop
    outside = np.ones(explanation.image_shape, bool)
    outside[box.top:box.top + box.height, box.left:box.left + box.width] = False
    out[outside] *= 0.45
    out = out.round().astype(np.uint8)
    cv2.rectangle(out, (box.left, box.top), (box.left + box.width - 1, box.top + box.height - 1), (255, 255, 255), 1)
    _caption(out, explanation, peak)
    return out


def fit_channels(image: np.ndarray) -> np.ndarray:
    """BGR uint8 from gray or BGRA input, as `fit` reads them."""
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR) if image.shape[2] == 4 else image


def _caption(image: np.ndarray, e: Explanation, peak: float) -> None:
    """Two lines on a dark band at the top: what was explained, and what the colours mean."""
    scale = max(0.45, image.shape[0] / 900)
    line_h = round(26 * scale / 0.6)
    lines = [f"{e.label} {e.score:.0%}" + ("" if e.label == e.top_label else f"  (top-1: {e.top_label} "
                                                                              f"{e.top_score:.0%})"),
             f"colour = drop in P({e.label}) when a grey square covers it; red = {peak:.2f}" if peak > 0
             else f"no square lowered P({e.label})"]
    width = image.shape[1] - 16
    lines = [shorten(lines[0], width, scale * 1.2, 2), shorten(lines[1], width, scale * 0.8)]
    band = line_h * 2 + 12
    image[:band] = (image[:band] * 0.35).astype(np.uint8)
    put(image, lines[0], 8, line_h, scale * 1.2, (255, 255, 255), 2)
    put(image, lines[1], 8, 2 * line_h + 2, scale * 0.8, (230, 230, 230))


OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def check_output(path: str | Path) -> Path:
    """The output path, if its suffix names an image format OpenCV writes and its folder exists."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise EdgerecError(f"{path}: output must end in one of {', '.join(OUTPUT_SUFFIXES)}")
    if not path.parent.is_dir():
        raise EdgerecError(f"{path}: folder {path.parent} does not exist")
    return path


def write_overlay(path: str | Path, image: np.ndarray, explanation: Explanation) -> None:
    """`render` the explanation and write it atomically; the format follows the suffix (.png, .jpg)."""
    path = check_output(path)
    ok, data = cv2.imencode(path.suffix.lower(), render(image, explanation))
    if not ok:
        raise EdgerecError(f"{path}: OpenCV could not encode the image")
    write_bytes_atomic(path, data.tobytes())
