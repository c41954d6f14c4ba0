"""Serves an ASGI app with uvicorn on a background thread, guarded against slow and stuck clients.

uvicorn waits for a request's headers for as long as the client likes (its keep-alive timeout starts only after
a first answer, and any byte cancels it), so a few hundred connections that never finish their headers
(slowloris) would each hold a file descriptor for ever. The guard here, on the server's own event loop:

- closes a connection whose request headers are not complete `HEADER_TIMEOUT_S` after it opened (or after its
  previous answer, for a kept-alive connection);
- holds at most `MAX_WAITING` connections that wait for their headers: one more closes the oldest of them, so
  a new connection (a health probe) is always accepted and answered, and descriptors stay bounded;
- aborts a connection whose socket has taken nothing for `SEND_TIMEOUT_S` (a stuck MJPEG viewer).

Over HTTPS (an ssl.SSLContext given) the guard starts at the TCP connection, before the TLS handshake: a
connection that never finishes its handshake counts as waiting for its headers (the event loop's own handshake
timeout would be 60 s, and unbounded in number). asyncio hands the page's protocol to the TLS transport only once
the handshake is done, so `BackgroundServer` wraps the loop's `_make_ssl_transport` (the one place that sees
both) to tell the guard at accept time; tests/test_web_abuse.py checks this over HTTPS too.

An unfinished request head that grows past `MAX_HEADER_BYTES` gets a 400 (h11's limit). The server never
installs signal handlers (uvicorn only does so on the main thread), so the process keeps its own SIGTERM/SIGINT
handling.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from edge.errors import EdgerecError

HEADER_TIMEOUT_S = 10.0  # a request's headers must be complete this long after the connection (or answer)
MAX_WAITING = 256  # connections waiting for their headers at once; one more closes the oldest
SEND_TIMEOUT_S = 10.0  # a client whose socket takes nothing for this long is dropped
MAX_HEADER_BYTES = 16384  # an incomplete request head may grow to this, then 400
BACKLOG = 512
STOP_GRACE_S = 0.5  # close(): how long answers under way may take to finish


def listen(host: str, port: int, listen_text: str) -> socket.socket:
    """A listening socket, bound now so that a taken port is one line and port 0 is known at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise EdgerecError(f"web address {listen_text}: cannot listen ({error.strerror or error})") from None
    sock.setblocking(False)
    return sock


class ConnectionGuard:
    """Connections waiting for their request headers, oldest first; used on the server's event loop only."""

    def __init__(self) -> None:
        self.waiting: dict[GuardedProtocol, asyncio.TimerHandle] = {}
        self.open: set[GuardedProtocol] = set()
        self.header_timeouts = self.evictions = 0

    def wait_for_headers(self, protocol: GuardedProtocol) -> None:
        self.got_headers(protocol)
        self.waiting[protocol] = protocol.loop.call_later(HEADER_TIMEOUT_S, self._timed_out, protocol)
        while len(self.waiting) > MAX_WAITING:
            self.evictions += 1
            self._close(next(iter(self.waiting)))

    def got_headers(self, protocol: GuardedProtocol) -> None:
        timer = self.waiting.pop(protocol, None)
        if timer is not None:
            timer.cancel()

    def abort_all(self, stalled_only: bool = False) -> None:
        for protocol in list(self.open):
            if protocol.stalled or not stalled_only:
                protocol.transport.abort()

    def _timed_out(self, protocol: GuardedProtocol) -> None:
        self.header_timeouts += 1
        self._close(protocol)

    def _close(self, protocol: GuardedProtocol) -> None:
        self.got_headers(protocol)
        # abort, not close: nothing is being written to it, and over TLS close() would wait up to 30 s for the
        # client's goodbye, holding the descriptor outside the guard. On the loop's next turn: a TLS connection
        # evicted as it is accepted has no socket under its transport before then (asyncio calls it soon).
        protocol.loop.call_soon(protocol.transport.abort)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol, reporting to a ConnectionGuard and dropping a client that takes nothing."""

    def __init__(self, *args: object, guard: ConnectionGuard, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.guard = guard
        self._stalled: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.open.add(self)
        self.guard.wait_for_headers(self)

    def handshaking(self, transport: asyncio.Transport, done: asyncio.Future[None]) -> None:
        """HTTPS: accepted, its TLS handshake under way (`done` when over): the guard times and caps it like a
        connection waiting for its headers; one whose handshake fails leaves the guard at once."""
        self.transport = transport
        self.guard.wait_for_headers(self)

        def over(future: asyncio.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.guard.got_headers(self)

        done.add_done_callback(over)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self.guard.got_headers(self)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400 for a request that breaks HTTP after its head (a bad chunk): the app may already be
        answering that request; its answer now goes nowhere (h11 would refuse it, and uvicorn log a traceback)."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            if self.cycle.response_started:  # too late for a 400: the answer's head is out
                self.transport.close()
                return
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:  # kept alive: the next request
            self.guard.wait_for_headers(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.got_headers(self)
        self.guard.open.discard(self)
        self.resume_writing()
        super().connection_lost(exc)

    @property
    def stalled(self) -> bool:
        """The client has not taken what was written (the transport's buffer is over its high-water mark)."""
        return self._stalled is not None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(SEND_TIMEOUT_S, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None


class BackgroundServer:
    """uvicorn serving `app` on `sock` from its own thread and event loop until `stop()`."""

    def __init__(self, app: object, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        """`tls`: serve HTTPS only, with this server context (edge.web.tls); None: plain HTTP."""
        self.guard = ConnectionGuard()
        config = uvicorn.Config(
            app, http=self._protocol, ws="none", lifespan="off", loop="asyncio", log_config=None, log_level="error",
            access_log=False, server_header=False, proxy_headers=False, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            timeout_graceful_shutdown=STOP_GRACE_S,
        )  # fmt: skip
        if tls is not None:
            config.load()
            config.ssl = tls  # uvicorn would build its own from file names (its cipher list "TLSv1")
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.tls = tls
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgerec-web", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _protocol(self, *args: object, **kwargs: object) -> GuardedProtocol:
        return GuardedProtocol(*args, guard=self.guard, **kwargs)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.tls is not None:
            guard_handshakes(self.loop)
        self._ready.set()
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.guard.abort_all()  # what the grace period did not end
            self.sock.close()

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback()` on the server's loop (from any thread); nothing once the loop has ended."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # closed in the meantime
                pass

    def stop(self) -> None:
        """Answers under way finish (STOP_GRACE_S at most); a client that takes nothing is not waited for."""
        self.call_soon(lambda: self.guard.abort_all(stalled_only=True))
        self.server.should_exit = True
        self._thread.join()



def guard_handshakes(loop: asyncio.AbstractEventLoop) -> None:
    """Tell each GuardedProtocol of its connection as soon as it is accepted, before its TLS handshake."""
    make = loop._make_ssl_transport  # type: ignore[attr-defined]

    def make_ssl_transport(rawsock: socket.socket, protocol: asyncio.BaseProtocol, sslcontext: ssl.SSLContext,
                           waiter: asyncio.Future[None] | None = None, **kwargs: object) -> asyncio.Transport:
        transport = make(rawsock, protocol, sslcontext, waiter, **kwargs)
        if isinstance(protocol, GuardedProtocol) and waiter is not None and kwargs.get("server_side"):
            protocol.handshaking(transport, waiter)
        return transport

    loop._make_ssl_transport = make_ssl_transport  # type: ignore[attr-defined]
