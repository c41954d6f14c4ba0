"""What a run is asked to do (RunOptions) and what it reports (RunSummary): plain dataclasses, so that the
config and the command line build them without importing the frame loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import EdgerecError
from edge.live.camera import DEFAULT_CAMERA, CameraOptions
from edge.live.capture import SourceOptions, SourceStatus
from edge.live.motion import MotionOptions
from edge.live.overlay import OverlayOptions
from edge.live.regions import RegionOptions, TriggerOptions
from edge.live.smoothing import SmoothingOptions
from edge.live.stages import StageStats
from edge.sinks.mqtt import MqttOptions
from edge.sinks.retention import RetentionOptions
from edge.sinks.video import MIN_SEGMENT_S
from edge.web.options import ConfigStore, WebOptions


@dataclass(frozen=True)
class RunOptions:
    source: SourceOptions
    """What to read and how (URI, camera requests, pacing, loop, timeouts): the one camera when `cameras`
    is empty."""
    model: str | None = None
    """Model file; None: the embedded ImageNet EfficientNet-Lite0 INT8 model."""
    device: str = "auto"
    """Execution device for ONNX Runtime (see edge.core.model.DEVICES)."""
    threads: int | None = None
    """Inference threads; None: ONNX Runtime's choice."""
    fast_int8: bool = False
    """INT8 files on x86 without VNNI: the faster kernels with saturating 16-bit sums (labels move against
    FP32's) instead of 32-bit sums (`Model.load(int32_sums=...)`); nothing changes elsewhere."""
    infer_fps: float | None = None
    """Run the model at most this often per region; other frames carry the last result. None: no cap."""
    trigger: str = "frame"
    """When the model runs on a region that does not say: "frame", "motion" or "interval" (edge.live.regions)."""
    interval: float | None = None
    """motion: keep-alive period (default edge.live.regions.KEEPALIVE_S); interval: the period."""
    regions: tuple[RegionOptions, ...] = ()
    """The one camera's regions (when `cameras` is empty); none: the whole frame."""
    cameras: tuple[CameraOptions, ...] = ()
    """Several cameras, each with its own source and regions; empty: one camera, `source` and `regions`."""
    motion: MotionOptions = field(default_factory=MotionOptions)
    """The one camera's motion detector settings (when `cameras` is empty)."""
    spinning: bool | None = None
    """ONNX Runtime's pool threads spin between runs: True, False, or None for "only when frames queue"
    (sources read as fast as possible); a paced camera then costs what its work costs."""
    max_frames: int | None = None
    """Stop after this many frames reached the sinks (all cameras together)."""
    duration: float | None = None
    """Stop after this many seconds."""
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    """Smoothing of the implicit whole-frame region (configured regions have their own)."""
    overlay: OverlayOptions = field(default_factory=OverlayOptions)
    display: bool | None = None
    """Show a window: True, False, or None for "when OpenCV has a GUI and there is a display"."""
    out: str | None = None
    """Annotated video file (.mp4, .avi, ...); with several cameras, one per camera: NAME inserted before
    the suffix (out-garage.mp4)."""
    segment: float | None = None
    """Record `out` in segments of this many seconds, each a file named from out's stem and its start time
    (out-20261207-011500.mp4); None: one file."""
    events: str | None = None
    """JSON-lines file, one line per label change of a region; "-" for standard output."""
    snapshots: str | None = None
    """Folder for JPEGs at each label change: the full frame, and the region's crop for a named region."""
    retention: RetentionOptions = field(default_factory=RetentionOptions)
    """How many megabytes and days of recording segments, snapshots and rotated events files are kept
    (edge.sinks.retention); the defaults keep everything."""
    web: WebOptions | None = None
    """Web preview, status, health and metrics over HTTP; None: no web server."""
    mqtt: MqttOptions | None = None
    """Label changes and availability to an MQTT broker; None: no MQTT."""
    config: ConfigStore | None = None
    """The TOML file these options were read from, as the web app changes it (edge.app.config_write.TomlConfig:
    regions and their models written back); None: none."""
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
        if self.segment is not None and not self.segment >= MIN_SEGMENT_S:
            raise EdgerecError(f"segment {self.segment} is too short; valid: seconds >= {MIN_SEGMENT_S:g}")
        if self.retention.enabled and self.out and self.segment is None:
            raise EdgerecError("retention with a recording needs segments (--segment SECONDS, [recording] segment): "
                               "one growing file cannot be trimmed")
        if self.opencv_threads is not None and self.opencv_threads < 1:
            raise EdgerecError(f"opencv_threads {self.opencv_threads} is not positive; valid: an integer >= 1")
        self.whole_frame()  # the trigger settings are valid
        cameras = self.camera_options()
        names = [camera.name for camera in cameras]
        for name in names:
            if names.count(name) > 1:
                raise EdgerecError(f"camera name {name!r} appears twice; valid: a different name for each camera")

    def whole_frame(self) -> RegionOptions:
        """The implicit region of a camera without regions: the whole frame, with the run's trigger."""
        return RegionOptions(trigger=TriggerOptions(self.trigger, self.interval, self.infer_fps),
                             smoothing=self.smoothing)

    def camera_options(self) -> tuple[CameraOptions, ...]:
        """The cameras to read: `cameras`, or the one camera `source` with `regions`."""
        if self.cameras:
            return self.cameras
        return (CameraOptions(self.source, DEFAULT_CAMERA, self.regions, self.motion),)


@dataclass(frozen=True)
class RegionSummary:
    label: str
    """The label shown last ("" when the model never ran)."""
    inferences: int
    label_changes: int
    trigger: str
    """The region's trigger kind."""


@dataclass(frozen=True)
class CameraSummary:
    frames: int
    """Frames of this camera that reached the sinks."""
    source: SourceStatus
    regions: dict[str, RegionSummary]
    frame_age: StageStats
    """Milliseconds from capture to the start of preprocessing, for this camera's frames the model ran on."""


@dataclass(frozen=True)
class RunSummary:
    frames: int
    """Frames that reached the sinks, all cameras together."""
    inferred: int
    """Region inferences (the model ran on one region of one frame)."""
    label_changes: int
    label: str
    """The label the first region of the first camera showed last ("" when no frame arrived)."""
    elapsed_s: float
    fps: float
    """Frames that reached the sinks per second of the run."""
    stopped_by: str
    """"end" (of every file or folder), "max-frames", "duration" or "stop" (the stop event)."""
    source: SourceStatus
    """The first camera's source's final counters: frames produced, dropped, skipped, reconnects, last error."""
    stages: dict[str, StageStats]
    """Milliseconds per stage: wait (for the sources), motion, preprocess, infer (per batch), smooth, overlay,
    sinks; frame: everything from a frame's arrival to its last sink; beyond-model: frame minus infer."""
    frame_age: StageStats
    """Milliseconds from capture to the start of preprocessing, for the frames the model ran on."""
    latency: StageStats
    """Milliseconds from capture to the last sink done, for every frame."""
    cameras: dict[str, CameraSummary] = field(default_factory=dict)
    """Per camera: frames, source counters, and per region the last label and counts."""
