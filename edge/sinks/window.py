"""A desktop window showing the annotated frames; q or Esc (or closing the window) sets the stop event."""

from __future__ import annotations

import os
import re
import sys
import threading

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.live.result import FrameResult

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc


def opencv_gui() -> str:
    """The GUI backend OpenCV was built with ("GTK3", "QT5", "WIN32UI", ...), or "" for none."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return "" if match is None or match.group(1).upper() == "NONE" else match.group(1)


def window_possible() -> bool:
    """True when OpenCV has a GUI and, on Linux, a display to show it on."""
    has_display = not sys.platform.startswith("linux") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    return bool(opencv_gui()) and has_display


class WindowSink:
    wants_overlay = True

    def __init__(self, stop: threading.Event, title: str = "edgerec") -> None:
        if not window_possible():
            raise EdgerecError(_why_no_window())
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as error:
            raise EdgerecError(f"cannot open a window: {error.err}; pass --no-display") from None
        self.stop, self.title = stop, title

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1)
        if key >= 0 and (key & 0xFF) in QUIT_KEYS:
            self.stop.set()
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:  # closed with the mouse
            self.stop.set()

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # let the GUI loop process the close


def _why_no_window() -> str:
    if not opencv_gui():
        return (
            f"cannot show a window: this OpenCV {cv2.__version__} has no GUI (opencv-python-headless); "
            "install opencv-python instead, or pass --no-display (with --out or --events to keep results)"
        )
    return "cannot show a window: no display (DISPLAY and WAYLAND_DISPLAY are unset); pass --no-display"
