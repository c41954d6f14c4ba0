"""The web preview under abuse: slow clients that never finish their headers (slowloris) must not lock out
/healthz. Loopback only, bounded, every socket closed at the end."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import resource
import socket
import ssl
import threading
import time

import numpy as np

from edge.live.result import FrameResult, Result, single
from edge.web import server as web_server
from edge.web.options import WebOptions
from edge.web.sink import WebSink

SLOW_CLIENTS = 300  # what slowhttptest opened when 21 of 32 health probes failed (issue 15)


def result() -> FrameResult:
    return single(Result(0, time.monotonic(), "red", 2, 0.9, np.zeros(3, np.float32), True, True, 12.0, 25.0, 3.0))


def probe(port: int, path: str = "/healthz") -> tuple[int | None, float]:
    """(status, seconds), or (None, seconds) when the server closed or refused the connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:  # reset, refused, closed before an answer, timed out
        return None, time.perf_counter() - started
    finally:
        connection.close()


def slow_clients(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each send the start of a request and never the blank line that ends it."""
    sockets = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(connection)
        try:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:  # the server closed it at once
            pass
    return sockets


def trickle(sockets: list[socket.socket], step: int) -> None:
    """One more header line on each (what slowloris does to keep its connections)."""
    for connection in sockets:
        try:
            connection.sendall(f"X-Slow-{step}: 1\r\n".encode())
        except OSError:
            pass


def closed_by_server(connection: socket.socket, timeout: float = 3.0) -> bool:
    """Reads until the server closes (True) or `timeout` passes (False)."""
    connection.settimeout(timeout)
    try:
        while connection.recv(4096):
            pass
    except ConnectionResetError:  # closed with our bytes unread
        return True
    except TimeoutError:
        return False
    return True


def test_slow_clients_that_never_finish_their_headers_do_not_lock_out_the_health_check():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(SLOW_CLIENTS, (soft - 64) // 2)  # both ends live in this process
    assert count >= 100, f"open-file limit {soft} too low for the test"
    sink = WebSink(WebOptions("127.0.0.1:0", stale_after=60))
    slow: list[socket.socket] = []
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        assert probe(sink.port)[0] == 200
        slow = slow_clients(sink.port, count)
        probes = []
        for step in range(12):
            trickle(slow, step)
            probes.append(probe(sink.port))
            time.sleep(0.1)
        failed = [(code, round(took, 2)) for code, took in probes if code != 200 or took > 1.0]
        assert not failed, f"{len(failed)} of {len(probes)} probes failed or took > 1 s during {count} slow clients"
    finally:
        for connection in slow:
            connection.close()
        sink.close()


def test_a_connection_that_never_finishes_its_headers_is_closed_after_the_header_timeout(monkeypatch):
    monkeypatch.setattr(web_server, "HEADER_TIMEOUT_S", 0.5)
    sink = WebSink(WebOptions("127.0.0.1:0"))
    slow: list[socket.socket] = []
    try:
        started = time.monotonic()
        slow = slow_clients(sink.port, 20)
        kept = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
        slow.append(kept)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # a kept-alive connection idle after its answer
        assert kept.recv(4096).startswith(b"HTTP/1.1 503")
        assert all(closed_by_server(connection) for connection in slow)
        assert 0.45 < time.monotonic() - started < 2.5
        assert sink.server.guard.header_timeouts >= 20 and not sink.server.guard.waiting
    finally:
        for connection in slow:
            connection.close()
        sink.close()


def test_waiting_connections_are_capped_by_closing_the_oldest_and_health_still_answers(monkeypatch):
    monkeypatch.setattr(web_server, "MAX_WAITING", 50)
    sink = WebSink(WebOptions("127.0.0.1:0", stale_after=60))
    slow: list[socket.socket] = []
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        slow = slow_clients(sink.port, 120)
        assert all(probe(sink.port)[0] == 200 for _ in range(5))
        guard = sink.server.guard
        assert len(guard.waiting) <= 50 and len(guard.open) <= 51 and guard.evictions >= 70
        assert closed_by_server(slow[0]) and closed_by_server(slow[60])  # the oldest were closed...
        assert probe(sink.port)[0] == 200 and len(guard.waiting) >= 40  # ...the newest are still waiting
    finally:
        for connection in slow:
            connection.close()
        sink.close()


def test_close_ends_within_a_second_and_quietly_with_stuck_viewers_connected(caplog):
    sink = WebSink(WebOptions("127.0.0.1:0", jpeg_fps=1000, jpeg_quality=95))
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    viewers: list[socket.socket] = []
    try:
        for _ in range(3):
            connection = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
            viewers.append(connection)
        deadline = time.monotonic() + 5
        while sink.feed.viewers < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(40):  # ~20 MB of JPEGs: the sockets' buffers fill, their writes stall
            noise[0, 0, 0] = i
            sink.write(noise, result())
            time.sleep(0.01)
        assert sink.feed.viewers == 3
    finally:
        started = time.monotonic()
        sink.close()
        took = time.monotonic() - started
        for connection in viewers:
            connection.close()
    assert took < 1.0, f"close took {took:.2f} s"
    assert not sink.server.guard.open
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def exchange(port: int, request: bytes, chunk: int = 0) -> bytes:
    """Send `request` (in pieces of `chunk` bytes, if given) and read until the server closes or 3 s pass."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=3)
    answer = b""
    try:
        for start in range(0, len(request), chunk or len(request)):
            connection.sendall(request[start:start + (chunk or len(request))])
        while data := connection.recv(65536):
            answer += data
    except OSError:  # reset after a 400, or our timeout on a kept-alive connection
        pass
    finally:
        connection.close()
    return answer


def test_malformed_oversized_and_traversal_requests_leave_the_server_healthy_and_its_resources_at_baseline():
    sink = WebSink(WebOptions("127.0.0.1:0", stale_after=60))
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        assert probe(sink.port)[0] == 200
        fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
        close = b"Host: x\r\nConnection: close\r\n\r\n"
        assert exchange(sink.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert exchange(sink.port, b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 4000, chunk=4096).startswith(b"HTTP/1.1 400")
        for path in (b"/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/static/..%2f..%2fetc/passwd",
                     b"/" + b"a" * 8000):
            answer = exchange(sink.port, b"GET " + path + b" HTTP/1.1\r\n" + close)
            assert answer.startswith(b"HTTP/1.1 404") and b"root:" not in answer, path[:40]
        loopback = b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"  # writes without a token need it (web_app.Guard)
        answer = exchange(sink.port, b"POST /api/status HTTP/1.1\r\nContent-Length: 5\r\n" + loopback + b"hello")
        assert answer.startswith(b"HTTP/1.1 405")
        answer = exchange(sink.port, b"POST /api/status HTTP/1.1\r\nContent-Length: 5\r\n" + close + b"hello")
        assert answer.startswith(b"HTTP/1.1 403")
        assert all(probe(sink.port)[0] == 200 for _ in range(3))
        deadline = time.monotonic() + 5
        while sink.server.guard.open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sink.server.guard.open
        assert len(os.listdir("/proc/self/fd")) <= fds and threading.active_count() <= threads
    finally:
        sink.close()


def test_a_request_whose_body_breaks_http_gets_a_400_and_no_traceback_in_the_log(caplog):
    """uvicorn answers a broken body (a bad chunk size) with a 400 and closes, while the app, already started on
    the request's head, answers too: h11 refused that second answer with a LocalProtocolError, and uvicorn
    logged `Exception in ASGI application` and its traceback, once per such request from anyone (found by
    scripts/bench/bench_web.py --abuse)."""
    sink = WebSink(WebOptions("127.0.0.1:0", stale_after=60))
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        for host in (b"x", b"127.0.0.1"):  # refused by the guard (403); let through to the route (405)
            answer = exchange(sink.port, b"POST /api/status HTTP/1.1\r\nHost: " + host +
                              b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            assert answer.startswith(b"HTTP/1.1 400"), answer[:60]
        assert probe(sink.port)[0] == 200
    finally:
        sink.close()
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def test_many_more_viewers_than_allowed_get_503_at_once_and_resources_return_to_baseline():
    sink = WebSink(WebOptions("127.0.0.1:0", stale_after=60, max_clients=4, jpeg_fps=30))
    viewers: list[socket.socket] = []
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        assert probe(sink.port)[0] == 200
        fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
        for _ in range(40):
            connection = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
            connection.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            viewers.append(connection)
        codes, slowest = [], 0.0
        for connection in viewers:
            started = time.perf_counter()
            codes.append(connection.recv(12)[9:12])
            slowest = max(slowest, time.perf_counter() - started)
        assert codes.count(b"200") == 4 and codes.count(b"503") == 36, codes
        assert slowest < 1.0 and probe(sink.port)[0] == 200
    finally:
        for connection in viewers:
            connection.close()
    try:
        deadline = time.monotonic() + 5
        while (sink.server.guard.open or sink.feed.viewers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sink.server.guard.open and sink.feed.viewers == 0
        assert len(os.listdir("/proc/self/fd")) <= fds and threading.active_count() <= threads
        assert probe(sink.port)[0] == 200
    finally:
        sink.close()


# --- over HTTPS: the guard starts before the TLS handshake ---


def https_sink(tmp_path, **options) -> tuple[WebSink, ssl.SSLContext]:
    sink = WebSink(WebOptions("127.0.0.1:0", tls="auto", state_dir=str(tmp_path), **options))
    return sink, ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))


def https_probe(port: int, context: ssl.SSLContext) -> int | None:
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def test_https_connections_that_never_finish_their_handshake_are_closed_after_the_header_timeout(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(web_server, "HEADER_TIMEOUT_S", 0.5)
    sink, context = https_sink(tmp_path)
    slow: list[socket.socket] = []
    try:
        started = time.monotonic()
        slow = [socket.create_connection(("127.0.0.1", sink.port), timeout=5) for _ in range(20)]  # no ClientHello
        slow[0].sendall(b"\x16\x03\x01\x00\xff")  # the first bytes of a ClientHello, then nothing
        headless = context.wrap_socket(socket.create_connection(("127.0.0.1", sink.port), timeout=5),
                                       server_hostname="127.0.0.1")  # a handshake, then half a request
        headless.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert all(closed_by_server(connection) for connection in slow)
        slow.append(headless)  # kept open by the client: the server must not wait for its TLS goodbye
        with contextlib.suppress(ssl.SSLError):
            assert closed_by_server(headless)
        assert 0.45 < time.monotonic() - started < 2.5
        guard = sink.server.guard
        assert guard.header_timeouts >= 21 and not guard.waiting
        time.sleep(0.1)
        assert not guard.open  # every descriptor released, the TLS one too
        garbage = socket.create_connection(("127.0.0.1", sink.port), timeout=5)  # plain HTTP: handshake fails
        garbage.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_server(garbage, timeout=1.0)
        deadline = time.monotonic() + 0.2  # well before its header timeout...
        while sink.server.guard.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not sink.server.guard.waiting  # ...it has left the guard
        garbage.close()
    finally:
        for connection in slow:
            connection.close()
        sink.close()
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_https_handshakes_are_capped_by_closing_the_oldest_and_health_still_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(web_server, "MAX_WAITING", 50)
    sink, context = https_sink(tmp_path, stale_after=60)
    slow: list[socket.socket] = []
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        slow = [socket.create_connection(("127.0.0.1", sink.port), timeout=5) for _ in range(120)]
        time.sleep(0.3)  # all accepted
        assert all(https_probe(sink.port, context) == 200 for _ in range(5))
        guard = sink.server.guard
        assert len(guard.waiting) <= 50 and guard.evictions >= 70
        assert all(closed_by_server(connection, timeout=1.0) for connection in slow[:70])  # the oldest closed...
        assert https_probe(sink.port, context) == 200 and len(guard.waiting) >= 40  # ...the newest still wait
    finally:
        for connection in slow:
            connection.close()
        sink.close()
