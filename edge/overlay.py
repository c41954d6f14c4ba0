"""Draw the label, its score, optional top-k bars, FPS and latency onto a frame, in place.

Text sits on boxes that darken the pixels under them, so it reads on bright and dark frames alike;
sizes follow the frame's height.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.result import Result

WHITE, GREY, BAR = (255, 255, 255), (170, 170, 170), (40, 125, 40)
FONT, LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX
DARKEN = 0.3  # box pixels keep this fraction of their brightness


@dataclass(frozen=True)
class OverlayOptions:
    top_k: int = 0
    """Bars for the k most probable classes under the label; 0 draws none."""
    stats: bool = True
    """Draw frames per second and latency in the bottom-left corner."""


class Overlay:
    """One verb: `draw(frame, result)` writes onto `frame` (BGR uint8) without copying it."""

    def __init__(self, labels: Sequence[str], options: OverlayOptions | None = None) -> None:
        self.labels = list(labels)
        self.options = options or OverlayOptions()
        self._fitted: dict[tuple[str, float, int], str] = {}

    def draw(self, frame: np.ndarray, result: Result) -> None:
        scale = max(frame.shape[0] / 720.0, 0.45)
        bottom = self._draw_label(frame, result, scale)
        if self.options.top_k > 0:
            self._draw_bars(frame, result.probs, max(scale, 0.6), bottom)
        if self.options.stats:
            self._draw_stats(frame, result, max(scale, 0.6))  # small text needs a larger minimum

    def _draw_label(self, frame: np.ndarray, result: Result, scale: float) -> int:
        size, thick, pad = 1.1 * scale, max(1, round(2 * scale)), round(10 * scale)
        score = f"{100 * result.score:.0f}%"
        score_w = cv2.getTextSize(score, LABEL_FONT, size, thick)[0][0]
        room = frame.shape[1] - 2 * pad - score_w - 3 * pad
        label = self._fit(result.label, LABEL_FONT, size, thick, room)
        (label_w, text_h), base = cv2.getTextSize(label, LABEL_FONT, size, thick)
        bottom = 2 * pad + text_h + base
        _darken(frame, 0, 0, label_w + score_w + 4 * pad, bottom)
        colour = WHITE if result.index >= 0 else GREY
        cv2.putText(frame, label, (pad, pad + text_h), LABEL_FONT, size, colour, thick, cv2.LINE_AA)
        x = 3 * pad + label_w
        cv2.putText(frame, score, (x, pad + text_h), LABEL_FONT, size, colour, thick, cv2.LINE_AA)
        return bottom

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

    def _draw_stats(self, frame: np.ndarray, result: Result, scale: float) -> None:
        size, thick, pad = 0.6 * scale, max(1, round(scale)), round(8 * scale)
        text = f"{result.fps:.1f} fps  {result.latency_ms:.0f} ms"
        (w, h), base = cv2.getTextSize(text, FONT, size, thick)
        y0 = frame.shape[0] - h - base - 2 * pad
        _darken(frame, 0, y0, w + 2 * pad, frame.shape[0])
        cv2.putText(frame, text, (pad, y0 + pad + h), FONT, size, WHITE, thick, cv2.LINE_AA)

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


def _darken(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Dim a rectangle in place so white text on it reads whatever the picture is."""
    roi = frame[max(0, y0) : min(frame.shape[0], y1), max(0, x0) : min(frame.shape[1], x1)]
    if roi.size:
        cv2.convertScaleAbs(roi, dst=roi, alpha=DARKEN)
