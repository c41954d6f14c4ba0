"""The one interface every sink shares, and the wrapper that gives a sink one camera's frames."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge.result import FrameResult


class Sink(Protocol):
    wants_overlay: bool
    """True: `write` gets the frame with the overlay drawn on it; False: the camera's pixels.
    A drawing sink may also have a `shows_pixels` property: while it is False (a web preview nobody
    watches) the frame loop does not draw the overlay for it."""

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """Take one camera frame and its regions' results; `frame` is only valid during the call."""

    def close(self) -> None:
        """Finish and release files and windows; safe to call once after any number of writes."""


class OneCamera:
    """A sink that shows one camera's pixels (a window, a recording) among several cameras."""

    def __init__(self, sink: Sink, camera: str) -> None:
        self.sink, self.camera = sink, camera
        self.wants_overlay = sink.wants_overlay

    @property
    def shows_pixels(self) -> bool:
        return getattr(self.sink, "shows_pixels", True)

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if result.camera == self.camera:
            self.sink.write(frame, result)

    def close(self) -> None:
        self.sink.close()
