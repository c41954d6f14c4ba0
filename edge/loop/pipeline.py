"""The frame loop: cameras -> regions due -> one batch per model -> per-region smoothing -> sinks.

    grabber thread per live camera:  camera -> newest-frame slot                 (edge.live.capture)
    this loop, one turn:  every camera's new frame (newest only, a fair turn for all cameras)
                          -> motion (per camera, only when a region is triggered by motion)  (edge.live.motion)
                          -> regions due now: every frame | motion | interval               (edge.live.triggers)
                          -> crop from the full frame -> fit -> one batch per model -> run  (edge.live.scheduler)
                          -> per-region smoothing -> Result per region, carried until the next run
                          -> FrameResult -> raw sinks -> overlay (only if a sink shows pixels) -> drawing sinks

No region configured means one implicit whole-frame region: the single-camera, whole-frame run is the same
loop with one camera and one region. Nothing on this path logs or allocates what it can reuse; every stage
is timed into a fixed-size ring. One stop event ends the loop; sources and sinks close in `finally`.
Signal handling belongs to the program (`edge.sinks.service.install_signal_handlers`, called by the CLI), not to `run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import cv2
from threadpoolctl import threadpool_limits

from edge.core.devices import CPU, int8_sums, int8_sums_saturate, resolve_providers
from edge.live.camera import Camera, CameraOptions, ModelLike, RegionState
from edge.live.capture import Frame, Source, SourceStatus, StateCallback, is_live, open_source
from edge.live.overlay import Overlay
from edge.live.regions import IMPLICIT
from edge.live.result import FrameResult, Result
from edge.live.scheduler import Scheduler
from edge.live.stages import StageStats, StageTimer
from edge.loop.options import CameraSummary, RegionSummary, RunOptions, RunSummary
from edge.loop.reload import Reloader, Update
from edge.sinks import EventsSink, Sink, SnapshotSink, VideoFileSink, WindowSink, window_possible
from edge.sinks.base import OneCamera
from edge.sinks.mqtt import MqttSink, Place
from edge.sinks.retention import FileFamily, Retention
from edge.sinks.service import Notifier, ServiceSink
from edge.web.sink import WebSink

if TYPE_CHECKING:
    from edge.core.model import Model

__all__ = ["RunOptions", "RunSummary", "StageStats", "StageTimer", "run", "FrameLoop", "build_loop"]

STAGES = ("wait", "motion", "preprocess", "infer", "smooth", "overlay", "sinks", "frame", "beyond-model")
POLL_S = 0.1  # the longest the loop waits for a frame before looking at the stop event again
LOG = logging.getLogger("edgerec.pipeline")
RUN_MODEL = ""
"""The key of the run's own model (RunOptions.model) among the loaded models."""


def run(
    options: RunOptions,
    stop: threading.Event | None = None,
    *,
    model: ModelLike | None = None,
    on_change: Callable[[Result], None] | None = None,
    on_source_state: StateCallback | None = None,
    source: Source | None = None,
    reload: Callable[[], RunOptions] | None = None,
    reload_requested: threading.Event | None = None,
    extra_sinks: Sequence[Sink] = (),
) -> RunSummary:
    """Recognise every camera's frames until they end, a limit is reached or `stop` is set.

    `model` replaces loading `options.model` (regions with a model file of their own still load it), and
    `source` replaces opening the first camera's source (tests, benchmarks); `run` closes it all the same.
    `on_change` is called with each region's label change and `on_source_state` with each source state
    change (connected, reconnecting, ...). With `reload` (which reads the options again) each time
    `reload_requested` is set the new options are applied without stopping the cameras (edge.loop.reload).
    `extra_sinks` get every frame after those `options` asks for (and are not closed here).
    """
    stop = stop if stop is not None else threading.Event()
    cameras = options.camera_options()
    spinning = options.spinning if options.spinning is not None else frames_queue(cameras)
    models = load_models(options, cameras, model, spinning)
    sources: list[Source] = []
    sinks: list[Sink] = []
    loop: FrameLoop | None = None
    reloader: Reloader | None = None
    retention: Retention | None = None
    try:
        for index, camera in enumerate(cameras):
            given = source if index == 0 and source is not None else None
            sources.append(given or open_camera(camera, on_source_state, sinks, named=len(cameras) > 1))
        loop = build_loop(options, models, sources, sinks, stop, on_change)
        retention = open_sinks(options, loop.cameras, stop, into=sinks, reload_requested=reload_requested,
                               models=models)
        loop.attach([*sinks, *extra_sinks])
        if reload is not None and reload_requested is not None:
            reloader = loop.reloader = Reloader(
                options, reload, lambda new: load_models(new, new.camera_options(), model, spinning, True),
                lambda camera: open_camera(camera, on_source_state, sinks, named=len(cameras) > 1), reload_requested,
                stop)
        with using_opencv_threads(options.opencv_threads), one_blas_thread():
            return loop.run()
    finally:
        if reloader is not None:
            reloader.close()
        if retention is not None:
            retention.close()
        if source is not None and source not in sources:
            sources.append(source)
        close_all(sinks, loop.sources() if loop is not None else sources)


def open_camera(camera: CameraOptions, on_source_state: StateCallback | None, sinks: Sequence[Sink],
                named: bool = False) -> Source:
    """Open a camera's source, its state changes going to the caller (with the camera's name when `named`) and
    to the sinks that follow cameras."""
    relay = functools.partial(relay_source_state, camera.name, on_source_state, sinks, named)
    if camera.source.decode_scale > 1:  # every sink gets the smaller frames: say so once
        LOG.info("%s: MJPEG decoded at 1/%d of its width and height (decode_scale)",
                 camera.name if named else "source", camera.source.decode_scale)
    return open_source(camera.source, relay)


def relay_source_state(camera: str, callback: StateCallback | None, sinks: Sequence[Sink], named: bool,
                       status: SourceStatus) -> None:
    """A camera's source changed state: tell the caller, and each sink that follows cameras (MQTT)."""
    if callback is not None:
        callback(dataclasses.replace(status, camera=camera) if named else status)
    for sink in sinks:
        follow = getattr(sink, "source_state", None)
        if follow is not None:
            follow(camera, status)


def frames_queue(cameras: Sequence[CameraOptions]) -> bool:
    """Whether frames wait for the model (a file or folder read as fast as possible): only then is it worth
    keeping ONNX Runtime's pool threads spinning between runs, which burns a core on a paced camera."""
    return any(not camera.source.paced and not is_live(camera.source.uri) for camera in cameras)


def load_models(options: RunOptions, cameras: Sequence[CameraOptions], given: ModelLike | None,
                spinning: bool, in_child_first: bool = False) -> dict[str, ModelLike]:
    """One loaded model per distinct model file, shared by every region that uses it; RUN_MODEL is the run's.

    `in_child_first`: load each file in a separate process first (edge.core.model.check_in_child), so that a file
    that crashes ONNX Runtime cannot take a running service down (a reload)."""
    paths = {region.model for camera in cameras for region in camera.regions if region.model}
    if given is None or any(not camera.regions or any(not r.model for r in camera.regions) for camera in cameras):
        paths.add(RUN_MODEL)
    models: dict[str, ModelLike] = {}
    for path in sorted(paths):
        if path == RUN_MODEL and given is not None:
            models[path] = given
            continue
        from edge.core.model import Model, check_in_child

        if in_child_first and (path or options.model):
            check_in_child(path or options.model, options.device)
        ask_for_engine_build_time(options.device)
        loaded = Model.load(path or options.model, options.device, options.threads, spinning=spinning,
                            int32_sums=not options.fast_int8)
        LOG.info("model %s (%s %s, %d labels) on %s, %d thread(s), spinning %s%s", loaded.path, loaded.info.arch,
                 loaded.info.precision, len(loaded.labels), loaded.provider, loaded.threads,
                 "on" if spinning else "off", sums_note(loaded, options.fast_int8))  # fmt: skip
        models[path] = loaded
    return models


def build_loop(options: RunOptions, models: Mapping[str, ModelLike], sources: Sequence[Source],
               sinks: Sequence[Sink], stop: threading.Event, on_change: Callable[[Result], None] | None = None,
               clock: Callable[[], float] = time.perf_counter) -> FrameLoop:
    """The frame loop for `options`' cameras reading `sources` (in the same order), with `models` loaded."""
    cameras = [Camera(camera_options, source, region_states(options, camera_options, models))
               for camera_options, source in zip(options.camera_options(), sources)]
    return FrameLoop(models, cameras, sinks, options, stop, on_change, clock)


def region_states(options: RunOptions, camera: CameraOptions, models: Mapping[str, ModelLike],
                  running: Sequence[RegionState] = ()) -> list[RegionState]:
    """A camera's regions (the implicit whole-frame one when it has none); a region of `running` that is
    unchanged carries on, with its label."""
    kept = {region.name: region for region in running}
    states = []
    for region in camera.regions or (options.whole_frame(),):
        key = region.model or RUN_MODEL
        old = kept.get(region.name)
        if old is not None and old.keeps(region, key, models[key]):
            old.model = models[key]  # the file read again: same labels and input, maybe new weights
            states.append(old)
        else:
            states.append(RegionState(camera.name, region, key, models[key]))
    return states


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


def open_sinks(options: RunOptions, cameras: Sequence[Camera], stop: threading.Event, into: list[Sink],
               reload_requested: threading.Event | None = None,
               models: Mapping[str, ModelLike] | None = None) -> Retention | None:
    """Append the sinks `options` asks for to `into` (so the caller closes those opened before a failure).
    `reload_requested`: set it to reload the config (the web app does, after it changed the config file).
    Returns the retention sweeper, started, when options.retention asks for one (the caller closes it).

    The window and the recording show one camera's pixels: with several cameras each camera gets its own.
    """
    several = len(cameras) > 1
    files: list[FileFamily] = []
    recordings: list[VideoFileSink] = []
    for camera in cameras:
        def only(sink: Sink, name: str = camera.name) -> Sink:
            return OneCamera(sink, name) if several else sink

        if options.display or (options.display is None and window_possible()):
            into.append(only(WindowSink(stop, title=f"edgerec {camera.name}" if several else "edgerec")))
        if options.out:
            path = per_camera_path(options.out, camera.name) if several else options.out
            recording = VideoFileSink(path, fps=lambda source=camera.source: source.fps, segment_s=options.segment)
            into.append(only(recording))
            recordings.append(recording)
            files.append(recording.files())
    if options.events:
        events = EventsSink(options.events)
        into.append(events)
        if options.events != "-":
            files.append(events.files())
    if options.snapshots:
        snapshots = SnapshotSink(options.snapshots)
        into.append(snapshots)
        files.append(snapshots.files())
    retention = Retention(options.retention, files) if options.retention.enabled and files else None
    if options.web:
        web = WebSink(options.web, cameras=({c.name: c.source.status for c in cameras}), config=options.config,
                      request_reload=reload_requested.set if reload_requested is not None else None, models=models,
                      retention=retention)
        into.append(web)
        if options.web.review.enabled:
            into.append(web.review)  # a raw sink: the crops it keeps never show the overlay
    if options.mqtt:
        legacy = len(cameras) == 1 and cameras[0].regions[0].options.name == IMPLICIT
        places = (Place(),) if legacy else tuple(Place(camera.name, region.name, legacy=False)
                                                 for camera in cameras for region in camera.regions)  # fmt: skip
        into.append(MqttSink(options.mqtt, places=places, on_state=LOG.info))  # connected / disconnected
    notifier = Notifier()  # under systemd ($NOTIFY_SOCKET): READY at the first frame, then the watchdog
    if notifier.enabled:
        into.append(ServiceSink(notifier))
    if retention is None:
        return None
    for recording in recordings:
        recording.on_closed = retention.poke  # a closed segment: sweep now
    return retention.start()


def per_camera_path(path: str, camera: str) -> str:
    """`out.mp4` -> `out-garage.mp4`: one recording per camera."""
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-{camera}.{suffix}" if dot and "/" not in suffix else f"{path}-{camera}"


def close_all(sinks: Sequence[Sink], sources: Sequence[Source]) -> None:
    """Close every sink and source even when one of them fails; then raise the first failure."""
    failure: BaseException | None = None
    for closable in (*sinks, *sources):
        try:
            closable.close()
        except Exception as error:  # the others must still close
            failure = failure or error
    if failure is not None:
        raise failure


def one_blas_thread() -> contextlib.AbstractContextManager:
    """NumPy's BLAS on one thread while the run lasts: the loop's products are tiny (the review queue's
    near-duplicate check; the novelty score where a graph is too old to carry it), and a second OpenBLAS thread
    woken for each one costs several times its CPU (docs/unknown.md)."""
    return threadpool_limits(limits=1, user_api="blas")


def sums_note(model: Model, fast_int8: bool) -> str:
    """What the start-up line says of an INT8 file's arithmetic where it is a choice (x86 without VNNI)."""
    if model.info.precision != "int8" or model.provider != CPU or not int8_sums_saturate():
        return ""
    return f", INT8 in {int8_sums(not fast_int8)} sums" + (" (fast_int8)" if fast_int8 else "")


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


class FrameLoop:
    """The loop itself: cameras, their regions, the scheduler, and every buffer and timer made up front."""

    def __init__(
        self,
        models: Mapping[str, ModelLike],
        cameras: Sequence[Camera],
        sinks: Sequence[Sink],
        options: RunOptions,
        stop: threading.Event,
        on_change: Callable[[Result], None] | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`clock` times the stages (seconds); time.thread_time gives CPU time (edgerec bench --pipeline)."""
        self.models, self.cameras, self.options, self.clock = models, list(cameras), options, clock
        self.stop, self.on_change = stop, on_change
        self.timers = {name: StageTimer() for name in STAGES}
        self.frame_age, self.latency = StageTimer(), StageTimer()
        self.cameras_by_name = {camera.name: camera for camera in self.cameras}
        regions = [region for camera in self.cameras for region in camera.regions]
        self.scheduler = Scheduler(models, regions, self.timers, clock, time.monotonic)
        self.wake = threading.Event()  # set by live sources when a frame arrives (several cameras)
        self.frames = 0
        self.reloader: Reloader | None = None
        self._turn = 0
        self._due: list[tuple[RegionState, Frame, float]] = []
        self._connect_wake()
        self.attach(sinks)

    def _connect_wake(self) -> None:
        if len(self.cameras) > 1:
            for camera in self.cameras:
                if hasattr(camera.source, "on_frame"):  # a live source: its grabber wakes the loop
                    camera.source.on_frame = self.wake.set

    def sources(self) -> list[Source]:
        return [camera.source for camera in self.cameras]

    def apply(self, update: Update) -> None:
        """Swap in a reloaded configuration between two turns: new models and regions, the sources that changed
        (the replaced ones close on a thread of their own); unchanged cameras and regions carry on."""
        from edge.loop.reload import close_quietly

        options, models = update.options, update.models
        replaced = []
        for camera, camera_options in zip(self.cameras, options.camera_options()):
            source = update.sources.get(camera.name)
            if source is not None:
                replaced.append(camera.source)
            camera.reconfigure(camera_options, region_states(options, camera_options, models, camera.regions), source)
        close_quietly(replaced)
        self.options, self.models = options, models
        regions = [region for camera in self.cameras for region in camera.regions]
        self.scheduler = Scheduler(models, regions, self.timers, self.clock, time.monotonic)
        self._connect_wake()
        self.attach([*self.raw_sinks, *self.drawing_sinks])
        for sink in (*self.raw_sinks, *self.drawing_sinks):
            follow = getattr(sink, "models_changed", None)  # a sink that names the model files (the web page)
            if follow is not None:
                follow(models)
        LOG.info("reloaded: %d camera(s), %d region(s)%s", len(self.cameras), len(regions),
                 f"; reopened {', '.join(update.sources)}" if update.sources else "")

    def attach(self, sinks: Sequence[Sink]) -> None:
        """Deliver to `sinks` (raw ones get the camera's pixels, drawing ones the overlay drawn on them)."""
        self.raw_sinks = [s for s in sinks if not s.wants_overlay]
        self.drawing_sinks = [s for s in sinks if s.wants_overlay]
        self.overlays = {camera.name: Overlay(camera.regions[0].model.labels, self.options.overlay)
                         for camera in self.cameras} if self.drawing_sinks else {}  # fmt: skip

    def run(self) -> RunSummary:
        start = time.monotonic()
        deadline = start + self.options.duration if self.options.duration else math.inf
        stopped_by = "stop"
        while not self.stop.is_set():
            if self.reloader is not None and (update := self.reloader.take()) is not None:
                self.apply(update)
            delivered = self.step(POLL_S)
            if not delivered and all(camera.source.ended for camera in self.cameras):
                stopped_by = "end"
                break
            if delivered and self.options.max_frames is not None and self.frames >= self.options.max_frames:
                stopped_by = "max-frames"
                break
            if time.monotonic() >= deadline:
                stopped_by = "duration"
                break
        return self._summary(time.monotonic() - start, stopped_by)

    def step(self, timeout: float) -> list[FrameResult]:
        """One turn: wait up to `timeout` s for new frames, then take each through the whole path."""
        clock = self.clock
        waited = clock()
        frames = self._collect(timeout)
        if not frames:
            return []
        arrived = clock()
        self.timers["wait"].add((arrived - waited) * 1000)
        due = self._due
        for camera, frame in frames:
            for region in camera.due(frame):
                due.append((region, frame, camera.fps))
        t_motion = clock()
        self.timers["motion"].add((t_motion - arrived) * 1000)
        if due:
            now = time.monotonic()
            for region, frame, _ in due:
                age = (now - frame.captured) * 1000
                self.frame_age.add(age)
                self.cameras_by_name[region.camera].frame_age.add(age)
            inferred_before = self.timers["infer"].total
            self.scheduler.run(due)
            infer_ms = self.timers["infer"].total - inferred_before
            due.clear()
        else:
            infer_ms = 0.0
        delivered = [self._deliver(camera, frame) for camera, frame in frames]
        ms = (clock() - arrived) * 1000
        self.timers["frame"].add(ms)
        self.timers["beyond-model"].add(ms - infer_ms)
        return delivered

    def _collect(self, timeout: float) -> list[tuple[Camera, Frame]]:
        """The newest frame of every camera that has one, waiting up to `timeout` s for the first."""
        if len(self.cameras) == 1:
            camera = self.cameras[0]
            frame = camera.source.read(timeout)
            return [(camera, frame)] if frame is not None else []
        deadline = time.monotonic() + timeout
        while True:
            self.wake.clear()
            self._turn += 1
            order = self.cameras[self._turn % len(self.cameras):] + self.cameras[: self._turn % len(self.cameras)]
            frames = [(camera, frame) for camera in order if (frame := camera.source.read(0)) is not None]
            left = deadline - time.monotonic()
            if frames or left <= 0 or self.stop.is_set():
                return frames
            self.wake.wait(min(left, self._next_due()))

    def _next_due(self) -> float:
        """Seconds until a paced file or folder has its next frame due (live sources set `wake`)."""
        waits = [camera.source.next_in() for camera in self.cameras if hasattr(camera.source, "next_in")]
        return max(0.0, min(waits, default=POLL_S))

    def _deliver(self, camera: Camera, frame: Frame) -> FrameResult:
        clock = self.clock
        results = tuple(region.shown(frame) for region in camera.regions if region.result is not None)
        frame_result = FrameResult(camera.name, frame.index, frame.captured, camera.fps, results, camera.motion_state)
        t0 = clock()
        for sink in self.raw_sinks:
            sink.write(frame.image, frame_result)
        t1 = t2 = clock()
        if self.drawing_sinks and self._pixels_shown(camera.name):
            self.overlays[camera.name].draw(frame.image, frame_result, camera.motion_state)
            t2 = clock()
            self.timers["overlay"].add((t2 - t1) * 1000)
        for sink in self.drawing_sinks:
            sink.write(frame.image, frame_result)
        t3 = clock()
        self.timers["sinks"].add((t1 - t0 + t3 - t2) * 1000)
        self.latency.add((time.monotonic() - frame.captured) * 1000)
        camera.frames += 1
        self.frames += 1
        if self.on_change is not None:
            for result in results:
                if result.changed:
                    self.on_change(result)
        return frame_result

    def _pixels_shown(self, camera: str) -> bool:
        """Whether a drawing sink shows this camera's frame (a web preview does only while someone watches)."""
        for sink in self.drawing_sinks:
            shows = getattr(sink, "shows", None)  # a sink showing several cameras (the web preview)
            if shows(camera) if shows is not None else getattr(sink, "shows_pixels", True) and \
                    getattr(sink, "camera", camera) == camera:
                return True
        return False

    def _summary(self, elapsed: float, stopped_by: str) -> RunSummary:
        cameras = {camera.name: CameraSummary(camera.frames, camera.source.status(), {
            region.name: RegionSummary(region.result.label if region.result else "", region.inferences,
                                       region.changes, region.options.trigger.kind)
            for region in camera.regions}, camera.frame_age.stats()) for camera in self.cameras}  # fmt: skip
        first = self.cameras[0].regions[0].result
        regions = [region for camera in self.cameras for region in camera.regions]
        return RunSummary(
            frames=self.frames,
            inferred=sum(region.inferences for region in regions),
            label_changes=sum(region.changes for region in regions),
            label=first.label if first else "",
            elapsed_s=elapsed,
            fps=self.frames / elapsed if elapsed > 0 else 0.0,
            stopped_by=stopped_by,
            source=self.cameras[0].source.status(),
            stages={name: timer.stats() for name, timer in self.timers.items()},
            frame_age=self.frame_age.stats(),
            latency=self.latency.stats(),
            cameras=cameras,
        )

