"""The one interface every sink shares."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge.result import Result


class Sink(Protocol):
    wants_overlay: bool
    """True: `write` gets the frame with the overlay drawn on it; False: the camera's pixels.
    A drawing sink may also have a `shows_pixels` property: while it is False (a web preview nobody
    watches) the frame loop does not draw the overlay for it."""

    def write(self, frame: np.ndarray, result: Result) -> None:
        """Take one frame and its result; `frame` is only valid during the call."""

    def close(self) -> None:
        """Finish and release files and windows; safe to call once after any number of writes."""
