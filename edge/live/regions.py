"""Regions: named rectangles of a camera's frame, each with its own trigger, smoothing and model.

A region's box is `[x, y, w, h]` as fractions of the frame, so it survives a change of resolution. Its
crop is cut from the full-resolution frame (a view, no copy) and then fitted by `edge.core.preprocess`, so a
small region keeps its detail. No region configured means one implicit region, the whole frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from edge.errors import EdgerecError
from edge.live.result import WHOLE_FRAME
from edge.live.smoothing import SmoothingOptions

TRIGGERS = ("frame", "motion", "interval")
"""frame: every frame (at most `infer_fps`); motion: when motion touches the region, once at start, and at
least every `interval` s; interval: every `interval` s alone."""
KEEPALIVE_S = 10.0
"""A motion-triggered region runs at least this often when `interval` is not given."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
IMPLICIT = "frame"
"""The implicit whole-frame region's name."""


@dataclass(frozen=True)
class TriggerOptions:
    kind: str = "frame"
    """When the model runs on the region: "frame", "motion" or "interval" (TRIGGERS)."""
    interval: float | None = None
    """motion: at least every this many seconds (None: KEEPALIVE_S); interval: every this many seconds
    (required); frame: not used."""
    infer_fps: float | None = None
    """At most this many inferences per second, whatever the trigger; None: no cap."""

    def __post_init__(self) -> None:
        if self.kind not in TRIGGERS:
            raise EdgerecError(f"trigger {self.kind!r} is not known; valid: {', '.join(TRIGGERS)}")
        if self.interval is not None and not self.interval > 0:
            raise EdgerecError(f"interval {self.interval} is not positive; valid: seconds > 0")
        if self.kind == "interval" and self.interval is None:
            raise EdgerecError("trigger 'interval' needs an interval; valid: seconds > 0, e.g. --interval 10")
        if self.infer_fps is not None and not self.infer_fps > 0:
            raise EdgerecError(f"infer-fps {self.infer_fps} is not positive; valid: a number > 0")

    @property
    def keepalive(self) -> float:
        """Longest time between two inferences ("frame" regions run every frame anyway)."""
        return self.interval if self.interval is not None else KEEPALIVE_S


@dataclass(frozen=True)
class RegionOptions:
    name: str = IMPLICIT
    """Names the region in events, MQTT topics, metrics and the web page: letters, digits, _ and -."""
    box: tuple[float, float, float, float] = WHOLE_FRAME
    """x, y, w, h as fractions of the frame, inside it: 0 <= x, y; w, h > 0; x + w <= 1; y + h <= 1."""
    model: str | None = None
    """Model file for this region; None: the run's model."""
    trigger: TriggerOptions = field(default_factory=TriggerOptions)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)

    def __post_init__(self) -> None:
        check_name(self.name, "region name")
        check_box(self.box, f"region {self.name} box")


def check_name(name: str, what: str) -> None:
    problem = name_problem(name)
    if problem:
        raise EdgerecError(f"{what} {name!r} {problem}")


def name_problem(name: str) -> str:
    """What is wrong with a camera or region name ("" when nothing)."""
    if NAME_PATTERN.fullmatch(name):
        return ""
    return "is not valid; valid: 1-64 letters, digits, _ or -, starting with a letter or digit"


def check_box(box: tuple[float, ...], what: str) -> None:
    """A box inside the frame with an area, or EdgerecError naming `what`."""
    problem = box_problem(box)
    if problem:
        raise EdgerecError(f"{what} {list(box)} {problem}")


def box_problem(box: tuple[float, ...]) -> str:
    """What is wrong with a box ("" when nothing): it must be four finite fractions, with an area, inside."""
    if len(box) != 4 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in box):
        return "is not four numbers x, y, w, h; valid: fractions of the frame, e.g. [0.25, 0.5, 0.2, 0.3]"
    x, y, w, h = box
    if not (w > 0 and h > 0):
        return "is empty; valid: w > 0 and h > 0 (fractions of the frame)"
    eps = 1e-9
    if x < 0 or y < 0 or x + w > 1 + eps or y + h > 1 + eps:
        return "is outside the frame; valid: 0 <= x, 0 <= y, x + w <= 1, y + h <= 1 (fractions of the frame)"
    return ""


def parse_region(text: str) -> tuple[str, tuple[float, float, float, float]]:
    """`NAME=X,Y,W,H` (the --region flag) -> (name, box); EdgerecError naming the flag otherwise."""
    name, sep, numbers = text.partition("=")
    parts = numbers.split(",")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if not sep or len(values) != 4:
        raise EdgerecError(f"--region {text!r} is not NAME=X,Y,W,H; valid: e.g. door=0.25,0.1,0.3,0.6 "
                           "(fractions of the frame)")
    check_name(name, "--region name")
    check_box(values, f"--region {name}")
    return name, values  # type: ignore[return-value]


def pixel_rect(box: tuple[float, float, float, float], height: int, width: int) -> tuple[slice, slice]:
    """The rows and columns of `box` in a `height` x `width` frame, at least one pixel each way."""
    x, y, w, h = box
    x0, y0 = min(int(round(x * width)), width - 1), min(int(round(y * height)), height - 1)
    x1, y1 = max(int(round((x + w) * width)), x0 + 1), max(int(round((y + h) * height)), y0 + 1)
    return slice(y0, min(y1, height)), slice(x0, min(x1, width))
