"""The one geometric preprocessing step: centre crop + resize to the network input, as uint8 BGR.

The runtime, training's evaluation and INT8 calibration all call `fit`, so a model sees the same pixels
everywhere. Everything photometric (cast, mean/std, channel order, layout) happens inside the ONNX graph.

Resizing reproduces `cv2.INTER_AREA` (the exact average of the source pixels under each output pixel)
at a fraction of its cost (docs/preprocess.md has the measurements):

* scale < 2 (including upscaling; 640x480 frames for a 224 network): `INTER_LINEAR` straight to the
  output, the cheapest; it aliases somewhat between 1.25 and 2, but changes the model's answers no more
  than moving the crop by one source pixel does, at less than half the cost of the stages below;
* scale 2 .. 2.5 (a quarter of a 1080p frame as a region): one exact 2x2 box average of the crop first
  (OpenCV's vectorised integer-scale INTER_AREA path), then `INTER_LINEAR` for the remaining < 1.25x:
  a little blurrier than INTER_AREA, but it moves the model's answers no more than moving the crop by
  one source pixel does, at under half the cost of the stages below;
* scale 2.5 .. 5: `INTER_LINEAR` to twice the output size, then the exact 2x2 box, which together
  approximate INTER_AREA's box of `scale` source pixels without its slow general-scale code;
* scale > 5: exact 2x2 box halvings of the crop first, until the scale is <= 5, then as above. The crop
  sides are then rounded down to a multiple of 2**halvings, so each halving is exact.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

LINEAR_MAX_SCALE = 2.0
"""Below this downscale factor a plain INTER_LINEAR resize is used (docs/preprocess.md: why 2)."""

BOX_FIRST_MAX_SCALE = 2.5
"""From LINEAR_MAX_SCALE up to this factor the crop is halved with one exact 2x2 box first, then INTER_LINEAR
does the rest (< 1.25x); from here on, INTER_LINEAR to twice the output, then the box (docs/preprocess.md)."""

SUPERSAMPLE_MAX_SCALE = 5.0
"""Above this downscale factor the crop is first halved with exact 2x2 box averages."""


@dataclass(frozen=True)
class Geometry:
    """The network input size and the centre-crop policy, as stored in the model file's metadata."""

    height: int
    width: int
    crop: float = 0.875
    """Fraction of the largest centred region with the network's aspect ratio that is kept.
    0.875 is the ImageNet evaluation convention (resize 256, crop 224); 1.0 keeps the whole region."""

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Geometry.{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.crop <= 1.0:
            raise ValueError(f"Geometry.crop must be in (0, 1], got {self.crop!r}")


@dataclass(frozen=True)
class Plan:
    """How one frame size is fitted: the crop box in the frame and the resize stages that follow."""

    top: int
    left: int
    height: int
    width: int
    halvings: int
    """Exact 2x2 box halvings of the crop before the final resize."""
    supersample: bool
    """True: INTER_LINEAR to twice the output size, then a 2x2 box. False: INTER_LINEAR to the output."""


def plan(frame_height: int, frame_width: int, geometry: Geometry) -> Plan:
    """The crop box and resize stages `fit` uses for frames of this size."""
    net_h, net_w = geometry.height, geometry.width
    if frame_width * net_h > frame_height * net_w:  # frame wider than the network: full height
        region_h, region_w = float(frame_height), frame_height * net_w / net_h
    else:
        region_h, region_w = frame_width * net_h / net_w, float(frame_width)
    crop_h = max(1, round(region_h * geometry.crop))
    crop_w = max(1, round(region_w * geometry.crop))
    scale = min(crop_h / net_h, crop_w / net_w)
    halvings = 1 if LINEAR_MAX_SCALE <= scale < BOX_FIRST_MAX_SCALE else 0
    while scale / 2**halvings > SUPERSAMPLE_MAX_SCALE:
        halvings += 1
    unit = 2**halvings
    crop_h, crop_w = crop_h - crop_h % unit, crop_w - crop_w % unit
    return Plan(
        top=(frame_height - crop_h) // 2,
        left=(frame_width - crop_w) // 2,
        height=crop_h,
        width=crop_w,
        halvings=halvings,
        supersample=scale >= BOX_FIRST_MAX_SCALE,
    )


class Fitter:
    """`fit` for one Geometry that keeps its intermediate buffers between calls.

    With `out` given, a steady stream of same-sized frames allocates no pixel buffer. Not thread-safe:
    use one Fitter per thread.
    """

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self._frame_shape: tuple[int, ...] = ()
        self._plan: Plan | None = None
        self._halved: list[np.ndarray] = []
        self._supersampled: np.ndarray | None = None
        self._resized: np.ndarray | None = None

    def fit(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Centre-crop and resize `frame` (BGR, BGRA or gray uint8) to uint8 [height, width, 3] BGR."""
        image = _pixels(frame)
        out = self._output(out)
        if image.shape != self._frame_shape:
            self._prepare(image.shape)
        box = self._plan
        view = image[box.top : box.top + box.height, box.left : box.left + box.width]
        resized = out if self._resized is None else self._resized
        for halved in self._halved:
            view = cv2.resize(view, _size(halved), dst=halved, interpolation=cv2.INTER_AREA)
        if box.supersample:
            large = self._supersampled
            view = cv2.resize(view, _size(large), dst=large, interpolation=cv2.INTER_LINEAR)
            cv2.resize(view, _size(resized), dst=resized, interpolation=cv2.INTER_AREA)
        else:
            cv2.resize(view, _size(resized), dst=resized, interpolation=cv2.INTER_LINEAR)
        if resized is not out:
            cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR if resized.ndim == 2 else cv2.COLOR_BGRA2BGR, dst=out)
        return out

    def _output(self, out: np.ndarray | None) -> np.ndarray:
        shape = (self.geometry.height, self.geometry.width, 3)
        if out is None:
            return np.empty(shape, np.uint8)
        if out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint8 array of shape {shape}, got {out.dtype} {out.shape}")
        return out

    def _prepare(self, shape: tuple[int, ...]) -> None:
        """Plan a new frame size and allocate the buffers its stages write into."""
        box = plan(shape[0], shape[1], self.geometry)
        channels = shape[2:]
        net_h, net_w = self.geometry.height, self.geometry.width
        self._halved = [
            np.empty((box.height >> i, box.width >> i, *channels), np.uint8) for i in range(1, box.halvings + 1)
        ]
        large = (2 * net_h, 2 * net_w, *channels)
        self._supersampled = np.empty(large, np.uint8) if box.supersample else None
        self._resized = None if channels == (3,) else np.empty((net_h, net_w, *channels), np.uint8)
        self._frame_shape, self._plan = shape, box


def fit(frame: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """Centre-crop and resize `frame` to the network input: uint8 [height, width, 3] BGR, C-contiguous.

    `frame` is any HxW uint8 image: BGR (HxWx3), BGRA (HxWx4) or gray (HxW or HxWx1). With `out`
    (a preallocated [height, width, 3] uint8 array) the result is written there and `out` is returned.
    Intermediate buffers are kept per thread and geometry, so repeated calls allocate nothing.
    """
    return _fitter(geometry).fit(frame, out)


_local = threading.local()
_MAX_CACHED_FITTERS = 8


def _fitter(geometry: Geometry) -> Fitter:
    fitters: dict[Geometry, Fitter] | None = getattr(_local, "fitters", None)
    if fitters is None:
        fitters = _local.fitters = {}
    fitter = fitters.get(geometry)
    if fitter is None:
        if len(fitters) >= _MAX_CACHED_FITTERS:
            fitters.clear()
        fitter = fitters[geometry] = Fitter(geometry)
    return fitter


def _pixels(frame: np.ndarray) -> np.ndarray:
    """The frame as an HxW (gray), HxWx3 (BGR) or HxWx4 (BGRA) uint8 view; anything else is refused."""
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"frame must be HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty: shape {frame.shape}")
    return frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame


def _size(image: np.ndarray) -> tuple[int, int]:
    """OpenCV's (width, height) of an array."""
    return image.shape[1], image.shape[0]
