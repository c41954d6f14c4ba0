"""Hot reload: the config and its model files read again on a thread of their own, swapped in between turns.

`systemctl reload edgerec` sends SIGHUP (ExecReload= in the unit) and edge.sinks.service sets an event. The
Reloader's thread then reads the config again (the same file, the same command-line flags), checks that
nothing changed that needs a restart, loads every model file afresh (a model replaced on disk is picked up)
and opens the sources whose settings changed. It hands the result to the frame loop, which swaps it in at
the start of its next turn (FrameLoop.apply): cameras whose source did not change keep streaming, regions
whose settings did not change keep their label. Nothing slow happens on the frame loop's thread.

A config that does not load, or that changes what only a restart can change (the cameras' names, the
outputs, OpenCV's threads), is refused with one line in the log, and the running configuration stays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge.errors import EdgerecError
from edge.live.camera import CameraOptions, ModelLike
from edge.live.capture import Source
from edge.loop.options import RunOptions
from edge.sinks.service import Notifier

LOG = logging.getLogger("edgerec.reload")
NEEDS_RESTART = ("display", "out", "segment", "events", "snapshots", "retention", "web", "mqtt", "opencv_threads")
"""RunOptions fields whose change only a restart applies (they open windows, files and servers)."""


@dataclass(frozen=True)
class Update:
    """A configuration ready to swap in: its options, its models loaded, the sources it opened."""

    options: RunOptions
    models: dict[str, ModelLike]
    sources: dict[str, Source]
    """Newly opened sources, by camera name, for the cameras whose source settings changed."""


class Reloader:
    """Prepares an Update each time `requested` is set; the frame loop `take()`s it between two turns."""

    def __init__(self, current: RunOptions, read: Callable[[], RunOptions],
                 load_models: Callable[[RunOptions], dict[str, ModelLike]],
                 open_source: Callable[[CameraOptions], Source], requested: threading.Event,
                 stop: threading.Event) -> None:
        """`current`: the running RunOptions; `read()` reads them again (raises EdgerecError when bad);
        `load_models(options)` and `open_source(camera_options)` as the run does them."""
        self.current, self.read, self.load_models, self.open_source = current, read, load_models, open_source
        self.requested, self.stop = requested, stop
        self.reloads = self.refusals = 0
        self._pending: Update | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgerec-reload", daemon=True)
        self._thread.start()

    def take(self) -> Update | None:
        """The frame loop, once per turn: the prepared update, if any (a plain attribute read when none)."""
        if self._pending is None:
            return None
        with self._lock:
            update, self._pending = self._pending, None
        return update

    def close(self) -> None:
        self._closing.set()
        self.requested.set()  # wakes the thread, which sees it closing
        self._thread.join(timeout=30)
        update = self.take()
        if update is not None:  # prepared but never applied: its sources were opened for nothing
            close_quietly(update.sources.values())

    def _loop(self) -> None:
        while not self._closing.is_set() and not self.stop.is_set():
            if not self.requested.wait(0.5) or self._closing.is_set() or self.stop.is_set():
                continue
            self.requested.clear()
            with Notifier() as notifier:
                notifier.reloading()
                self._prepare()
                notifier.ready()

    def _prepare(self) -> None:
        try:
            options = self.read()
            check_restartless(self.current, options)
            models = self.load_models(options)
            sources = self._open_changed(options)
        except EdgerecError as error:
            self.refusals += 1
            LOG.error("reload refused: %s; the running configuration stays", error)
            return
        with self._lock:
            if self._pending is not None:  # two reloads before a turn: the newer wins
                close_quietly(self._pending.sources.values())
            self._pending = Update(options, models, sources)
        self.current = options
        self.reloads += 1

    def _open_changed(self, options: RunOptions) -> dict[str, Source]:
        running = {camera.name: camera.source for camera in self.current.camera_options()}
        opened: dict[str, Source] = {}
        try:
            for camera in options.camera_options():
                if camera.source != running[camera.name]:
                    opened[camera.name] = self.open_source(camera)
        except Exception:
            close_quietly(opened.values())
            raise
        return opened


def check_restartless(old: RunOptions, new: RunOptions) -> None:
    """EdgerecError naming what changed if `new` differs from `old` in what only a restart applies."""
    changed = [name for name in NEEDS_RESTART if getattr(old, name) != getattr(new, name)]
    old_names = [camera.name for camera in old.camera_options()]
    new_names = [camera.name for camera in new.camera_options()]
    if old_names != new_names:
        changed.append(f"cameras ({', '.join(old_names)} -> {', '.join(new_names)})")
    if changed:
        raise EdgerecError(f"{', '.join(changed)} changed, which needs a restart (systemctl restart edgerec)")


def close_quietly(sources: Iterable[Source]) -> None:
    """Close sources on a thread of their own: a live source's close waits for its grabber thread."""
    sources = list(sources)

    def close_all() -> None:
        for source in sources:
            try:
                source.close()
            except Exception as error:  # a failing close must not stop the others
                LOG.warning("closing a replaced source failed: %s", error)

    threading.Thread(target=close_all, name="edgerec-close", daemon=True).start()

