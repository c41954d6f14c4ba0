"""A web preview: the live picture and label in a browser, with JSON status, a health check and metrics.

The sink is what the frame loop talks to; `web_app` holds the routes (Starlette), `web_server` serves them
(uvicorn on a background thread, guarded against slow clients) and `web_metrics` writes /metrics
(prometheus-client).

The frame loop only hands over numbers, and a frame only while someone watches the stream and a JPEG is
due: it is copied into a reused buffer for the one encoder thread, which makes each JPEG once for all
viewers. Each viewer is sent the newest JPEG whenever its socket takes it, so a slow viewer skips pictures
and holds up neither the frame loop nor the other viewers. The server listens on loopback by default; any
other address needs a token, which every route then checks.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.live.camera import DEFAULT_CAMERA
from edge.live.capture import SourceStatus
from edge.live.result import FrameResult, Result

TOKEN_ENV = "EDGEREC_WEB_TOKEN"
MIN_TOKEN_CHARS = 16
LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
INFERENCE_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
FROZEN_AFTER_S = 30.0
"""Seconds of bit-identical pictures after which a camera counts as frozen (unhealthy)."""


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
    state_dir: str | None = None
    """Where collected crops and taught models go (docs/teach-web.md); None: $STATE_DIRECTORY (systemd's
    StateDirectory=), else ~/.local/state/edgerec."""

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


@dataclass(frozen=True)
class Snapshot:
    """What the frame loop reported for one camera, copied at once for one HTTP answer."""

    last: FrameResult | None
    frames: int
    label_changes: int
    inference_ms: float
    latency: Histogram
    inference: Histogram


class Stats:
    """Counters the frame loop updates per frame (under a lock no HTTP thread holds for long)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: FrameResult | None = None
        self._frames = self._changes = 0
        self._inference_ms = 0.0
        self._latency = Histogram(LATENCY_BUCKETS_S)
        self._inference = Histogram(INFERENCE_BUCKETS_S)

    def update(self, result: FrameResult) -> None:
        with self._lock:
            self._last = result
            self._frames += 1
            for region in result.regions:
                if region.changed:
                    self._changes += 1
                if region.inferred:
                    self._inference_ms = region.infer_ms
                    self._latency.observe(region.latency_ms / 1000)
                    self._inference.observe(region.infer_ms / 1000)

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
        self._listeners: list[Callable[[], None]] = []
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

    def subscribe(self, listener: Callable[[], None]) -> None:
        """`listener()` is called on the encoder thread after each new JPEG, and once on close: it must not wait."""
        self._listeners.append(listener)

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
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

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
                self._notify()


class FrozenWatch:
    """Whether a camera keeps delivering the same picture (a hung encoder, a stuck driver): once a second a
    16x16 grid of its pixels is compared with the previous one, bit for bit. A real sensor's noise changes
    them; the bottom fifth is left out, where the overlay's fps/latency figures change on a frozen picture."""

    grid, period_s = 16, 1.0

    def __init__(self) -> None:
        self._sample: np.ndarray | None = None
        self._due = 0.0
        self._seen = 0.0
        self.same_since: float | None = None
        """Monotonic time of the first of the identical samples; None while the picture changes."""

    def look(self, frame: np.ndarray, now: float) -> None:
        """Frame loop, every frame: one comparison, and a 768-byte sample once a second."""
        if now < self._due:
            return
        self._due = now + self.period_s
        height, width = frame.shape[:2]
        sample = frame[: height * 4 // 5 : max(1, height // self.grid), :: max(1, width // self.grid)]
        if self._sample is not None and self._sample.shape == sample.shape and np.array_equal(self._sample, sample):
            if self.same_since is None:
                self.same_since = self._seen
        else:
            self.same_since = None
        self._sample, self._seen = sample.copy(), now

    def frozen_s(self, now: float) -> float:
        """Seconds the picture has been the same (0 while it changes)."""
        return now - self.same_since if self.same_since is not None else 0.0


@dataclass(frozen=True)
class CameraView:
    """One camera as the web sees it: its counters, its JPEG feed and its source's status."""

    name: str
    stats: Stats
    feed: JpegFeed
    source_status: Callable[[], SourceStatus] | None
    frozen: FrozenWatch = field(default_factory=FrozenWatch)


class WebSink:
    """Serves the preview from a background thread; `write` hands over counters and, while watched, pixels."""

    wants_overlay = True

    def __init__(self, options: WebOptions, source_status: Callable[[], SourceStatus] | None = None,
                 environ: Mapping[str, str] | None = None,
                 cameras: Mapping[str, Callable[[], SourceStatus] | None] | None = None,
                 config_path: str | None = None, request_reload: Callable[[], None] | None = None,
                 models: Mapping[str, object] | None = None) -> None:
        """`cameras`: each camera's name and source status (several cameras); None: one camera, `source_status`.
        `config_path`: the config file the run was started with (None: flags only); `request_reload()` makes the
        run read it (and its model files) again without stopping the cameras (edge.run.reload)."""
        self.config_path, self.request_reload = config_path, request_reload
        self.models_changed(models or {})
        host, port = parse_listen(options.listen)
        environ = os.environ if environ is None else environ
        self.options = options
        self.token = options.token if options.token is not None else environ.get(TOKEN_ENV, "")
        check_token(self.token, host, options.listen)
        cameras = cameras if cameras else {DEFAULT_CAMERA: source_status}
        self.views = {name: CameraView(name, Stats(), JpegFeed(options.jpeg_fps, options.jpeg_quality,
                                                               options.max_clients), status)
                      for name, status in cameras.items()}  # fmt: skip
        first = next(iter(self.views.values()))
        self.source_status, self.stats, self.feed = first.source_status, first.stats, first.feed
        self.started = time.monotonic()
        self.page = (resources.files("edge") / "assets" / "web" / "index.html").read_bytes()
        from edge.teach.collect import Collector
        from edge.web.trainer import Trainer, state_dir

        self.state = state_dir(options.state_dir, environ)
        self._asked: str | None = None  # the camera whose frame `shows` was last asked about
        self.collector, self.trainer = Collector(self.state / "teach"), Trainer()
        # Imported here, not at the top: a run without --web does not load the ASGI stack (~8 MB of RSS).
        from edge.web import server as web_server
        from edge.web.app import create_app
        from edge.web.metrics import registry_for

        self.registry = registry_for(self)
        try:
            sock = web_server.listen(host, port, options.listen)
        except EdgerecError:
            for view in self.views.values():
                view.feed.close()
            raise
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.server = web_server.BackgroundServer(create_app(self), sock)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    @property
    def shows_pixels(self) -> bool:
        """Only while someone watches a stream: the frame loop draws the overlay only then."""
        return any(view.feed.viewers for view in self.views.values())

    def models_changed(self, models: Mapping[str, object]) -> None:
        """The model files now running (at start, and after each reload or accept)."""
        self.models = [model_status(model) for model in models.values()]

    def shows(self, camera: str) -> bool:
        """Whether someone watches `camera`'s stream (the frame loop draws that camera's overlay only then)."""
        view = self.views.get(camera)
        if view is None:
            return False
        self._asked = camera  # the frame loop asks before it draws; write() then knows the frame's pixels
        if self.collector.session is not None and self.collector.claim(camera):
            return False  # a crop is due: this frame stays raw (no overlay on the crop)
        return view.feed.viewers > 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        view = self.views.get(result.camera)
        if view is None:
            return
        view.stats.update(result)
        view.frozen.look(frame, result.captured)
        asked, self._asked = self._asked == result.camera, None
        if self.collector.session is not None and self.collector.take(frame, result, asked):
            return  # the raw frame went to a crop; viewers get the next, annotated one
        if view.feed.viewers:
            view.feed.offer(frame)

    def close(self) -> None:
        for view in self.views.values():
            view.feed.close()  # viewers see it and end
        self.server.stop()
        self.collector.close()
        self.trainer.close()

    # --- what the routes answer (called on the server's thread) ---

    def status(self) -> dict:
        """The first camera's figures at the top level (as before several cameras), every camera under
        "cameras" with its regions and motion."""
        now = time.monotonic()
        cameras = {name: camera_status(view, now, self.options.stale_after) for name, view in self.views.items()}
        first = next(iter(cameras.values()))
        region = first["regions"][0] if first["regions"] else None
        return {
            "label": region["label"] if region else None,
            "score": region["score"] if region else None,
            "fps": first["fps"],
            "latency_ms": region["latency_ms"] if region else None,
            "inference_ms": first["inference_ms"],
            "frames": first["frames"],
            "label_changes": first["label_changes"],
            "last_frame_age_s": first["last_frame_age_s"],
            "healthy": all(camera["healthy"] for camera in cameras.values()),
            "source": first["source"],
            "uptime_s": round(now - self.started, 1),
            "viewers": sum(view.feed.viewers for view in self.views.values()),
            "max_viewers": self.options.max_clients,
            "jpeg_fps": self.options.jpeg_fps,
            "cameras": cameras,
            "models": self.models,
        }

    def health(self) -> tuple[bool, str]:
        """Healthy while every camera's frames flow; otherwise the cameras that do not, named."""
        now, problems, oks = time.monotonic(), [], []
        for name, view in self.views.items():
            last = view.stats.snapshot().last
            where = "" if len(self.views) == 1 else f"camera {name}: "
            if last is None:
                problems.append(f"{where}no frame yet")
                continue
            age, frozen_s = now - last.captured, view.frozen.frozen_s(now)
            if age >= self.options.stale_after:
                problems.append(f"{where}no frame for {age:.1f} s")
            elif frozen_s >= FROZEN_AFTER_S:
                problems.append(f"{where}the same picture for {frozen_s:.0f} s (frozen)")
            else:
                oks.append(f"{where}frame {last.frame_index} {age:.2f} s ago")
        if problems:
            return False, "; ".join(problems + oks)
        return True, "ok: " + "; ".join(oks)


def camera_status(view: CameraView, now: float, stale_after: float) -> dict:
    """One camera for /api/status: frame rate, health, source, motion, and each region's label and age."""
    snap = view.stats.snapshot()
    last = snap.last
    age = now - last.captured if last is not None else None
    flowing = age is not None and age < stale_after
    frozen_s = view.frozen.frozen_s(now)
    source = view.source_status() if view.source_status is not None else None
    motion = last.motion if last is not None else None
    return {
        "fps": round(last.fps, 2) if last and flowing else 0.0,
        "frames": snap.frames,
        "label_changes": snap.label_changes,
        "inference_ms": round(snap.inference_ms, 2) if last else None,
        "last_frame_age_s": round(age, 3) if age is not None else None,
        "healthy": flowing and frozen_s < FROZEN_AFTER_S,
        "frozen_s": round(frozen_s, 1),
        "source": asdict(source) if source else None,
        "motion": None if motion is None else {"moving": motion.moving, "area": round(motion.area, 5),
                                               "recalibrating": motion.recalibrating,
                                               "boxes": [[round(v, 4) for v in box] for box in motion.boxes]},
        "regions": [region_status(region, last) for region in last.regions] if last else [],
        "viewers": view.feed.viewers,
    }


def model_status(model: object) -> dict:
    """A loaded model file for /api/status: what it is and how well it did where it was made (edge.core.metadata)."""
    from edge.tools.robustness import stored_robustness

    info = getattr(model, "info", None)
    if info is None:  # a stand-in without metadata (tests)
        return {"file": None}
    return {
        "file": Path(str(model.path)).name,
        "arch": info.arch,
        "precision": info.precision,
        "labels": len(info.labels),
        "metrics": {key: round(value, 4) for key, value in info.metrics.items()},
        "robustness": stored_robustness(info.metrics),
    }


def region_status(region: Result, frame: FrameResult) -> dict:
    return {
        "name": region.region,
        "box": list(region.box),
        "label": region.label,
        "score": round(region.score, 4),
        "trigger": region.trigger,
        "age_s": round(frame.age_s(region), 3),
        "latency_ms": round(region.latency_ms, 1),
    }


def check_token(token: str, host: str, listen: str) -> None:
    if not token and not is_loopback(host):
        raise EdgerecError(f"web address {listen}: serving beyond loopback needs a token (--web-token, web.token "
                           f"or ${TOKEN_ENV}; python3 -c 'import secrets; print(secrets.token_urlsafe())' makes "
                           "one), or listen on 127.0.0.1")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise EdgerecError(f"web token is {len(token)} characters; valid: at least {MIN_TOKEN_CHARS} "
                           "(python3 -c 'import secrets; print(secrets.token_urlsafe())' makes one)")
