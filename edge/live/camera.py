"""One camera at run time: its source, its motion detector, and the state of each of its regions.

`Camera.due(frame)` runs the motion detector (only when a region is triggered by motion) and asks each
region's trigger whether the model should run on this frame; `RegionState.update` folds a run's
probabilities into the region's smoother and makes its `Result`, which the region then carries (with
changed=False) until its next run. Nothing here runs a model: edge.live.scheduler batches the due regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from edge.core.preprocess import Fitter, Geometry
from edge.errors import EdgerecError
from edge.live.capture import Frame, Source, SourceOptions
from edge.live.motion import MotionDetector, MotionOptions, MotionState
from edge.live.regions import RegionOptions, check_name, pixel_rect
from edge.live.result import Result
from edge.live.smoothing import Smoother
from edge.live.stages import StageTimer
from edge.live.triggers import Trigger

DEFAULT_CAMERA = "camera"


@dataclass(frozen=True)
class CameraOptions:
    source: SourceOptions
    """What to read and how."""
    name: str = DEFAULT_CAMERA
    """Names the camera in events, MQTT topics, metrics and the web page."""
    regions: tuple[RegionOptions, ...] = ()
    """The places to watch; empty: one implicit region, the whole frame (RunOptions' trigger and smoothing)."""
    motion: MotionOptions = field(default_factory=MotionOptions)
    """The motion detector, used when a region's trigger is "motion"."""

    def __post_init__(self) -> None:
        check_name(self.name, "camera name")
        names = [region.name for region in self.regions]
        for name in names:
            if names.count(name) > 1:
                raise EdgerecError(f"camera {self.name}: region name {name!r} appears twice; valid: a different "
                                   "name for each region")


class ModelLike(Protocol):
    """What the frame loop needs of a model (edge.core.model.Model, or a stand-in in tests)."""

    labels: list[str]
    geometry: Geometry

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] BGR -> float32 probabilities [N, C]."""


def novelty_threshold(options: RegionOptions, model: ModelLike) -> float | None:
    """The region's `unknown` threshold: its own or the model file's; None when the file carries no novelty
    data (a stand-in model has none) or unknown is off."""
    stored = getattr(getattr(model, "novelty", None), "threshold", None)
    return options.smoothing.threshold(stored)


class RegionState:
    """A region's fitter, smoother and trigger, and the result it shows now."""

    def __init__(self, camera: str, options: RegionOptions, model_key: str, model: ModelLike) -> None:
        self.camera, self.options, self.model_key, self.model = camera, options, model_key, model
        self.name = options.name
        self.fitter = Fitter(model.geometry)  # keeps its buffers between frames of one size
        self.smoother = Smoother(model.labels, options.smoothing, novelty_threshold(options, model))
        self.trigger = Trigger(options.trigger)
        self.uses_motion = options.trigger.kind == "motion"
        self.result: Result | None = None
        """The newest result: changed/inferred as made, on the frame the model ran on."""
        self.carried: Result | None = None
        """The same with changed=False and inferred=False, for the frames until the next run."""
        self.inferences = self.changes = 0
        self._rect: tuple[slice, slice] | None = None
        self._shape: tuple[int, ...] = ()

    @property
    def scores_novelty(self) -> bool:
        """Whether this region asks its model for novelty scores (its file has them and unknown is on)."""
        return self.smoother.novelty_threshold is not None

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region's pixels of `image`: a view of the full-resolution frame, no copy."""
        if image.shape != self._shape:
            self._shape = image.shape
            self._rect = pixel_rect(self.options.box, image.shape[0], image.shape[1])
        rows, cols = self._rect
        return image[rows, cols]

    def update(self, probs: np.ndarray, frame: Frame, fps: float, latency_ms: float, infer_ms: float,
               novelty: float = float("nan"), features: np.ndarray | None = None) -> Result:
        """Fold one run's probabilities [C] (and novelty score) into the smoother; the region's new result."""
        shown = self.smoother.update(probs, novelty if self.scores_novelty else float("nan"))
        self.trigger.ran(frame.captured, self.uses_motion and self.smoother.settled)  # only motion asks
        self.result = Result(frame.index, frame.captured, shown.label, shown.index, shown.score, shown.probs,
                             changed=shown.changed, inferred=True, latency_ms=latency_ms, fps=fps,
                             infer_ms=infer_ms, camera=self.camera, region=self.name, box=self.options.box,
                             trigger=self.trigger.reason, novelty=shown.novelty, features=features)  # fmt: skip
        self.carried = replace(self.result, changed=False, inferred=False) if shown.changed else self.result
        self.inferences += 1
        self.changes += shown.changed
        return self.result

    def keeps(self, options: RegionOptions, model_key: str, model: ModelLike) -> bool:
        """Whether this region can carry on unchanged (its label too) under `options` and `model` (a reload)."""
        return (options == self.options and model_key == self.model_key and model.labels == self.model.labels
                and model.geometry == self.model.geometry
                and novelty_threshold(options, model) == self.smoother.novelty_threshold)

    def shown(self, frame: Frame) -> Result | None:
        """What the region shows on `frame`: its new result if the model ran on it, else the carried one."""
        result = self.result
        if result is not None and result.captured == frame.captured and result.frame_index == frame.index:
            return result
        return self.carried


class Camera:
    """A camera's source, motion detector and regions; `due(frame)` says which regions run on a frame."""

    def __init__(self, options: CameraOptions, source: Source, regions: list[RegionState]) -> None:
        self.options, self.name, self.source, self.regions = options, options.name, source, regions
        needs_motion = any(region.uses_motion for region in regions)
        self.motion = MotionDetector(options.motion) if needs_motion else None
        self.motion_state: MotionState | None = None
        self.fps = 0.0
        self.frames = 0
        self.frame_age = StageTimer()
        """Milliseconds from capture to the start of preprocessing, for this camera's frames the model ran on."""
        self._rate_last, self._interval = -1.0, 0.0

    def reconfigure(self, options: CameraOptions, regions: list[RegionState], source: Source | None) -> None:
        """Take new settings and regions (a reload); `source`: a new source, or None to keep streaming this one.
        Frame counts, the frame rate and the frame-age timer carry on."""
        if source is not None:
            self.source = source
        if options.motion != self.options.motion or not any(region.uses_motion for region in self.regions):
            self.motion, self.motion_state = None, None  # re-learnt with the new settings
        self.options, self.regions = options, regions
        if self.motion is None and any(region.uses_motion for region in regions):
            self.motion = MotionDetector(options.motion)

    def due(self, frame: Frame) -> list[RegionState]:
        """Look at a new frame: its rate, its motion, and the regions whose model runs on it."""
        self._tick(frame.captured)
        global_change = False
        if self.motion is not None:
            self.motion_state = self.motion.update(frame.image)
            # While the detector re-learns the scene after a global change (lights on, an IR switch, the
            # camera panning or shaken, someone at the lens, the start) it reports no motion; but what every
            # region shows may be changing, so every motion region runs on those frames: better a few runs
            # too many than a change missed.
            global_change = self.motion_state.recalibrating
        due = []
        for region in self.regions:
            moving = region.uses_motion and (global_change or self.motion.touches(region.options.box))
            if region.trigger.due(frame.captured, moving):
                due.append(region)
        return due

    def _tick(self, captured: float) -> None:
        """Frames per second from capture times, averaged over about the last second (an EMA)."""
        if self._rate_last >= 0 and captured > self._rate_last:
            gap = captured - self._rate_last
            self._interval = gap if not self._interval else self._interval + 0.05 * (gap - self._interval)
        self._rate_last = captured
        self.fps = 1.0 / self._interval if self._interval else 0.0
