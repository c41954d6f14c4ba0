"""Draw the labels, their scores, optional top-k bars, FPS and latency onto a frame, in place.

The whole-frame region (no region configured) gets the label box in the top-left corner, as before
regions; a named region gets its outline and a tag "name: label 87%" at its top-left corner.

Text sits on boxes that darken the pixels under them, so it reads on bright and dark frames alike;
sizes follow the frame's height.

The label box and the stats box are rendered once into small patches (text on black) and stamped onto
each frame with one `cv2.addWeighted` (box pixels x DARKEN + text): the label box again only when the
label or its rounded score changes, the stats box at most every STATS_REFRESH_S (figures that change on
every frame cannot be read anyway). Whatever runs right after `session.run` pays for every cache line
it touches, so the per-frame work is kept to that one pass over each box (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.live.regions import pixel_rect
from edge.live.result import FrameResult, Result

WHITE, GREY, BAR, MOTION = (255, 255, 255), (170, 170, 170), (40, 125, 40), (0, 200, 255)
KNOWN_LEVEL, UNKNOWN_LEVEL = WHITE[0], GREY[0]  # a region's outline: white, or grey where the label is unknown
FONT, LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX
DARKEN = 0.3  # box pixels keep this fraction of their brightness
STATS_REFRESH_S = 0.5  # the fps / latency figures change at most this often
_MAX_CACHED = 256  # label boxes kept (label x score x frame size); the cache starts over beyond


@dataclass(frozen=True)
class OverlayOptions:
    top_k: int = 0
    """Bars for the k most probable classes under the label; 0 draws none."""
    stats: bool = True
    """Draw frames per second and latency in the bottom-left corner."""
    motion: bool = False
    """Outline the motion the camera's detector found (a debug view; only where a region uses motion)."""


@dataclass(frozen=True)
class _Box:
    """A box at the frame's left edge, `y` rows down, with its text rendered on black at the box's size."""

    y: int
    patch: np.ndarray


class Overlay:
    """One verb: `draw(frame, result)` writes onto `frame` (BGR uint8) without copying it."""

    def __init__(self, labels: Sequence[str], options: OverlayOptions | None = None) -> None:
        self.labels = list(labels)
        self.options = options or OverlayOptions()
        self._fitted: dict[tuple[str, float, int], str] = {}
        self._label_boxes: dict[tuple[str, str, bool, int, int], _Box] = {}
        self._stats: _Box | None = None
        self._stats_height = 0  # the frame height the stats box was rendered for
        self._stats_at = 0.0

    def draw(self, frame: np.ndarray, result: FrameResult, motion: object | None = None) -> None:
        """Draw every region's result of `result` onto `frame`; `motion`: the camera's MotionState, whose
        boxes are outlined when the options ask for it."""
        height, width = frame.shape[:2]
        scale = max(height / 720.0, 0.45)
        if motion is not None and self.options.motion:
            for box in motion.boxes:
                rows, cols = pixel_rect(box, height, width)
                cv2.rectangle(frame, (cols.start, rows.start), (cols.stop - 1, rows.stop - 1), MOTION, 1)
        for region in result.regions:
            if region.whole_frame:
                label = self._label_box(region, height, width, scale)
                _stamp(frame, label)
                if self.options.top_k > 0:
                    self._draw_bars(frame, region.probs, max(scale, 0.6), label.y + label.patch.shape[0])
            else:
                self._draw_region(frame, region, height, width, scale)
        if self.options.stats and result.regions:
            _stamp(frame, self._stats_box(result, height, max(scale, 0.6)))  # small text: larger minimum

    def _draw_region(self, frame: np.ndarray, region: Result, height: int, width: int, scale: float) -> None:
        rows, cols = pixel_rect(region.box, height, width)
        _outline(frame, rows, cols, KNOWN_LEVEL if region.index >= 0 else UNKNOWN_LEVEL, max(1, round(2 * scale)))
        tag = self._label_box(region, height, width, scale * 0.7, f"{region.region}: ")
        box = _Box(rows.start, tag.patch)
        _stamp(frame, box, cols.start)

    def _label_box(self, result: Result, height: int, width: int, scale: float, prefix: str = "") -> _Box:
        score = f"{100 * result.score:.0f}%"
        key = (prefix + result.label, score, result.index >= 0, height, width)
        box = self._label_boxes.get(key)
        if box is None:
            if len(self._label_boxes) >= _MAX_CACHED:
                self._label_boxes.clear()
            box = self._label_boxes[key] = self._render_label(key[0], score, result.index >= 0, width, scale)
        return box

    def _render_label(self, text: str, score: str, known: bool, width: int, scale: float) -> _Box:
        size, thick, pad = 1.1 * scale, max(1, round(2 * scale)), round(10 * scale)
        score_w = cv2.getTextSize(score, LABEL_FONT, size, thick)[0][0]
        label = self._fit(text, LABEL_FONT, size, thick, width - 2 * pad - score_w - 3 * pad)
        (label_w, text_h), base = cv2.getTextSize(label, LABEL_FONT, size, thick)
        patch = np.zeros((2 * pad + text_h + base, label_w + score_w + 4 * pad, 3), np.uint8)
        colour = WHITE if known else GREY
        cv2.putText(patch, label, (pad, pad + text_h), LABEL_FONT, size, colour, thick, cv2.LINE_AA)
        x = 3 * pad + label_w
        cv2.putText(patch, score, (x, pad + text_h), LABEL_FONT, size, colour, thick, cv2.LINE_AA)
        return _Box(0, patch)

    def _stats_box(self, result: FrameResult, height: int, scale: float) -> _Box:
        stale = result.captured - self._stats_at >= STATS_REFRESH_S or result.captured < self._stats_at
        if self._stats is None or stale or self._stats_height != height:
            latency = max(region.latency_ms for region in result.regions)
            self._stats = self._render_stats(f"{result.fps:.1f} fps  {latency:.0f} ms", height, scale)
            self._stats_height, self._stats_at = height, result.captured
        return self._stats

    @staticmethod
    def _render_stats(text: str, height: int, scale: float) -> _Box:
        size, thick, pad = 0.6 * scale, max(1, round(scale)), round(8 * scale)
        (w, h), base = cv2.getTextSize(text, FONT, size, thick)
        patch = np.zeros((h + base + 2 * pad, w + 2 * pad, 3), np.uint8)
        cv2.putText(patch, text, (pad, pad + h), FONT, size, WHITE, thick, cv2.LINE_AA)
        return _Box(height - patch.shape[0], patch)

    def _draw_bars(self, frame: np.ndarray, probs: np.ndarray, scale: float, top: int) -> None:
        k = min(self.options.top_k, probs.shape[0])
        best = np.argpartition(probs, -k)[-k:]
        best = best[np.argsort(probs[best])[::-1]]
        size, thick, pad = 0.6 * scale, max(1, round(scale)), round(8 * scale)
        (pct_w, text_h), _ = cv2.getTextSize("100% ", FONT, size, thick)
        row = text_h + 2 * pad
        width = min(frame.shape[1], max(round(frame.shape[1] * 0.4), round(300 * scale)))
        _darken(frame, 0, top, width, top + k * row + pad)
        for i, index in enumerate(best):
            y, p = top + i * row + pad, float(probs[index])
            bar_end = (pad + round((width - 2 * pad) * p), y + row - pad)
            cv2.rectangle(frame, (pad, y), bar_end, BAR, cv2.FILLED)
            baseline = (2 * pad, y + text_h + pad // 2)
            cv2.putText(frame, f"{100 * p:.0f}%", baseline, FONT, size, WHITE, thick, cv2.LINE_AA)
            label = self._fit(self.labels[index], FONT, size, thick, width - 3 * pad - pct_w)
            at = (baseline[0] + pct_w, baseline[1])
            cv2.putText(frame, label, at, FONT, size, WHITE, thick, cv2.LINE_AA)

    def _fit(self, text: str, font: int, size: float, thick: int, room: int) -> str:
        """`text`, cut with "..." to fit `room` pixels; cached, as labels repeat from frame to frame."""
        key = (text, size, room)
        fitted = self._fitted.get(key)
        if fitted is None:
            fitted = text
            while len(fitted) > 1 and cv2.getTextSize(fitted, font, size, thick)[0][0] > room:
                fitted = fitted[: len(fitted) - 4] + "..." if len(fitted) > 4 else fitted[:1]
            if len(self._fitted) > 4096:
                self._fitted.clear()
            self._fitted[key] = fitted
        return fitted


def _stamp(frame: np.ndarray, box: _Box, x: int = 0) -> None:
    """Darken the box's pixels and add its text, in one pass: pixel x DARKEN + text (saturating)."""
    height, width = box.patch.shape[:2]
    roi = _inside(frame, x, box.y, x + width, box.y + height)
    if roi.size:
        top = max(0, -box.y)  # rows of the patch above the frame
        cv2.addWeighted(roi, DARKEN, box.patch[top : top + roi.shape[0], : roi.shape[1]], 1.0, 0.0, dst=roi)


def _outline(frame: np.ndarray, rows: slice, cols: slice, level: int, thick: int) -> None:
    """A grey-level outline `thick` pixels wide just inside the box: four strips, each filled with one `fill`
    (a third of what `cv2.rectangle` with a thickness takes: it fills rounded polygons)."""
    top, bottom, left, right = rows.start, rows.stop, cols.start, cols.stop
    for strip in (frame[top : top + thick, left:right], frame[max(top, bottom - thick) : bottom, left:right],
                  frame[top:bottom, left : left + thick], frame[top:bottom, max(left, right - thick) : right]):
        strip.fill(level)


def _darken(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Dim a rectangle in place so white text on it reads whatever the picture is."""
    roi = _inside(frame, x0, y0, x1, y1)
    if roi.size:
        cv2.convertScaleAbs(roi, dst=roi, alpha=DARKEN)


def _inside(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The view of frame[y0:y1, x0:x1] clipped to the frame (possibly empty)."""
    return frame[max(0, y0) : min(frame.shape[0], y1), max(0, x0) : min(frame.shape[1], x1)]
