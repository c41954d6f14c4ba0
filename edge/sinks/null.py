"""A sink that drops everything: for headless runs that only want the summary or callbacks."""

from __future__ import annotations

import numpy as np

from edge.live.result import FrameResult


class NullSink:
    wants_overlay = False

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        pass

    def close(self) -> None:
        pass
