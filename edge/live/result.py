"""What the per-frame path hands to the overlay and the sinks: one `Result` per region, grouped per frame.

A camera frame that reached the sinks is a `FrameResult`: the camera's name, the frame's index and capture
time, and one `Result` per region of that camera (one whole-frame region when none is configured). A
region's label carries over between inferences (its trigger decides when the model runs); `age_s` says how
old it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edge.live.motion import MotionState

WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)
"""The implicit region's box: the whole frame, as fractions x, y, w, h."""


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
    """Smoothed probabilities [C] (read-only, overwritten by the region's next inference)."""
    changed: bool
    """True when `label` differs from the region's previous result (the first result counts as a change)."""
    inferred: bool
    """True when the model ran on this frame; False when the result is carried over (trigger, --infer-fps)."""
    latency_ms: float
    """Milliseconds from capture to this result (of the frame the model last ran on)."""
    fps: float
    """Frames per second of this camera reaching the sinks when the model ran (FrameResult.fps is the frame's)."""
    infer_ms: float = 0.0
    """Milliseconds the model took for the batch this region's label came from."""
    camera: str = "camera"
    """The camera's name."""
    region: str = "frame"
    """The region's name; "frame" for the implicit whole-frame region."""
    box: tuple[float, float, float, float] = WHOLE_FRAME
    """The region as fractions x, y, w, h of the frame."""
    trigger: str = "frame"
    """Why the model ran: "frame", "start", "motion", "settling", "interval" or "keep-alive" (edge.live.triggers)."""
    novelty: float = float("nan")
    """How unlike the taught photos the region looks (higher: more novel); NaN when the model carries no novelty
    data or unknown detection is off."""
    features: np.ndarray | None = None
    """The region's feature vector from its last inference (float32 [D], read-only, overwritten by the next one);
    None when the model has no features output."""

    @property
    def whole_frame(self) -> bool:
        """True for the implicit region (no region configured): sinks then behave as before regions."""
        return self.box == WHOLE_FRAME and self.region == "frame"


@dataclass(frozen=True)
class FrameResult:
    """One camera frame's results, in the order the camera's regions are configured.

    A region's `Result` is made when its model runs and handed on unchanged (with changed=False) until the
    next run, so its frame_index and captured are those of the frame it was inferred on; this frame's are
    here, and `age_s(result)` says how old a region's label is.
    """

    camera: str
    frame_index: int
    captured: float
    """time.monotonic() when the frame arrived from the source."""
    fps: float
    regions: tuple[Result, ...]
    motion: MotionState | None = None
    """The camera's motion detector on this frame; None when no region of the camera uses motion."""

    @property
    def changed(self) -> bool:
        """True when any region's label changed on this frame."""
        return any(result.changed for result in self.regions)

    def age_s(self, result: Result) -> float:
        """Seconds between the frame `result` was inferred on and this frame (0.0 when inferred on this one)."""
        return max(0.0, self.captured - result.captured)

    @property
    def first(self) -> Result:
        """The first region's result (the only one for the implicit whole-frame region)."""
        return self.regions[0]


def single(result: Result) -> FrameResult:
    """A frame with one region's result (tests, benchmarks, and a camera with one region)."""
    return FrameResult(result.camera, result.frame_index, result.captured, result.fps, (result,))
