"""Geometric preprocessing: the one crop + resize used by the runtime, evaluation and calibration."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Network input size and centre-crop policy."""

    height: int
    width: int
    crop: float = 0.875


def fit(frame: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """Centre-crop ``frame`` to the network's aspect ratio and resize it to the network's input size."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    h, w = frame.shape[:2]
    scale = min(h / geometry.height, w / geometry.width) * geometry.crop
    ch, cw = max(1, round(geometry.height * scale)), max(1, round(geometry.width * scale))
    y, x = (h - ch) // 2, (w - cw) // 2
    region = frame[y:y + ch, x:x + cw]
    return cv2.resize(region, (geometry.width, geometry.height), dst=out, interpolation=cv2.INTER_AREA)
