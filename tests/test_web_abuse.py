"""The web preview under abuse: slow clients that never finish their headers (slowloris) must not lock out
/healthz. Loopback only, bounded, every socket closed at the end."""

from __future__ import annotations

import http.client
import resource
import socket
import time

import numpy as np

from edge.result import Result
from edge.sinks.web import WebOptions, WebSink

SLOW_CLIENTS = 300  # what slowhttptest opened when 21 of 32 health probes failed (issue 15)


def result() -> Result:
    return Result(0, time.monotonic(), "red", 2, 0.9, np.zeros(3, np.float32), True, True, 12.0, 25.0, 3.0)


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
