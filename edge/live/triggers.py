"""When a region's model runs: every frame, on motion (until its label settles), or on an interval.

    frame     every frame, at most `infer_fps` times a second
    motion    when motion touches the region; then on every frame until the region's smoother has settled
              (a one-frame motion still lets the moving average and the hysteresis reach the new label),
              at most SETTLE_MAX_S; once at start; and at least every `interval` (keep-alive)
    interval  every `interval` seconds

Times are the frames' capture times (time.monotonic()), so a trigger decides on the frame's own clock.
"""

from __future__ import annotations

import math

from edge.live.regions import TriggerOptions

SETTLE_MAX_S = 3.0
"""The longest a motion-triggered region keeps running after the motion, waiting for its label to settle."""


class Trigger:
    """One region's trigger state. Verbs: `due(now, motion)` before the frame, `ran(now, settled)` after a run."""

    def __init__(self, options: TriggerOptions) -> None:
        self.options = options
        self.period = 1.0 / options.infer_fps if options.infer_fps else 0.0
        self.keepalive = options.keepalive
        self.next_allowed = -math.inf  # the infer_fps cap
        self.last_run = -math.inf
        self.settle_until = -math.inf  # motion: keep running until settled, or until then
        self.reason = ""
        """Why the model last ran: "frame", "start", "motion", "settling", "interval" or "keep-alive"."""
        self._pending = ""

    def due(self, now: float, motion: bool) -> bool:
        """Whether the model should run on the frame captured at `now`; `motion`: motion touches the region."""
        if now < self.next_allowed:
            return False
        kind = self.options.kind
        if kind == "frame":
            self._pending = "frame"
        elif self.last_run == -math.inf:
            self._pending = "start"
        elif kind == "motion" and motion:
            self._pending = "motion"
        elif kind == "motion" and now < self.settle_until:
            self._pending = "settling"
        elif now - self.last_run >= self.keepalive:
            self._pending = "interval" if kind == "interval" else "keep-alive"
        else:
            return False
        return True

    def ran(self, now: float, settled: bool) -> None:
        """The model ran on the frame captured at `now` (after `due` said so); `settled`: its smoother settled."""
        self.reason, self.last_run = self._pending, now
        if self.period:  # on a grid of one period, never more than one period behind
            self.next_allowed = (self.next_allowed if self.next_allowed > now - self.period else now) + self.period
        if self.options.kind == "motion":
            if self.reason == "motion":
                self.settle_until = now + SETTLE_MAX_S
            if settled:
                self.settle_until = -math.inf

    @property
    def settling(self) -> bool:
        """A motion-triggered region still runs on every frame until its label settles."""
        return self.settle_until > -math.inf
