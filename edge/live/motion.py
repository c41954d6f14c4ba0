"""Cheap motion detection for a fixed camera: is anything moving, and where?

One verb, `MotionDetector.update(frame)`, in this order:

1. **Downscale first**: the full BGR frame is resized straight to `width` pixels (bilinear by default, which
   reads only the 2x2 pixels around each sample, so a 1080p frame costs a fraction of a millisecond; an
   area average reads all 6 MB), then converted to gray and blurred at that small size (sensor noise).
2. **Compare with a running average** (the background) in float32. The global light change is removed
   first: the background is multiplied by the gain that matches its mean to the frame's over the pixels
   that did not change (|difference| <= `threshold`), so a change of exposure or daylight (multiplicative
   in the camera's gamma-encoded values), however fast below `threshold` levels per frame, does not count
   as motion, and an object does not bias the gain (its pixels are excluded). A slow additive drift is
   absorbed by the running average (step 6).
3. **Threshold** the remaining difference at `threshold` levels: the changed-pixel mask.
4. **Global change**: if more than `lightning` of the picture changed (lights on/off, IR switch, the
   camera moved, a jump of the whole picture's brightness beyond `threshold`), no motion is reported and
   the background is re-learnt: it becomes the current frame for `recalibrate_frames` frames, then the
   running average resumes (a change still going on then is global again and re-learnt again). The start
   and a frame-size change are re-learnt the same way.
5. **Blobs**: the mask is dilated (joins fragments of one object), split into connected blobs, and a blob
   counts only if its changed pixels cover `min_area` of the analysed frame. The counted blobs are the
   motion mask, the boxes and the area.
6. The background follows the frame by `alpha` (`cv2.accumulateWeighted`): a still new object (a parked
   car) fades into it after about `ln(difference / threshold) / alpha` frames.

The per-frame path allocates nothing it could reuse (every buffer is made once per frame size, OpenCV
writes into it with `dst=`), never copies the full frame, logs nothing and does no I/O. A still scene takes
the fast path: no blob analysis when no pixel changed, and only every `still_every`-th frame is analysed
while nothing moves (the others cost nothing; motion is then seen at most `still_every - 1` frames late).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edge.errors import EdgerecError

Box = tuple[float, float, float, float]

RESIZE = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class MotionOptions:
    width: int = 160
    """Analysis width in pixels (>= 16; never more than the frame's); the height follows the frame's aspect."""
    threshold: int = 20
    """Per-pixel difference (1-255 gray levels, after blur and global-brightness compensation) that counts
    as changed."""
    min_area: float = 0.0005
    """Fraction of the analysed frame (0 <= min_area < 1) that a blob's changed pixels must cover to count."""
    alpha: float = 0.02
    """Running-average weight of each new frame, 0 < alpha <= 1 (time constant 1/alpha frames)."""
    lightning: float = 0.5
    """Fraction of changed pixels (0 < lightning <= 1) above which the change is global (lights, IR switch):
    no motion is reported and the background is re-learnt; 1 turns it off."""
    resize: str = "linear"
    """How the full frame is downscaled: "linear" (2x2 pixels per sample, cheap, halves the noise),
    "nearest" (one pixel per sample, cheapest, aliases fine texture) or "area" (averages every pixel,
    ~20x slower at 1080p)."""
    blur: int = 3
    """Gaussian blur kernel (odd, 1 = none) applied at the analysis size before comparing."""
    dilate: int = 1
    """3x3 dilation passes (0-10) on the changed-pixel mask before splitting it into blobs (joins the
    fragments of one object; the motion mask and boxes include it, `min_area` counts changed pixels only)."""
    recalibrate_frames: int = 5
    """Frames (>= 1) during which the background is the current frame after a global change, the start or a
    size change; no motion is reported meanwhile."""
    still_every: int = 2
    """While nothing moves, analyse only every Nth frame (1-10; 1 = every frame): the frames between report
    no motion at no cost, so motion that starts is seen at most N-1 frames late. Once anything moved, while
    re-learning and at a size change, every frame is analysed. The running average's weight is raised to
    match (1 - (1 - alpha)^N), so the background follows at the same speed per second."""

    def __post_init__(self) -> None:
        checks = (
            ("width", isinstance(self.width, int) and self.width >= 16, "an integer >= 16"),
            ("threshold", isinstance(self.threshold, int) and 1 <= self.threshold <= 255, "an integer 1-255"),
            ("min_area", 0.0 <= self.min_area < 1.0, "0 <= min_area < 1"),
            ("alpha", 0.0 < self.alpha <= 1.0, "0 < alpha <= 1"),
            ("lightning", 0.0 < self.lightning <= 1.0, "0 < lightning <= 1"),
            ("resize", self.resize in RESIZE, " | ".join(RESIZE)),
            ("blur", isinstance(self.blur, int) and self.blur >= 1 and self.blur % 2 == 1, "an odd integer >= 1"),
            ("dilate", isinstance(self.dilate, int) and 0 <= self.dilate <= 10, "an integer 0-10"),
            ("recalibrate_frames", isinstance(self.recalibrate_frames, int) and self.recalibrate_frames >= 1,
             "an integer >= 1"),
            ("still_every", isinstance(self.still_every, int) and 1 <= self.still_every <= 10, "an integer 1-10"),
        )
        for key, ok, valid in checks:
            if not ok:
                raise EdgerecError(f"motion {key} {getattr(self, key)!r} is out of range; valid: {valid}")


@dataclass(frozen=True)
class MotionState:
    moving: bool
    """Any counted motion in this frame."""
    area: float
    """Fraction of the analysed frame that changed (changed pixels of counted blobs)."""
    boxes: tuple[Box, ...]
    """Counted blobs' boxes as fractions x, y, w, h of the frame."""
    recalibrating: bool
    """A global change is being re-learnt (lights, IR switch, start, size change): no motion is reported."""
    ms: float
    """Time this update took, in milliseconds (wall clock)."""
    analysed: bool = True
    """False for a frame left out while nothing moves (`still_every`): nothing moved in the last one analysed."""


SKIPPED = MotionState(False, 0.0, (), False, 0.0, analysed=False)
"""What `update` says of a frame it leaves out while the scene is still."""


class MotionDetector:
    """Running-average motion detector for one camera. One verb: `update`; `touches` asks about a box."""

    def __init__(self, options: MotionOptions | None = None) -> None:
        self.options = options or MotionOptions()
        self._shape: tuple[int, ...] = ()
        self._moving = False
        self._mask_view: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray | None:
        """Read-only view of the last motion mask (uint8 0/255, analysis size; counted blobs, dilated);
        overwritten by the next update. None before the first update."""
        return self._mask_view

    def update(self, frame: np.ndarray) -> MotionState:
        """Fold one BGR uint8 HxWx3 frame (any size; a new size starts over) in and say what moved."""
        if frame.shape == self._shape and self._skip > 0:
            self._skip -= 1
            return SKIPPED
        start = time.perf_counter()
        if frame.shape != self._shape:
            self._reset(frame)
        self._analyse(frame)
        if self._frames_to_learn > 0:
            return self._learning(start)
        changed = self._compare()
        if changed > self.options.lightning:
            self._frames_to_learn = self.options.recalibrate_frames
            return self._learning(start)
        cv2.accumulateWeighted(self._gray_f, self._avg, self._alpha[self._gap])
        state = self._still(start) if changed == 0.0 else self._blobs(start)
        self._gap = 1 if state.moving else self.options.still_every
        self._skip = self._gap - 1
        return state

    def touches(self, box: Box) -> bool:
        """Did the last update's counted motion cover part of `box` (x, y, w, h fractions of the frame)?
        The overlap must reach `min_area` of the analysed frame or a quarter of the box, whichever is less
        (at least one analysis pixel). Cheap: a count over the box's rectangle of the mask."""
        if not self._moving:
            return False
        h, w = self._mask.shape
        x0, y0 = max(0, math.floor(box[0] * w)), max(0, math.floor(box[1] * h))
        x1, y1 = min(w, math.ceil((box[0] + box[2]) * w)), min(h, math.ceil((box[1] + box[3]) * h))
        if x1 <= x0 or y1 <= y0:
            return False
        need = max(1.0, min(self._min_pixels, (x1 - x0) * (y1 - y0) / 4))
        return cv2.countNonZero(self._mask[y0:y1, x0:x1]) >= need

    # -- steps, in the order update() runs them ------------------------------------------------------

    def _reset(self, frame: np.ndarray) -> None:
        """Allocate every buffer for this frame size and start re-learning the background."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
            raise ValueError(f"motion needs a BGR uint8 HxWx3 frame, got {frame.dtype} {frame.shape}")
        o = self.options
        height, width = frame.shape[:2]
        w = min(o.width, width)
        h = max(1, round(w * height / width))
        self._shape = frame.shape
        self._size = (w, h)
        self._pixels = w * h
        self._min_pixels = o.min_area * self._pixels
        self._small = np.empty((h, w, 3), np.uint8)
        self._gray = np.empty((h, w), np.uint8)
        self._blurred = np.empty((h, w), np.uint8)
        self._gray_f = np.empty((h, w), np.float32)
        self._avg = np.zeros((h, w), np.float32)
        self._diff = np.empty((h, w), np.float32)
        self._calm = np.empty((h, w), np.uint8)
        self._changed = np.empty((h, w), np.uint8)
        self._mask = np.zeros((h, w), np.uint8)
        self._labels = np.empty((h, w), np.int32)
        self._mask_view = self._mask.view()
        self._mask_view.flags.writeable = False
        self._moving = False
        self._mask_dirty = False
        self._frames_to_learn = o.recalibrate_frames
        self._skip, self._gap = 0, 1  # frames still to leave out; frames since the last analysed one, then
        self._alpha = [0.0] + [1.0 - (1.0 - o.alpha) ** n for n in range(1, o.still_every + 1)]  # weight per gap

    def _analyse(self, frame: np.ndarray) -> None:
        """Full frame -> small BGR -> gray -> blurred -> float32 (every step into its own buffer)."""
        cv2.resize(frame, self._size, dst=self._small, interpolation=RESIZE[self.options.resize])
        cv2.cvtColor(self._small, cv2.COLOR_BGR2GRAY, dst=self._gray)
        gray = self._gray
        if self.options.blur > 1:
            cv2.GaussianBlur(self._gray, (self.options.blur, self.options.blur), 0, dst=self._blurred)
            gray = self._blurred
        np.copyto(self._gray_f, gray)

    def _learning(self, start: float) -> MotionState:
        """Re-learning after a global change: the background is this frame; nothing is reported."""
        np.copyto(self._avg, self._gray_f)
        self._frames_to_learn -= 1
        self._gap = 1
        self._clear_mask()
        return MotionState(False, 0.0, (), True, (time.perf_counter() - start) * 1000)

    def _compare(self) -> float:
        """Scale the background by the global light change, then mark changed pixels; the changed fraction."""
        t = float(self.options.threshold)
        cv2.subtract(self._gray_f, self._avg, dst=self._diff)
        cv2.inRange(self._diff, -t, t, dst=self._calm)
        calm = cv2.countNonZero(self._calm)
        if calm == 0:
            return 1.0
        mask = None if calm == self._pixels else self._calm  # all calm (a still scene): unmasked means, 8x cheaper
        level = cv2.mean(self._avg, mask=mask)[0]
        if level >= 1.0:
            gain = 1.0 + cv2.mean(self._diff, mask=mask)[0] / level
            np.multiply(self._avg, gain, out=self._avg)
        cv2.absdiff(self._gray_f, self._avg, dst=self._diff)
        cv2.compare(self._diff, t, cv2.CMP_GT, dst=self._changed)
        return cv2.countNonZero(self._changed) / self._pixels

    def _still(self, start: float) -> MotionState:
        """The fast path: no pixel changed."""
        self._clear_mask()
        return MotionState(False, 0.0, (), False, (time.perf_counter() - start) * 1000)

    def _blobs(self, start: float) -> MotionState:
        """Dilate, split into connected blobs, keep those whose changed pixels reach min_area."""
        o = self.options
        if o.dilate:
            cv2.dilate(self._changed, None, dst=self._mask, iterations=o.dilate)
        else:
            np.copyto(self._mask, self._changed)
        n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
            self._mask, 8, cv2.CV_32S, cv2.CCL_GRANA, labels=self._labels)  # 1/3 of the default's time here
        pixels = np.bincount(labels[self._changed > 0], minlength=n)
        counted = np.flatnonzero(pixels[1:] >= max(self._min_pixels, 1.0)) + 1
        if len(counted) < n - 1:
            keep = np.zeros(n, np.uint8)
            keep[counted] = 255
            np.take(keep, labels, out=self._mask)
        self._moving = len(counted) > 0
        self._mask_dirty = self._moving
        w, h = self._size
        boxes = tuple(
            (int(x) / w, int(y) / h, int(bw) / w, int(bh) / h) for x, y, bw, bh in stats[counted, :4].tolist()
        )
        area = float(pixels[counted].sum()) / self._pixels
        return MotionState(self._moving, area, boxes, False, (time.perf_counter() - start) * 1000)

    def _clear_mask(self) -> None:
        """Zero the mask if the last update left motion in it."""
        if self._mask_dirty:
            self._mask.fill(0)
            self._mask_dirty = False
        self._moving = False
