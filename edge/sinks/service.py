"""systemd's notify protocol without libsystemd: readiness, watchdog keep-alive, status line, stopping.

A Type=notify unit hands the service a datagram socket in $NOTIFY_SOCKET (a path, or `@name` in the
abstract namespace) and, with WatchdogSec=, the keep-alive deadline in $WATCHDOG_USEC, meant for the
process in $WATCHDOG_PID when that is set (sd_notify(3), sd_watchdog_enabled(3)). Outside systemd
NOTIFY_SOCKET is unset and every method is a no-op, so `edgerec run` behaves the same when started by hand.

`ServiceSink` is the pipeline's side: as a sink it sees every labelled frame, so it sends READY=1 with the
first, WATCHDOG=1 while frames flow (the pings stop when frames stop, and systemd restarts a hung
camera), a STATUS= line about once a second and STOPPING=1 when closed. `Notifier.watchdog()` is cheap
enough for every frame: one clock read and one comparison until half the watchdog interval has passed.

`install_signal_handlers` turns SIGINT and SIGTERM into the program's one stop event. A Python signal
handler runs on the main thread between any two bytecodes, nested inside an earlier handler when signals
come in a burst, so it must never take a lock: `Event.set` does (a second SIGTERM inside the first
handler's `Event.set` waited for that lock forever). The C-level handler writes the signal's number to a
pipe (`signal.set_wakeup_fd`), a watcher thread reads it and sets the event; the Python handler only
notes the time of the first signal, and raises KeyboardInterrupt for a Ctrl-C that comes FORCE_AFTER_S
or more after it (a stop that seems stuck); a burst of Ctrl-C faster than that is one request to stop,
so it never cuts the closing of a recording short.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from edge.errors import EdgerecError
from edge.live.result import FrameResult

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER_S = 1.0  # a Ctrl-C this long after the first stop signal raises KeyboardInterrupt; sooner, it is ignored


def socket_address(value: str) -> bytes | None:
    """$NOTIFY_SOCKET as an AF_UNIX address; None when unset."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value.encode()
    raise EdgerecError(f"NOTIFY_SOCKET={value!r} is not supported: edgerec speaks to AF_UNIX sockets only "
                       "(a /path or an @abstract name)")


def under_service_manager(environ: Mapping[str, str] | None = None) -> bool:
    """True when systemd started this process as a service: $NOTIFY_SOCKET (Type=notify, as our unit) or
    $INVOCATION_ID (any unit, systemd 232 and later)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("NOTIFY_SOCKET") or environ.get("INVOCATION_ID"))


def watchdog_period(environ: Mapping[str, str]) -> float | None:
    """Seconds between keep-alive pings (half of $WATCHDOG_USEC), or None when no watchdog is asked of us."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and (not pid.isdigit() or int(pid) <= 0):
        raise EdgerecError(f"WATCHDOG_PID={pid!r} is not a process id")
    if pid and int(pid) != os.getpid():
        return None  # the watchdog belongs to another process (we were forked or exec'd by the service)
    if not usec.isdigit() or int(usec) <= 0:
        raise EdgerecError(f"WATCHDOG_USEC={usec!r} is not a positive whole number of microseconds")
    return int(usec) / 2e6


class Notifier:
    """Messages to the service manager. Methods return whether a message went out; they never raise."""

    def __init__(self, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        environ = os.environ if environ is None else environ
        self.address = socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_period = watchdog_period(environ) if self.address else None
        self._clock = clock
        self._socket: socket.socket | None = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)  # a full queue drops a message rather than stall the frame loop
        self._next_ping = clock() if self.watchdog_period else math.inf

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def ready(self) -> bool:
        return self._send("READY=1")

    def watchdog(self) -> bool:
        """Keep-alive ping, sent at most once per half watchdog interval however often this is called."""
        now = self._clock()
        if now < self._next_ping:
            return False
        self._next_ping = now + self.watchdog_period
        return self._send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """One line for `systemctl status` (e.g. fps and label); call it about once a second, not per frame."""
        return self._send("STATUS=" + text.replace("\n", " "))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more to start or stop (e.g. while TensorRT builds an engine)."""
        return self._send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1e6)}")

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def reloading(self) -> bool:
        """Tell systemd a reload began (`systemctl reload` waits for READY=1, sent when it is done)."""
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: str) -> bool:
        if self._socket is None:
            return False
        try:
            self._socket.sendto(message.encode(), self.address)
        except OSError:  # manager gone, queue full: nothing to do but carry on
            return False
        return True


class ServiceSink:
    """Tells systemd how the frame loop is doing; a sink like the others (edge.sinks.base.Sink)."""

    wants_overlay = False

    def __init__(self, notifier: Notifier, status_every: float = 1.0) -> None:
        self.notifier = notifier
        self.status_every = status_every
        self.ready = False
        self._next_status = -math.inf

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """Any camera's frame keeps the watchdog fed: it fires only when every camera has stalled (or the
        process hangs); one dead camera among several shows in /healthz and /metrics instead."""
        if not self.ready:
            self.ready = self.notifier.ready()
        self.notifier.watchdog()
        if result.captured >= self._next_status:  # the frame's own timestamp: no clock read per frame
            self._next_status = result.captured + self.status_every
            shown = ", ".join(f"{r.label} {r.score:.0%}" if r.whole_frame else f"{r.region} {r.label} {r.score:.0%}"
                              for r in result.regions[:4])
            first = result.first if result.regions else None
            latency = f", latency {first.latency_ms:.0f} ms" if first else ""
            camera = "" if len(result.regions) == 1 and result.first.whole_frame else f"{result.camera}: "
            self.notifier.status(f"{camera}{result.fps:.1f} fps, {shown}{latency}")

    def close(self) -> None:
        self.notifier.stopping()
        self.notifier.close()


def install_signal_handlers(stop: threading.Event, force_after: float = FORCE_AFTER_S,
                            reload: threading.Event | None = None) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set `stop`, however many arrive and whenever; a Ctrl-C `force_after` seconds
    or more after the first stop signal raises KeyboardInterrupt in the main thread. With `reload`, SIGHUP
    (`systemctl reload`) sets it.

    Call it from the main thread (the CLI, a service); returns a function restoring the old handlers.
    """
    reader, writer = os.pipe()  # plain descriptors: open until restore() closes them, kept or not
    os.set_blocking(writer, False)  # set_wakeup_fd asks for it: the C handler must never block
    first_signal_at: list[float] = []  # appended to by the handler only; no lock anywhere on its path

    def handle(signum: int, _frame: object) -> None:
        if not first_signal_at:
            first_signal_at.append(time.monotonic())
        elif signum == signal.SIGINT and time.monotonic() - first_signal_at[0] >= force_after:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    if reload is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _noted)
    previous_fd = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_set_on_stop_signal, args=(reader, stop, reload), name="edgerec-signals",
                               daemon=True)
    watcher.start()

    def restore() -> None:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(writer)  # the watcher reads end-of-file and returns
        watcher.join()
        os.close(reader)

    return restore


def _noted(signum: int, _frame: object) -> None:
    """SIGHUP's Python-level handler: nothing to do here; the C handler wrote its number to the watcher."""


def _set_on_stop_signal(reader: int, stop: threading.Event, reload: threading.Event | None) -> None:
    """The watcher thread: one byte per signal caught (its number) until the writing end closes."""
    while data := os.read(reader, 256):
        if any(signum in STOP_SIGNALS for signum in data):
            stop.set()
        if reload is not None and signal.SIGHUP in data:
            reload.set()
