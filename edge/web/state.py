"""What the web page reads of a running camera: per-camera counters and latency histograms, the JPEG feed,
the frozen-picture watch, and the JSON the status routes answer. The frame loop writes these through the
sink (edge.web.sink); the routes (edge.web.app, write, metrics) read them through `Served`.

The frame loop only hands over numbers, and a frame only while someone watches the stream and a JPEG is
due: it is copied into a reused buffer for the one encoder thread, which makes each JPEG once for all
viewers. Each viewer is sent the newest JPEG whenever its socket takes it, so a slow viewer skips pictures
and holds up neither the frame loop nor the other viewers.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from edge.live.capture import SourceStatus
from edge.live.result import FrameResult, Result
from edge.web.options import ConfigStore, WebOptions

if TYPE_CHECKING:
    from edge.learn.collect import Collector
    from edge.learn.review import ReviewQueue
    from edge.sinks.retention import Retention
    from edge.web.trainer import Trainer

LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
INFERENCE_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
FROZEN_AFTER_S = 30.0
"""Seconds of bit-identical pictures after which a camera counts as frozen (unhealthy)."""


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
        "novelty": round(region.novelty, 4) if region.novelty == region.novelty else None,  # NaN: none
        "trigger": region.trigger,
        "age_s": round(frame.age_s(region), 3),
        "latency_ms": round(region.latency_ms, 1),
    }


class Served(Protocol):
    """What the routes read of the running sink (edge.web.sink.WebSink), so that they need not import it."""

    options: WebOptions
    token: str
    page: bytes
    views: dict[str, CameraView]
    feed: JpegFeed
    stats: Stats
    registry: Any
    collector: Collector
    review: ReviewQueue
    trainer: Trainer
    state: Path
    config: ConfigStore | None
    request_reload: Callable[[], None] | None
    retention: Retention | None

    def status(self) -> dict:
        """/api/status: every camera with its regions, the models, the viewers."""

    def health(self) -> tuple[bool, str]:
        """/healthz: healthy or not, and why."""
