"""What the per-frame path hands to the overlay and the sinks for one frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Result:
    frame_index: int
    """The source's frame index (dropped frames of a live source leave gaps)."""
    captured: float
    """time.monotonic() when the frame arrived from the source."""
    label: str
    """The smoothed label shown, or "unknown"."""
    index: int
    """Class index of `label`; -1 for "unknown"."""
    score: float
    """Smoothed probability of the shown class."""
    probs: np.ndarray
    """Smoothed probabilities [C] (read-only, overwritten by the next inference)."""
    changed: bool
    """True when `label` differs from the previous frame's (the first frame counts as a change)."""
    inferred: bool
    """True when the model ran on this frame; False when the result is carried over (--infer-fps)."""
    latency_ms: float
    """Milliseconds from capture to this result (of the frame the model last ran on)."""
    fps: float
    """Frames per second reaching the sinks, over about the last second."""
    infer_ms: float = 0.0
    """Milliseconds the model took on this frame; 0.0 when the result is carried over."""
