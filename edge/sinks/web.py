"""A web preview: the live picture and label in a browser, with JSON status, a health check and metrics.

    /             a page (inline CSS and JS, no external assets): the live picture, label, score, fps,
                  latency and source health, refreshed by polling /api/status
    /stream.mjpg  the annotated frames as MJPEG (multipart/x-mixed-replace), at most `jpeg_fps`
    /api/status   JSON: label, score, fps, latency_ms, inference_ms, frames, source, uptime_s, ...
    /healthz      200 while frames flow (the newest is less than `stale_after` s old), else 503
    /metrics      Prometheus text format, every name prefixed edgerec_

The frame loop only hands over numbers, and a frame only while someone watches the stream and a JPEG is
due: it is copied into a reused buffer for the one encoder thread, which makes each JPEG once for all
viewers. Each viewer's thread sends the newest JPEG when its socket takes it, so a slow viewer skips
pictures and holds up neither the frame loop nor the other viewers. The server listens on loopback by
default; any other address needs a token, which every route then checks (`Authorization: Bearer TOKEN` or
`?token=TOKEN`, compared in constant time).
"""

from __future__ import annotations

import bisect
import hmac
import ipaddress
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edge.capture import SourceStatus
from edge.errors import EdgerecError
from edge.result import FrameResult, Result

TOKEN_ENV = "EDGEREC_WEB_TOKEN"
MIN_TOKEN_CHARS = 16
LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
INFERENCE_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BOUNDARY = "edgerecframe"
SEND_TIMEOUT_S = 10.0  # a viewer whose socket takes nothing for this long is dropped
EXTRA_CONNECTIONS = 16  # connections at once beyond the viewers: page loads, status polls, health, metrics


@dataclass(frozen=True)
class WebOptions:
    listen: str = "127.0.0.1:8080"
    """HOST:PORT to serve on ([::1]:PORT for IPv6, PORT alone for loopback); port 0 picks a free one."""
    token: str | None = None
    """Required on every route when `listen` is not a loopback address; None: $EDGEREC_WEB_TOKEN."""
    max_clients: int = 4
    """MJPEG viewers at once; more get 503."""
    jpeg_fps: float = 5.0
    """JPEGs per second at most, made only while someone watches (a 1080p JPEG costs ~10 ms of CPU)."""
    jpeg_quality: int = 80
    """JPEG quality, 1-100."""
    stale_after: float = 5.0
    """Seconds without a frame after which /healthz answers 503."""
    metrics: bool = True
    """Serve /metrics (Prometheus text format); False: 404 there."""

    def __post_init__(self) -> None:
        host, _ = parse_listen(self.listen)
        check_token(self.token if self.token is not None else os.environ.get(TOKEN_ENV, ""), host, self.listen)
        if self.max_clients < 1:
            raise EdgerecError(f"web max-clients {self.max_clients} is not positive; valid: an integer >= 1")
        if not self.jpeg_fps > 0:
            raise EdgerecError(f"web jpeg-fps {self.jpeg_fps} is not positive; valid: a number > 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise EdgerecError(f"web jpeg-quality {self.jpeg_quality} is out of range; valid: 1-100")
        if not self.stale_after > 0:
            raise EdgerecError(f"web stale-after {self.stale_after} is not positive; valid: seconds > 0")


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `PORT` (loopback) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets to be told from its port
    if not host or not port.isdigit() or int(port) > 65535:
        raise EdgerecError(f"web address {listen!r} (--web, web.listen) is not HOST:PORT; valid: e.g. "
                           "127.0.0.1:8080, [::1]:8080, 8080 (loopback) or 0.0.0.0:8080 (every interface, needs a "
                           "token)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


class Histogram:
    """Prometheus-style buckets: observe() is a bisect and two additions."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def copy(self) -> Histogram:
        twin = Histogram(self.bounds)
        twin.counts, twin.sum = list(self.counts), self.sum
        return twin

    def lines(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        total = 0
        for bound, count in zip(self.bounds, self.counts):
            total += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {total}')
        total += self.counts[-1]
        lines += [f'{name}_bucket{{le="+Inf"}} {total}', f"{name}_sum {self.sum:.6f}", f"{name}_count {total}"]
        return lines


@dataclass(frozen=True)
class Snapshot:
    """What the frame loop reported, copied at once for one HTTP answer."""

    last: Result | None
    frames: int
    label_changes: int
    inference_ms: float
    latency: Histogram
    inference: Histogram


class Stats:
    """Counters the frame loop updates per frame (under a lock no HTTP thread holds for long)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Result | None = None
        self._frames = self._changes = 0
        self._inference_ms = 0.0
        self._latency = Histogram(LATENCY_BUCKETS_S)
        self._inference = Histogram(INFERENCE_BUCKETS_S)

    def update(self, result: Result) -> None:
        with self._lock:
            self._last = result
            self._frames += 1
            if result.changed:
                self._changes += 1
            if result.inferred:
                self._inference_ms = result.infer_ms
                self._latency.observe(result.latency_ms / 1000)
                self._inference.observe(result.infer_ms / 1000)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._last, self._frames, self._changes, self._inference_ms,
                            self._latency.copy(), self._inference.copy())  # fmt: skip


class JpegFeed:
    """The newest frame, encoded on one thread at most `fps` times a second while anyone watches."""

    def __init__(self, fps: float, quality: int, max_viewers: int) -> None:
        self.period, self.max_viewers = 1.0 / fps, max_viewers
        self.params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self.viewers = 0
        self.encodes, self.encode_s = 0, 0.0
        self._handover = threading.Condition()  # frame loop -> encoder
        self._pending: np.ndarray | None = None  # the frame loop copies into this reused buffer...
        self._working: np.ndarray | None = None  # ...and the encoder swaps it with this one
        self._has_pending = False
        self._due = 0.0
        self._published = threading.Condition()  # encoder -> viewers
        self._jpeg: memoryview | None = None
        self._sequence = 0
        self._closed = False
        self._thread = threading.Thread(target=self._encode_loop, name="edgerec-web-jpeg", daemon=True)
        self._thread.start()

    def offer(self, frame: np.ndarray) -> None:
        """Frame loop: hand over `frame` if a JPEG is due and the encoder is free; never waits for it."""
        now = time.monotonic()
        if now < self._due or self._has_pending:
            return
        self._due = max(self._due + self.period, now)
        # The encoder touches `_pending` only while `_has_pending` is set, so the copy needs no lock.
        if self._pending is None or self._pending.shape != frame.shape:
            self._pending = np.empty_like(frame)  # once, and again only when the frame size changes
        np.copyto(self._pending, frame)
        with self._handover:
            self._has_pending = True
            self._handover.notify()

    def join(self) -> int | None:
        """A viewer arrives: the sequence number to wait beyond, or None when `max_viewers` already watch."""
        with self._published:
            if self.viewers >= self.max_viewers:
                return None
            self.viewers += 1
            return self._sequence

    def leave(self) -> None:
        with self._published:
            self.viewers -= 1

    def next_jpeg(self, after: int, timeout: float) -> tuple[int, memoryview | None]:
        """The newest JPEG once one newer than sequence `after` exists; (after, None) on timeout or close."""
        with self._published:
            self._published.wait_for(lambda: self._sequence != after or self._closed, timeout)
            if self._closed or self._sequence == after:
                return after, None
            return self._sequence, self._jpeg

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        with self._handover:
            self._handover.notify_all()
        with self._published:
            self._published.notify_all()
        self._thread.join()

    def _encode_loop(self) -> None:
        while True:
            with self._handover:
                self._handover.wait_for(lambda: self._has_pending or self._closed)
                if self._closed:
                    return
                self._pending, self._working = self._working, self._pending
                self._has_pending = False
            started = time.perf_counter()
            ok, jpeg = cv2.imencode(".jpg", self._working, self.params)  # releases the GIL
            took = time.perf_counter() - started
            if ok:
                with self._published:
                    self._jpeg, self._sequence = memoryview(jpeg), self._sequence + 1
                    self.encodes, self.encode_s = self.encodes + 1, self.encode_s + took
                    self._published.notify_all()


class WebSink:
    """Serves the preview from daemon threads; `write` hands over counters and, while watched, pixels."""

    wants_overlay = True

    def __init__(self, options: WebOptions, source_status: Callable[[], SourceStatus] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        host, port = parse_listen(options.listen)
        environ = os.environ if environ is None else environ
        self.options = options
        self.token = options.token if options.token is not None else environ.get(TOKEN_ENV, "")
        check_token(self.token, host, options.listen)
        self.source_status = source_status
        self.stats = Stats()
        self.feed = JpegFeed(options.jpeg_fps, options.jpeg_quality, options.max_clients)
        self.started = time.monotonic()
        self.page = (resources.files("edge") / "assets" / "web" / "index.html").read_bytes()
        try:
            self.server = _Server(host, port, self)
        except OSError as error:
            self.feed.close()
            raise EdgerecError(f"web address {options.listen}: cannot listen ({error.strerror or error})") from None
        self.address: tuple[str, int] = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="edgerec-web", daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    @property
    def shows_pixels(self) -> bool:
        """Only while someone watches the stream: the frame loop draws the overlay only then."""
        return self.feed.viewers > 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        first = result.first
        self.stats.update(replace(first, frame_index=result.frame_index, captured=result.captured, fps=result.fps,
                                  changed=result.changed, inferred=first.captured == result.captured))
        if self.feed.viewers:
            self.feed.offer(frame)

    def close(self) -> None:
        self.feed.close()  # viewers' threads see it and end
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    # --- what the routes answer (called on the server's threads) ---

    def authorized(self, header: str, query: Mapping[str, list[str]]) -> bool:
        if not self.token:
            return True
        given = header[7:] if header.startswith("Bearer ") else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def status(self) -> dict:
        snap, now = self.stats.snapshot(), time.monotonic()
        last = snap.last
        age = now - last.captured if last is not None else None
        flowing = age is not None and age < self.options.stale_after
        source = self.source_status() if self.source_status is not None else None
        return {
            "label": last.label if last else None,
            "score": round(last.score, 4) if last else None,
            "fps": round(last.fps, 2) if last and flowing else 0.0,
            "latency_ms": round(last.latency_ms, 1) if last else None,
            "inference_ms": round(snap.inference_ms, 2) if last else None,
            "frames": snap.frames,
            "label_changes": snap.label_changes,
            "last_frame_age_s": round(age, 3) if age is not None else None,
            "healthy": flowing,
            "source": asdict(source) if source else None,
            "uptime_s": round(now - self.started, 1),
            "viewers": self.feed.viewers,
            "max_viewers": self.options.max_clients,
            "jpeg_fps": self.options.jpeg_fps,
        }

    def health(self) -> tuple[bool, str]:
        last = self.stats.snapshot().last
        if last is None:
            return False, "no frame yet"
        age = time.monotonic() - last.captured
        if age >= self.options.stale_after:
            return False, f"no frame for {age:.1f} s"
        return True, f"ok: frame {last.frame_index} {age:.2f} s ago"

    def metrics(self) -> str:
        return "\n".join(metric_lines(self.status(), self.stats.snapshot(), self.feed)) + "\n"


def check_token(token: str, host: str, listen: str) -> None:
    if not token and not is_loopback(host):
        raise EdgerecError(f"web address {listen}: serving beyond loopback needs a token (--web-token, web.token "
                           f"or ${TOKEN_ENV}; python3 -c 'import secrets; print(secrets.token_urlsafe())' makes "
                           "one), or listen on 127.0.0.1")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise EdgerecError(f"web token is {len(token)} characters; valid: at least {MIN_TOKEN_CHARS} "
                           "(python3 -c 'import secrets; print(secrets.token_urlsafe())' makes one)")


def metric_lines(status: dict, snap: Snapshot, feed: JpegFeed) -> list[str]:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
        number = repr(float(value)) if isinstance(value, float) else str(value)
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{labels} {number}"))

    metric("edgerec_fps", "gauge", "Frames per second reaching the sinks (0 while frames do not flow).",
           status["fps"])
    metric("edgerec_frames_total", "counter", "Frames that reached the sinks.", snap.frames)
    metric("edgerec_label_changes_total", "counter", "Changes of the shown label.", snap.label_changes)
    if snap.last is not None:
        metric("edgerec_label_score", "gauge", "Smoothed probability of the shown label.", snap.last.score)
        metric("edgerec_label_info", "gauge", "The shown label (value always 1).", 1,
               f'{{label="{escape_label(snap.last.label)}"}}')
        metric("edgerec_last_frame_age_seconds", "gauge", "Seconds since the newest frame was captured.",
               status["last_frame_age_s"])
    metric("edgerec_healthy", "gauge", "1 while frames flow (what /healthz answers 200 for).", int(status["healthy"]))
    lines += snap.latency.lines("edgerec_latency_seconds", "Capture to labelled result, per inference.")
    lines += snap.inference.lines("edgerec_inference_seconds", "Model run time, per inference.")
    source = status["source"]
    if source is not None:
        metric("edgerec_source_up", "gauge", "1 while the source is streaming.", int(source["state"] == "streaming"))
        metric("edgerec_source_frames_total", "counter", "Frames the source produced.", source["frames"])
        metric("edgerec_frames_dropped_total", "counter",
               "Live source: frames replaced by a newer one before the frame loop took them.", source["dropped"])
        metric("edgerec_source_reconnects_total", "counter", "Live source: reconnect attempts.",
               source["reconnects"])
    metric("edgerec_web_viewers", "gauge", "MJPEG viewers now.", feed.viewers)
    metric("edgerec_jpeg_encodes_total", "counter", "JPEGs encoded for the MJPEG stream.", feed.encodes)
    metric("edgerec_jpeg_encode_seconds_total", "counter", "Time spent encoding them.", feed.encode_s)
    metric("edgerec_uptime_seconds", "gauge", "Seconds since the web preview started.", status["uptime_s"])
    return lines


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Server(ThreadingHTTPServer):
    """One daemon thread per connection, and no more than `max_clients` + EXTRA_CONNECTIONS at once."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog; socketserver's 5 makes a burst of connections wait 1 s

    def __init__(self, host: str, port: int, sink: WebSink) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.sink = sink
        self.slots = threading.BoundedSemaphore(sink.options.max_clients + EXTRA_CONNECTIONS)
        super().__init__((host, port), _Handler)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: close rather than queue
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SEND_TIMEOUT_S
    server_version = "edgerec"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        url = urlsplit(self.path)
        sink = self.server.sink
        if not sink.authorized(self.headers.get("Authorization", ""), parse_qs(url.query)):
            self._send(401, "text/plain", b"401: a token is required (Authorization: Bearer TOKEN or ?token=)\n",
                       {"WWW-Authenticate": 'Bearer realm="edgerec"'})
            return
        if url.path == "/":
            self._send(200, "text/html; charset=utf-8", sink.page, PAGE_HEADERS)
        elif url.path == "/stream.mjpg":
            self._stream(sink.feed)
        elif url.path == "/api/status":
            self._send(200, "application/json", json.dumps(sink.status()).encode())
        elif url.path == "/healthz":
            healthy, text = sink.health()
            self._send(200 if healthy else 503, "text/plain", f"{text}\n".encode())
        elif url.path == "/metrics" and sink.options.metrics:
            self._send(200, "text/plain; version=0.0.4; charset=utf-8", sink.metrics().encode())
        else:
            routes = "/ /stream.mjpg /api/status /healthz" + " /metrics" * sink.options.metrics
            self._send(404, "text/plain", f"404: routes: {routes}\n".encode())

    def _send(self, code: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in {**COMMON_HEADERS, "Content-Type": content_type, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, feed: JpegFeed) -> None:
        sequence = feed.join()
        if sequence is None:
            self._send(503, "text/plain", f"503: {feed.max_viewers} viewers already watch\n".encode(),
                       {"Retry-After": "5"})
            return
        try:
            self.send_response(200)
            for name, value in COMMON_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.end_headers()
            while not feed.closed:
                sequence, jpeg = feed.next_jpeg(sequence, timeout=1.0)
                if jpeg is None:
                    if self._viewer_gone():  # while no frame comes, a viewer who left frees the slot
                        return
                else:
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {jpeg.nbytes}\r\n\r\n"
                    self.wfile.write(head.encode())
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
        except OSError:  # the viewer left or stopped reading for SEND_TIMEOUT_S
            pass
        finally:
            feed.leave()

    def _viewer_gone(self) -> bool:
        try:
            readable = select.select([self.connection], [], [], 0)[0]
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):  # ValueError: a descriptor select() cannot watch; assume still there
            return False

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per request would be a log line per poll; library code does not print


COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
}
