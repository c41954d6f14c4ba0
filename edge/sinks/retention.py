"""Retention: keep the files edgerec wrote (recording segments, snapshots, rotated events files) within a size
budget and an age, deleting the oldest first, on a thread of its own.

Each file sink names what it writes as a `FileFamily`: its folder, the names of its finished files (which may
be deleted) and of the file it is writing now (counted, never deleted: the segment being recorded, the events
file being appended to). A name that matches neither is not edgerec's and is never looked at, let alone
deleted; neither is anything but a regular file (no symlink is followed).

A sweep lists the families' folders, adds up the bytes, and deletes finished files oldest first (modification
time, then name) while one is older than `max_days` or while the bytes kept exceed `max_mb`. The bytes kept
include room for the segment being recorded to grow to the size of the last finished one, so the folder stays
within the budget while it grows, not only after each sweep. Sweeps run every `every_s` seconds and whenever a
sink pokes (a recording segment was closed): never on the frame loop.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgerecError

LOG = logging.getLogger("edgerec.retention")
EVERY_S = 60.0
"""Seconds between sweeps when no sink pokes."""


@dataclass(frozen=True)
class RetentionOptions:
    max_mb: float | None = None
    """Megabytes (10^6 bytes) the kept files may take together; None: no size budget."""
    max_days: float | None = None
    """Days a finished file is kept; None: no age limit."""
    every_s: float = EVERY_S
    """Seconds between sweeps (a closed recording segment also starts one)."""

    def __post_init__(self) -> None:
        for name, flag in (("max_mb", "retain-mb"), ("max_days", "retain-days"), ("every_s", "every_s")):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise EdgerecError(f"{flag} {value} is not positive; valid: a number > 0")

    @property
    def enabled(self) -> bool:
        return self.max_mb is not None or self.max_days is not None


@dataclass(frozen=True)
class FileFamily:
    """The files one sink writes into one folder."""

    what: str
    """recording, snapshots or events (log lines)."""
    folder: Path
    finished: re.Pattern[str]
    """Names of its complete files: these may be deleted."""
    writing: re.Pattern[str] | None = None
    """The name of the file it is writing: counted in the budget, never deleted."""
    grows: bool = False
    """Its file being written grows to about the size of a finished one (a recording segment): room is kept
    for that."""


@dataclass(frozen=True)
class RetentionStats:
    kept_bytes: int
    """Bytes of the families' files after the last sweep (the files being written included)."""
    kept_files: int
    deleted_bytes: int
    """Bytes deleted since the start."""
    deleted_files: int
    sweeps: int
    error: str
    """The last deletion that failed ("" none)."""


@dataclass(frozen=True)
class _File:
    mtime: float
    name: str
    path: Path
    size: int


class Retention:
    """The sweeper thread: `start()`, `poke()` from any thread, `close()`; `sweep()` is one pass."""

    def __init__(self, options: RetentionOptions, families: Sequence[FileFamily],
                 clock: Callable[[], float] = time.time) -> None:
        self.options, self.families, self.clock = options, list(families), clock
        self._stats = RetentionStats(0, 0, 0, 0, 0, "")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Retention:
        self._thread = threading.Thread(target=self._run, name="edgerec-retention", daemon=True)
        self._thread.start()
        return self

    def poke(self, *_: object) -> None:
        """Sweep soon (a sink closed a file); returns at once."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def stats(self) -> RetentionStats:
        with self._lock:
            return self._stats

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception as error:  # a folder gone, a file system error: the next sweep tries again
                LOG.warning("retention: sweep failed: %s", error)
            self._wake.wait(self.options.every_s)
            self._wake.clear()

    def sweep(self) -> RetentionStats:
        """List, add up, delete what is over the budget or too old (oldest first); the stats after it."""
        deletable, writing_files, total, reserve = self._listing()
        budget = self.options.max_mb * 1e6 if self.options.max_mb is not None else None
        expired = self.clock() - self.options.max_days * 86400 if self.options.max_days is not None else None
        kept_files = len(deletable) + writing_files
        deleted_bytes = deleted_files = 0
        error = ""
        for file in sorted(deletable, key=lambda f: (f.mtime, f.name)):
            too_old = expired is not None and file.mtime < expired
            too_big = budget is not None and total + reserve > budget
            if not (too_old or too_big):
                break  # every newer file is younger, and the budget is met
            try:
                os.unlink(file.path)
            except FileNotFoundError:
                pass  # someone else removed it
            except OSError as failure:
                error = f"cannot delete {file.path}: {failure.strerror}"
                continue
            total -= file.size
            kept_files -= 1
            deleted_bytes += file.size
            deleted_files += 1
        if deleted_files:
            LOG.debug("retention: deleted %d file(s), %.1f MB; %.1f MB kept", deleted_files, deleted_bytes / 1e6,
                      total / 1e6)
        if error and error != self._stats.error:
            LOG.warning("retention: %s", error)
        with self._lock:
            old = self._stats
            self._stats = RetentionStats(total, kept_files, old.deleted_bytes + deleted_bytes,
                                         old.deleted_files + deleted_files, old.sweeps + 1, error)
            return self._stats

    def _listing(self) -> tuple[list[_File], int, int, int]:
        """The deletable files, how many are being written, the bytes of every file of the families, the room
        kept for growing files."""
        deletable: list[_File] = []
        writing_files = total = reserve = 0
        for family in self.families:
            newest: _File | None = None
            writing = 0
            for entry in _entries(family.folder):
                name = entry.name
                is_finished = family.finished.fullmatch(name) is not None
                if not is_finished and not (family.writing is not None and family.writing.fullmatch(name)):
                    continue  # not a name edgerec writes: never touched
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                total += info.st_size
                if not is_finished:
                    writing += info.st_size
                    writing_files += 1
                    continue
                file = _File(info.st_mtime, name, Path(entry.path), info.st_size)
                deletable.append(file)
                if newest is None or (file.mtime, file.name) > (newest.mtime, newest.name):
                    newest = file
            if family.grows and newest is not None:
                reserve += max(0, newest.size - writing)
        return deletable, writing_files, total, reserve


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def stamped(stem: str, suffix: str) -> re.Pattern[str]:
    """Names `STEM-YYYYMMDD-HHMMSS[-N]SUFFIX`, as recording segments and rotated events files are named."""
    return re.compile(rf"{re.escape(stem)}-[0-9]{{8}}-[0-9]{{6}}(-[0-9]{{1,6}})?{re.escape(suffix)}")


def stamped_path(path: Path, when: datetime.datetime, taken: Sequence[Path] = ()) -> Path:
    """`out.mp4` -> `out-20261207-011500.mp4` beside it (`-2`, `-3`, ... where that name exists or is `taken`):
    the names `stamped` matches."""
    stamp = f"{path.stem}-{when:%Y%m%d-%H%M%S}"
    candidate = path.with_name(f"{stamp}{path.suffix}")
    number = 1
    while candidate in taken or candidate.exists():
        number += 1
        candidate = path.with_name(f"{stamp}-{number}{path.suffix}")
    return candidate
