"""The per-frame loop: source -> preprocess.fit -> model.infer -> smoothing -> overlay -> sinks.

    grabber thread: camera -> newest-frame slot          (edge.capture)
    this loop:      slot -> fit into a preallocated batch -> infer -> smooth -> Result
                    Result -> raw sinks -> overlay (only if a sink shows pixels) -> drawing sinks

Nothing on this path logs or allocates what it can reuse; every stage is timed into a fixed-size
ring, summarised once at the end. One stop event ends the loop; sources and sinks close in `finally`.
Signal handling belongs to the program (`edge.service.install_signal_handlers`, called by the CLI), not to `run`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from edge.capture import Frame, Source, SourceOptions, SourceStatus, StateCallback, open_source
from edge.devices import resolve_providers
from edge.errors import EdgerecError
from edge.overlay import Overlay, OverlayOptions
from edge.preprocess import Fitter, Geometry
from edge.result import Result
from edge.service import Notifier, ServiceSink
from edge.sinks import EventsSink, Sink, SnapshotSink, VideoFileSink, WindowSink, window_possible
from edge.sinks.mqtt import MqttOptions, MqttSink
from edge.sinks.web import WebOptions, WebSink
from edge.smoothing import Smoother, SmoothingOptions

STAGES = ("wait", "preprocess", "infer", "smooth", "overlay", "sinks", "frame", "beyond-model")
POLL_S = 0.1  # the longest the loop waits for a frame before looking at the stop event again
LOG = logging.getLogger("edgerec.pipeline")


@dataclass(frozen=True)
class RunOptions:
    source: SourceOptions
    """What to read and how (URI, camera requests, pacing, loop, timeouts)."""
    model: str | None = None
    """Model file; None: the embedded ImageNet EfficientNet-Lite0 INT8 model."""
    device: str = "auto"
    """Execution device for ONNX Runtime (see edge.model.DEVICES)."""
    threads: int | None = None
    """Inference threads; None: ONNX Runtime's choice."""
    infer_fps: float | None = None
    """Run the model at most this often; other frames carry the last result. None: every frame."""
    max_frames: int | None = None
    """Stop after this many frames reached the sinks."""
    duration: float | None = None
    """Stop after this many seconds."""
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    overlay: OverlayOptions = field(default_factory=OverlayOptions)
    display: bool | None = None
    """Show a window: True, False, or None for "when OpenCV has a GUI and there is a display"."""
    out: str | None = None
    """Annotated video file (.mp4, .avi, ...)."""
    events: str | None = None
    """JSON-lines file, one line per label change; "-" for standard output."""
    snapshots: str | None = None
    """Folder for a JPEG of the frame at each label change."""
    web: WebOptions | None = None
    """Web preview, status, health and metrics over HTTP; None: no web server."""
    mqtt: MqttOptions | None = None
    """Label changes and availability to an MQTT broker; None: no MQTT."""
    opencv_threads: int | None = 1
    """OpenCV threads while the run lasts (preprocessing, overlay); None leaves OpenCV's setting. One thread
    is steadier: the frame loop then never waits for an OpenCV worker that has to share a core with the
    inference threads (docs/benchmarks.md, "Per-frame cost beyond the model")."""

    def __post_init__(self) -> None:
        for name in ("infer_fps", "duration"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise EdgerecError(f"{name.replace('_', '-')} {value} is not positive; valid: a number > 0")
        if self.max_frames is not None and self.max_frames < 1:
            raise EdgerecError(f"max-frames {self.max_frames} is not positive; valid: an integer >= 1")
        if self.opencv_threads is not None and self.opencv_threads < 1:
            raise EdgerecError(f"opencv_threads {self.opencv_threads} is not positive; valid: an integer >= 1")


@dataclass(frozen=True)
class StageStats:
    count: int
    mean_ms: float
    p50_ms: float
    """Median over the last `StageTimer.capacity` samples; likewise p95_ms."""
    p95_ms: float
    max_ms: float


@dataclass(frozen=True)
class RunSummary:
    frames: int
    """Frames that reached the sinks."""
    inferred: int
    """Frames the model ran on."""
    label_changes: int
    label: str
    """The label shown last ("" when no frame arrived)."""
    elapsed_s: float
    fps: float
    """Frames that reached the sinks per second of the run."""
    stopped_by: str
    """"end" (of a file or folder), "max-frames", "duration" or "stop" (the stop event)."""
    source: SourceStatus
    """The source's final counters: frames produced, dropped, skipped, reconnects, last error."""
    stages: dict[str, StageStats]
    """Milliseconds per stage: wait (for the source), preprocess, infer, smooth, overlay, sinks; frame:
    everything from the frame's arrival to the last sink; beyond-model: frame minus infer, per frame."""
    frame_age: StageStats
    """Milliseconds from capture to the start of preprocessing, for the frames the model ran on."""
    latency: StageStats
    """Milliseconds from capture to the last sink done, for every frame."""


class ModelLike(Protocol):
    labels: list[str]
    geometry: Geometry

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] BGR -> float32 probabilities [N, C]."""


def run(
    options: RunOptions,
    stop: threading.Event | None = None,
    *,
    model: ModelLike | None = None,
    on_change: Callable[[Result], None] | None = None,
    on_source_state: StateCallback | None = None,
    source: Source | None = None,
) -> RunSummary:
    """Recognise every frame of `options.source` until it ends, a limit is reached or `stop` is set.

    `model` and `source` replace loading `options.model` and opening `options.source` (tests,
    benchmarks); `run` closes `source` all the same. `on_change` is called with each label change and
    `on_source_state` with each source state change (connected, reconnecting, ...).
    """
    stop = stop if stop is not None else threading.Event()
    if model is None:
        from edge.model import Model

        ask_for_engine_build_time(options.device)
        model = Model.load(options.model, options.device, options.threads)
        LOG.info("model %s (%s %s, %d labels) on %s", model.path, model.info.arch, model.info.precision,
                 len(model.labels), model.provider)
    source = source if source is not None else open_source(options.source, on_source_state)
    sinks: list[Sink] = []
    try:
        open_sinks(options, source, stop, into=sinks)
        with using_opencv_threads(options.opencv_threads):
            return FrameLoop(model, source, sinks, options, stop, on_change).run()
    finally:
        close_all(sinks, source)


ENGINE_BUILD_S = 20 * 60
"""Start time asked of systemd while TensorRT or OpenVINO compiles the network (first start only)."""
COMPILING = frozenset({"TensorrtExecutionProvider", "OpenVINOExecutionProvider"})


def ask_for_engine_build_time(device: str) -> bool:
    """Under systemd, ask for ENGINE_BUILD_S more start time when `device` compiles the network.

    A first start with TensorRT builds its engine for minutes (cached afterwards); without this the unit's
    TimeoutStartSec would kill it mid-build and the restart would start the build over, for ever.
    """
    import onnxruntime as ort

    with Notifier() as notifier:
        if not notifier.enabled or resolve_providers(device, ort.get_available_providers())[0][0] not in COMPILING:
            return False
        notifier.status("loading the model: the engine is built on the first start (minutes), then cached")
        return notifier.extend_timeout(ENGINE_BUILD_S)


def open_sinks(options: RunOptions, source: Source, stop: threading.Event, into: list[Sink]) -> None:
    """Append the sinks `options` asks for to `into` (so the caller closes those opened before a failure)."""
    if options.display or (options.display is None and window_possible()):
        into.append(WindowSink(stop))
    if options.out:
        into.append(VideoFileSink(options.out, fps=lambda: source.fps))
    if options.events:
        into.append(EventsSink(options.events))
    if options.snapshots:
        into.append(SnapshotSink(options.snapshots))
    if options.web:
        into.append(WebSink(options.web, source.status))
    if options.mqtt:
        into.append(MqttSink(options.mqtt))
    notifier = Notifier()  # under systemd ($NOTIFY_SOCKET): READY at the first frame, then the watchdog
    if notifier.enabled:
        into.append(ServiceSink(notifier))


def close_all(sinks: Sequence[Sink], source: Source) -> None:
    """Close every sink and the source even when one of them fails; then raise the first failure."""
    failure: BaseException | None = None
    for closable in (*sinks, source):
        try:
            closable.close()
        except Exception as error:  # the others must still close
            failure = failure or error
    if failure is not None:
        raise failure


@contextlib.contextmanager
def using_opencv_threads(threads: int | None) -> Iterator[None]:
    """Run the block with OpenCV's thread count set to `threads` (None: unchanged), then restore it."""
    previous = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


class StageTimer:
    """Count, mean and max of every sample; median and p95 over the last `capacity` (a fixed ring)."""

    capacity = 2048

    def __init__(self) -> None:
        self._ring = np.zeros(self.capacity)
        self.count, self.total, self.max, self.latest = 0, 0.0, 0.0, 0.0

    def add(self, ms: float) -> None:
        self.latest = ms
        self._ring[self.count % self.capacity] = ms
        self.count += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def stats(self) -> StageStats:
        if not self.count:
            return StageStats(0, 0.0, 0.0, 0.0, 0.0)
        recent = self._ring[: min(self.count, self.capacity)]
        p50, p95 = np.percentile(recent, [50, 95])
        return StageStats(self.count, self.total / self.count, float(p50), float(p95), self.max)


class RateMeter:
    """Frames per second from frame timestamps, averaged over about the last second (an EMA)."""

    def __init__(self) -> None:
        self._last, self._interval = -1.0, 0.0

    def tick(self, now: float) -> float:
        if self._last >= 0 and now > self._last:
            gap = now - self._last
            self._interval = gap if not self._interval else self._interval + 0.05 * (gap - self._interval)
        self._last = now
        return 1.0 / self._interval if self._interval else 0.0


class FrameLoop:
    """The loop itself, with every buffer and timer it needs made once up front."""

    def __init__(
        self,
        model: ModelLike,
        source: Source,
        sinks: Sequence[Sink],
        options: RunOptions,
        stop: threading.Event,
        on_change: Callable[[Result], None] | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`clock` times the stages (seconds); time.thread_time gives CPU time (edgerec bench --pipeline)."""
        self.model, self.source, self.options, self.clock = model, source, options, clock
        self.stop, self.on_change = stop, on_change
        geometry = model.geometry
        self.batch = np.zeros((1, geometry.height, geometry.width, 3), np.uint8)
        self.batch_slot = self.batch[0]  # fit writes here; the model reads the batch
        self.fitter = Fitter(geometry)  # keeps its intermediate buffers between frames
        self.smoother = Smoother(model.labels, options.smoothing)
        self.raw_sinks = [s for s in sinks if not s.wants_overlay]
        self.drawing_sinks = [s for s in sinks if s.wants_overlay]
        self.overlay = Overlay(model.labels, options.overlay) if self.drawing_sinks else None
        self.timers = {name: StageTimer() for name in STAGES}
        self.frame_age, self.latency = StageTimer(), StageTimer()
        self.rate = RateMeter()
        self.period = 1.0 / options.infer_fps if options.infer_fps else 0.0
        self.next_inference = -math.inf
        self.last: Result | None = None
        self.frames = self.changes = 0

    def run(self) -> RunSummary:
        start = time.monotonic()
        deadline = start + self.options.duration if self.options.duration else math.inf
        stopped_by = "stop"
        while not self.stop.is_set():
            result = self.step(POLL_S)
            if result is None and self.source.ended:
                stopped_by = "end"
                break
            if result is not None and self.frames == self.options.max_frames:
                stopped_by = "max-frames"
                break
            if time.monotonic() >= deadline:
                stopped_by = "duration"
                break
        return self._summary(time.monotonic() - start, stopped_by)

    def step(self, timeout: float) -> Result | None:
        """Wait up to `timeout` s for the next frame and take it through the whole path; None if none came."""
        clock = self.clock
        waited = clock()
        frame = self.source.read(timeout)
        if frame is None:
            return None
        arrived = clock()
        self.timers["wait"].add((arrived - waited) * 1000)
        result = self._recognize(frame)
        self._deliver(frame, result)
        ms = (clock() - arrived) * 1000
        self.timers["frame"].add(ms)
        self.timers["beyond-model"].add(ms - (self.timers["infer"].latest if result.inferred else 0.0))
        return result

    def _recognize(self, frame: Frame) -> Result:
        fps = self.rate.tick(frame.captured)
        if self.last is not None and frame.captured < self.next_inference:
            last = self.last  # between inferences (--infer-fps) the frame carries the last result
            return Result(frame.index, frame.captured, last.label, last.index, last.score, last.probs,
                          changed=False, inferred=False, latency_ms=last.latency_ms, fps=fps)  # fmt: skip
        self.next_inference = max(self.next_inference + self.period, frame.captured)
        self.frame_age.add((time.monotonic() - frame.captured) * 1000)
        t0 = self.clock()
        self.fitter.fit(frame.image, out=self.batch_slot)
        t1 = self.clock()
        probs = self.model.infer(self.batch)[0]
        t2 = self.clock()
        shown = self.smoother.update(probs)
        t3 = self.clock()
        self.timers["preprocess"].add((t1 - t0) * 1000)
        self.timers["infer"].add((t2 - t1) * 1000)
        self.timers["smooth"].add((t3 - t2) * 1000)
        latency_ms = (time.monotonic() - frame.captured) * 1000
        self.last = Result(frame.index, frame.captured, shown.label, shown.index, shown.score, shown.probs,
                           changed=shown.changed, inferred=True, latency_ms=latency_ms, fps=fps,
                           infer_ms=(t2 - t1) * 1000)  # fmt: skip
        return self.last

    def _deliver(self, frame: Frame, result: Result) -> None:
        t0 = self.clock()
        for sink in self.raw_sinks:
            sink.write(frame.image, result)
        t1 = t2 = self.clock()
        if self.overlay is not None and self._pixels_shown():
            self.overlay.draw(frame.image, result)
            t2 = self.clock()
            self.timers["overlay"].add((t2 - t1) * 1000)
        for sink in self.drawing_sinks:
            sink.write(frame.image, result)
        t3 = self.clock()
        self.timers["sinks"].add((t1 - t0 + t3 - t2) * 1000)
        self.latency.add((time.monotonic() - frame.captured) * 1000)
        self.frames += 1
        if result.changed:
            self.changes += 1
            if self.on_change is not None:
                self.on_change(result)

    def _pixels_shown(self) -> bool:
        """Whether a drawing sink shows this frame (a web preview does only while someone watches)."""
        for sink in self.drawing_sinks:
            if getattr(sink, "shows_pixels", True):
                return True
        return False

    def _summary(self, elapsed: float, stopped_by: str) -> RunSummary:
        return RunSummary(
            frames=self.frames,
            inferred=self.timers["infer"].count,
            label_changes=self.changes,
            label=self.last.label if self.last else "",
            elapsed_s=elapsed,
            fps=self.frames / elapsed if elapsed > 0 else 0.0,
            stopped_by=stopped_by,
            source=self.source.status(),
            stages={name: timer.stats() for name, timer in self.timers.items()},
            frame_age=self.frame_age.stats(),
            latency=self.latency.stats(),
        )
