"""Log lines for a terminal and for journald: one line per state change (source up/down, model and
provider, reconnects), never one per frame.

On a terminal or into a file: time, level, logger and message. Under systemd, where stderr is the journal
($JOURNAL_STREAM names its device and inode), no timestamp (journald adds its own) and a `<N>` syslog
priority prefix instead, so `journalctl -u edgerec -p warning` filters by level. Never colours.

The libraries keep quiet (`quiet_libraries`): OpenCV and FFmpeg write their own lines straight to stderr
from C (`[tcp @ 0x...] Connection to tcp://... failed`, `[ WARN:0@13.383] global cap.cpp:212 ...`) on every
reconnect attempt, beside edgerec's one line per state change. With EDGEREC_DEBUG=1 they speak again, at
their own default levels, beside edgerec's debug lines.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

DEBUG_ENV = "EDGEREC_DEBUG"
LIBRARY_QUIET = {"OPENCV_LOG_LEVEL": "SILENT", "OPENCV_FFMPEG_LOGLEVEL": "-8"}  # -8: AV_LOG_QUIET
"""Read by OpenCV when it first logs and when its FFmpeg backend first opens something: set before then."""

PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def stream_is_journal(stream: TextIO) -> bool:
    """True when `stream` is the journald connection systemd set up for this service (sd_journal_stream_fd)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor (io.UnsupportedOperation is both)
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def syslog_priority(levelno: int) -> int:
    return next((priority for level, priority in PRIORITIES if levelno >= level), 7)


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{super().format(record)}"


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> logging.Logger:
    """Route the `edgerec` logger (and its children, e.g. `edgerec.capture`) to `stream` (stderr), at debug
    level when `verbose` or EDGEREC_DEBUG is set; the libraries' own lines are silenced otherwise."""
    verbose = verbose or debug_requested()
    quiet_libraries(verbose)
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if stream_is_journal(stream):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("edgerec")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def debug_requested() -> bool:
    """EDGEREC_DEBUG=1 (or any value but 0 and empty): edgerec's debug lines and the libraries' own."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def quiet_libraries(verbose: bool = False) -> None:
    """Silence OpenCV's and FFmpeg's own stderr lines unless `verbose`; a level the user set is kept.

    Call it at process start, before the first capture is opened: FFmpeg's level is read once, then.
    """
    if verbose:
        return
    for name, value in LIBRARY_QUIET.items():
        os.environ.setdefault(name, value)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and os.environ["OPENCV_LOG_LEVEL"] == "SILENT":  # already loaded: may have read it
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
