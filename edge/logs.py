"""Log lines for a terminal and for journald: one line per state change (source up/down, model and
provider, reconnects), never one per frame.

On a terminal or into a file: time, level, logger and message. Under systemd, where stderr is the journal
($JOURNAL_STREAM names its device and inode), no timestamp (journald adds its own) and a `<N>` syslog
priority prefix instead, so `journalctl -u edgerec -p warning` filters by level. Never colours.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

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
    """Route the `edgerec` logger (and its children, e.g. `edgerec.capture`) to `stream` (stderr)."""
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
