"""The one interface every sink shares, the wrapper that gives a sink one camera's frames, and the one way
a sink says why it cannot write a file."""

from __future__ import annotations

import errno
import os
import pwd
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.live.result import FrameResult


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
def why_unwritable(path: str | Path, error: OSError) -> str:
    """Why creating or opening `path` for writing failed, naming the folder when the folder is the problem,
    e.g. "folder / is read-only (a read-only file system)": never blamed on the file's type."""
    path = Path(os.path.abspath(path))
    folder = path.parent
    if error.errno == errno.EROFS:
        return f"folder {folder} is read-only (a read-only file system)"
    if error.errno == errno.ENOENT and not folder.is_dir():
        return f"folder {folder} does not exist"
    if error.errno == errno.ENOTDIR:
        return f"{folder} is not a folder"
    if error.errno in (errno.EACCES, errno.EPERM):
        where = path if path.exists() else f"folder {folder}"
        return f"{where} is not writable by {user_name()} (permission denied)"
    return f"{error.strerror} ({path})"


def user_name() -> str:
    """This process's user, e.g. "user edgerec" (or "uid 1234" without a name)."""
    try:
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"uid {os.geteuid()}"
