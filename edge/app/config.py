"""The service's settings: one TOML file, typed and validated, mapped onto the pipeline's RunOptions.

    [source]                      what to read          [recognition]   trigger, model rate, smoothing
    [model]                       file, device, threads [overlay]       what is drawn on frames
    [[regions]]                   places to watch in the picture (none: the whole frame)
    [motion]                      the motion detector of regions triggered by motion
    [[cameras]]                   several cameras, each with its own source, regions and motion settings
    [display] [events] [snapshots] [recording] [web] [mqtt]             where results go
    [review]                      the web page's review queue (crops worth labelling)
    [retention]                   how much of the recordings, snapshots and events is kept

Every field has a default and a description; `defaults_toml()` prints them as a commented example
(`edgerec config --defaults`), so the example cannot drift from the schema. Unknown keys and bad values
are one-line errors naming the key's path and what is valid. Command-line flags override single keys
(`with_overrides`); the file itself is only ever read.
"""

from __future__ import annotations

import sys
import textwrap
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from edge.core.devices import DEVICES, parse_device
from edge.core.model import MAX_THREADS
from edge.errors import EdgerecError
from edge.learn.review import ReviewOptions
from edge.live.camera import CameraOptions
from edge.live.capture import SourceOptions, decode_scale_problem
from edge.live.motion import MotionOptions
from edge.live.overlay import OverlayOptions
from edge.live.regions import KEEPALIVE_S, TRIGGERS, RegionOptions, TriggerOptions, box_problem, name_problem
from edge.live.smoothing import SmoothingOptions
from edge.loop.options import RunOptions
from edge.sinks.mqtt import MqttOptions
from edge.sinks.retention import RetentionOptions
from edge.sinks.video import MIN_SEGMENT_S
from edge.web.options import WebOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PATH = Path("/etc/edgerec/config.toml")

SECRETS = frozenset({"web.token", "mqtt.password"})
"""Keys whose values error messages never repeat (they end up in the journal)."""

MAX_SIDE = 16384
"""Largest frame width or height a camera is asked for (16K)."""
MAX_TIMEOUT_S = 86400.0
"""Longest open/read timeout: a day (OpenCV takes milliseconds as a 32-bit int)."""

_SOURCE, _SMOOTHING, _OVERLAY, _MOTION = SourceOptions("0"), SmoothingOptions(), OverlayOptions(), MotionOptions()
_REVIEW = ReviewOptions()
Trigger = typing.Literal["frame", "motion", "interval"]
assert typing.get_args(Trigger) == TRIGGERS


def auto_or_bool(value: object) -> object:
    """A setting that is true, false or "auto"."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError('must be true, false or "auto"')


class Section(BaseModel):
    """A table of the file: unknown keys are errors, values keep their TOML type (no "5" for 5)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class SourceSection(Section):
    """What to read: a camera, a network stream, a video file, a folder of images or the demo clip.
    A line source = "rtsp://..." (or source = 0) in place of this table sets only uri."""

    uri: str = Field("0", description="camera index (0, 1, ...) or /dev/videoN, a video file, an image or a "
                     "folder of images, rtsp:// or http(s):// URL, gst:PIPELINE, picamera2, or demo "
                     "(the shipped clip); `edgerec run --help` shows an example of each",
                     examples=["rtsp://cam.local:554/stream1"])
    width: int | None = Field(None, gt=0, le=MAX_SIDE, description="camera: requested frame width (the camera "
                              "picks the nearest it supports); unset: the camera's own", examples=[1280])
    height: int | None = Field(None, gt=0, le=MAX_SIDE, description="camera: requested frame height", examples=[720])
    fps: float | None = Field(None, gt=0, description="camera: requested frame rate; video file or folder: "
                              "playback rate; unset: the source's own", examples=[15])
    mjpg: bool = Field(_SOURCE.mjpg, description="V4L2 camera: ask for MJPG, which gives USB cameras their "
                       "full frame rate at high resolutions")
    decode_scale: typing.Literal[1, 2, 4, 8] = Field(_SOURCE.decode_scale, description="V4L2 camera (MJPG) or network "
                                              "stream sending MJPEG: decode each frame at 1/2, 1/4 or 1/8 of its "
                                              "width and height, for less CPU; every sink gets the smaller frames")
    paced: bool = Field(_SOURCE.paced, description="video file or folder: play at its frame rate; false: as "
                        "fast as possible (batch work)")
    loop: bool = Field(_SOURCE.loop, description="video file or folder: start again at the end")
    read_timeout: float = Field(_SOURCE.read_timeout, gt=0, le=MAX_TIMEOUT_S, description="live source: seconds "
                                "without a frame before it counts as stalled and reconnects")
    open_timeout: float = Field(_SOURCE.open_timeout, gt=0, le=MAX_TIMEOUT_S, description="network stream: "
                                "seconds to wait for a connection")

    @field_validator("uri", mode="before")
    @classmethod
    def _camera_number(cls, value: object) -> object:
        return str(value) if type(value) is int and value >= 0 else value  # uri = 0 means camera 0

    @field_validator("decode_scale")
    @classmethod
    def _mjpeg_source(cls, value: int, info: ValidationInfo) -> int:
        problem = decode_scale_problem(info.data.get("uri", "0"), info.data.get("mjpg", True), value)
        if problem:
            raise ValueError(problem)
        return value


class ModelSection(Section):
    """The model and where it runs."""

    path: str = Field("", description="model file (.onnx written by edgerec); empty: the embedded ImageNet "
                      "EfficientNet-Lite0 INT8 model", examples=["/var/lib/edgerec/model.onnx"])
    device: str = Field("auto", description="execution device: auto (TensorRT, CUDA, else CPU, whichever this "
                        f"onnxruntime has), {', '.join(DEVICES)}; cuda:N / tensorrt:N pick a GPU, "
                        "openvino:CPU|GPU|NPU an OpenVINO device; an explicit one this onnxruntime lacks is an "
                        "error at start", examples=["cuda:0"])

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        try:
            parse_device(value)
        except EdgerecError as exc:
            raise ValueError(str(exc)) from None
        return value
    threads: int | None = Field(None, gt=0, le=MAX_THREADS, description="inference threads; unset: onnxruntime's "
                                "choice (one per physical core)", examples=[2])
    fast_int8: bool = Field(False, description="INT8 files on an x86 CPU without VNNI: true uses its faster "
                            "kernels (about 30% less CPU there), whose saturating 16-bit sums change labels "
                            "against FP32's; false (default) sums in 32 bits, the same answers on every CPU. "
                            "Nothing changes on ARM or VNNI x86 (docs/quantization.md)")
    spinning: bool | str = Field("auto", description='onnxruntime\'s threads spin between runs: true, false, or '
                                 '"auto": only when frames queue (a file read as fast as possible); spinning on a '
                                 "paced camera burns a core for about a millisecond of latency (docs/benchmarks.md)")

    @field_validator("spinning", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: object) -> object:
        return auto_or_bool(value)


class RecognitionSection(Section):
    """How often the model runs and how its labels are smoothed so they do not flicker."""

    trigger: Trigger = Field("frame", description='when the model runs on a region: "frame" (every frame, at '
                             'most infer_fps), "motion" (when motion touches the region, once at start and at '
                             'least every interval s) or "interval" (every interval s)')
    interval: float | None = Field(None, gt=0, description=f"seconds: the keep-alive of motion regions "
                                   f"(unset: {KEEPALIVE_S:g}), the period of interval regions", examples=[10])
    infer_fps: float | None = Field(None, gt=0, description="run the model at most this often per region; "
                                    "frames in between carry the last label; unset: no cap", examples=[5])
    ema: float = Field(_SMOOTHING.alpha, gt=0, le=1, description="weight of the newest frame in the moving "
                       "average of probabilities; 1: no averaging")
    switch_margin: float = Field(_SMOOTHING.margin, ge=0, lt=1, description="a new label must lead the shown "
                                 "one by this much probability...")
    switch_frames: int = Field(_SMOOTHING.frames, ge=1, description="...for this many frames in a row "
                               "before it is shown; 1: at once")
    min_score: float = Field(_SMOOTHING.min_score, ge=0, le=1, description='show "unknown" below this '
                             "smoothed score; 0: never")
    unknown: bool = Field(_SMOOTHING.unknown, description='show "unknown" for what is unlike every photo the '
                          "model was taught (model files from edgerec teach/train that carry novelty data; "
                          "docs/unknown.md); false: always one of the labels")
    unknown_threshold: float | None = Field(None, ge=0, le=2, description="novelty score above which a region "
                                            "is unknown; unset: the one stored in the model file",
                                            examples=[0.8])


class MotionSection(Section):
    """The motion detector of regions triggered by motion: a small grey copy of each frame against a running
    average (docs/motion.md)."""

    threshold: int = Field(_MOTION.threshold, ge=1, le=255, description="grey levels a pixel must change by "
                           "to count (after blur and the global-brightness correction)")
    min_area: float = Field(_MOTION.min_area, ge=0, lt=1, description="fraction of the picture a moving blob "
                            "must cover to count")
    alpha: float = Field(_MOTION.alpha, gt=0, le=1, description="how fast the background follows the picture "
                         "(weight of each frame); a still new object fades in after about 1/alpha frames")
    lightning: float = Field(_MOTION.lightning, gt=0, le=1, description="fraction of the picture changing at "
                             "once that counts as a global change (lights, IR switch): not motion, re-learnt")
    width: int = Field(_MOTION.width, ge=16, description="width in pixels of the copy motion is detected on")
    still_every: int = Field(_MOTION.still_every, ge=1, le=10, description="while nothing moves, look at every "
                             "Nth frame only (motion is then seen at most N-1 frames late); 1 = every frame")


class RegionSection(Section):
    """A place to watch: a named rectangle of the frame with its own trigger, smoothing and model. Keys left
    out take [recognition]'s and [model]'s values."""

    name: str = Field(description="letters, digits, _ and -; names the region in events, MQTT, metrics",
                      examples=["door"])
    box: list[float] = Field(description="x, y, w, h as fractions of the frame", examples=[[0.25, 0.1, 0.3, 0.6]])
    model: str = Field("", description="model file for this region; empty: [model] path")
    trigger: Trigger | None = Field(None, description="frame, motion or interval; unset: [recognition] trigger")
    interval: float | None = Field(None, gt=0, description="unset: [recognition] interval")
    infer_fps: float | None = Field(None, gt=0, description="unset: [recognition] infer_fps")
    ema: float | None = Field(None, gt=0, le=1, description="unset: [recognition] ema")
    switch_margin: float | None = Field(None, ge=0, lt=1, description="unset: [recognition] switch_margin")
    switch_frames: int | None = Field(None, ge=1, description="unset: [recognition] switch_frames")
    min_score: float | None = Field(None, ge=0, le=1, description="unset: [recognition] min_score")
    unknown: bool | None = Field(None, description="unset: [recognition] unknown")
    unknown_threshold: float | None = Field(None, ge=0, le=2, description="unset: [recognition] "
                                            "unknown_threshold")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid(name_problem(value), value)

    @field_validator("box")
    @classmethod
    def _box(cls, value: list[float]) -> list[float]:
        return _valid(box_problem(value), value)


def _valid(problem: str, value: Any) -> Any:
    """`value`, or the ValueError pydantic reports with the key when edge.live.regions found a problem."""
    if problem:
        raise ValueError(problem)
    return value


def _needs_interval(interval: float | None, what: str) -> None:
    if interval is None:
        raise ValueError(f"{what} needs an interval; valid: seconds > 0 (interval = 10)")


def _unique_regions(regions: list[RegionSection], where: str) -> None:
    names = [region.name for region in regions]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{where}: region name {name!r} appears twice; valid: a different name for each")


class CameraSection(Section):
    """One of several cameras: a name, a source, its regions and its motion settings."""

    name: str = Field(description="letters, digits, _ and -; names the camera in events, MQTT, metrics, the "
                      "web page", examples=["garage"])
    source: SourceSection = Field(description="what to read: a URI (source = \"rtsp://...\") or a table with "
                                  "[source]'s keys")
    regions: list[RegionSection] = Field(default_factory=list, description="places to watch; none: the whole "
                                         "frame")
    motion: MotionSection | None = Field(None, description="unset: [motion]")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid(name_problem(value), value)

    @field_validator("source", mode="before")
    @classmethod
    def _source_shorthand(cls, value: object) -> object:
        return {"uri": value} if isinstance(value, (str, int)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _regions(self) -> CameraSection:
        _unique_regions(self.regions, f"camera {self.name}")
        return self


class OverlaySection(Section):
    """What is drawn on frames that are shown or recorded (the window, the recording, the web preview)."""

    top_k: int = Field(_OVERLAY.top_k, ge=0, description="bars for the k most probable labels under the "
                       "label; 0: none")
    stats: bool = Field(_OVERLAY.stats, description="draw frames per second and latency, updated twice a second")
    motion: bool = Field(_OVERLAY.motion, description="outline what the motion detector sees (a debug view, "
                         "where a region is triggered by motion)")


class DisplaySection(Section):
    """A window on the device's own screen (q or Esc quits)."""

    window: bool | str = Field("auto", description='true, false, or "auto": when OpenCV has a GUI and there '
                               "is a display (never under systemd)")

    @field_validator("window", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: object) -> object:
        return auto_or_bool(value)


class EventsSection(Section):
    """One JSON line per label change: time, frame, label, score, latency_ms."""

    path: str = Field("", description='file the lines are appended to, "-" for standard output; empty: off',
                      examples=["/var/lib/edgerec/events.jsonl"])


class SnapshotsSection(Section):
    """A JPEG of the frame at each label change."""

    dir: str = Field("", description="folder for the JPEGs; empty: off", examples=["/var/lib/edgerec/snapshots"])


class RecordingSection(Section):
    """The annotated frames as a video file, or in segments: a file every `segment` seconds."""

    path: str = Field("", description="video file (.mp4, .avi, .mkv); with segment, the folder and the stem of "
                      "the segments' names (rec.mp4 -> rec-20261207-011500.mp4); empty: off",
                      examples=["/var/lib/edgerec/rec.mp4"])
    segment: float | None = Field(None, ge=MIN_SEGMENT_S, description="a new file every this many seconds, named "
                                  "from the path's stem and its start time; each one plays on its own and no frame "
                                  "is lost between two; unset: one file", examples=[300])


class RetentionSection(Section):
    """How much of what edgerec writes is kept: recording segments, snapshots and rotated events files, the
    oldest deleted first, never the file being written nor a file edgerec did not name (docs/deployment.md)."""

    max_mb: float | None = Field(None, gt=0, description="megabytes (10^6 bytes) they may take together; "
                                 "unset: no size limit", examples=[8000])
    max_days: float | None = Field(None, gt=0, description="days a file is kept; unset: no age limit",
                                   examples=[30])


class WebSection(Section):
    """Live preview in a browser (MJPEG page, /api/status, /healthz) and Prometheus /metrics."""

    listen: str = Field("", description="address:port to serve on; loopback (127.0.0.1) unless a token is "
                        "set; empty: off", examples=["127.0.0.1:8080"])
    token: str = Field("", description="secret every request must carry when listen is not a loopback "
                       "address; empty: none", examples=["a-long-random-string"])
    max_clients: int = Field(4, ge=1, description="most preview streams at once; more are refused")
    jpeg_fps: float = Field(5.0, gt=0, description="most preview frames per second; frames are encoded only "
                            "while someone watches")
    metrics: bool = Field(True, description="serve /metrics in Prometheus text format")
    state_dir: str = Field("", description="where crops collected and models taught from the page are kept "
                           "(docs/teach-web.md); empty: $STATE_DIRECTORY (the systemd unit's /var/lib/edgerec), "
                           "else ~/.local/state/edgerec", examples=["/var/lib/edgerec"])
    tls: typing.Literal["off", "auto"] = Field("off", description="\"auto\": HTTPS only, with a self-signed "
                                               "certificate made once in state_dir/tls (its SHA-256 fingerprint is "
                                               "logged at each start, to pin); \"off\": plain HTTP unless "
                                               "tls_cert and tls_key are set (docs/web.md)")
    tls_cert: str = Field("", description="your own certificate (PEM) to serve HTTPS only with; needs tls_key; "
                          "empty: none", examples=["/etc/edgerec/cert.pem"])
    tls_key: str = Field("", description="the private key (PEM, no passphrase) of tls_cert", examples=[
        "/etc/edgerec/key.pem"])

    @field_validator("listen")
    @classmethod
    def _address_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if value and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("must be ADDRESS:PORT with a port from 1 to 65535, e.g. \"127.0.0.1:8080\"")
        return value


class ReviewSection(Section):
    """The web page's review queue: crops worth labelling that the camera met (unknown, low score, just after a
    label change), kept on the device for the page to assign to a label or discard (docs/review.md)."""

    enabled: bool = Field(_REVIEW.enabled, description="keep crops for review while the web page runs")
    low_score: float = Field(_REVIEW.low_score, ge=0, le=1, description='a result whose score is below this is '
                             'kept ("low score"); 0: none for their score')
    after_change_s: float = Field(_REVIEW.after_change_s, ge=0, le=3600, description="after a region's label "
                                  'changed, its results of this many seconds are kept ("label change"; the first '
                                  "at once, then one every min_gap_s); 0: only the first")
    per_hour: int = Field(_REVIEW.per_hour, ge=1, le=3600, description="at most this many crops per region in any "
                          "hour")
    max_mb: float = Field(_REVIEW.max_mb, gt=0, le=100_000, description="at most this many megabytes of crops in "
                          "all; the oldest are dropped first")
    duplicate: float = Field(_REVIEW.duplicate, ge=0, le=2, description="a crop closer than this (cosine "
                             "distance of the model's features, else of a 16x16 colour thumbnail) to one of the last "
                             "`compare` kept in its region is dropped; 0: keep near-duplicates")
    compare: int = Field(_REVIEW.compare, ge=1, le=1000, description="how many of a region's newest crops a new "
                         "one is compared with")
    min_gap_s: float = Field(_REVIEW.min_gap_s, ge=0, le=3600, description="at most one crop per region this often "
                             "(seconds)")


class MqttSection(Section):
    """Label changes and availability to an MQTT broker, with Home Assistant discovery."""

    enabled: bool = Field(False, description="connect to the broker")
    host: str = Field("localhost", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    topic_prefix: str = Field("edgerec", description="topics are PREFIX/state (label changes) and "
                              "PREFIX/availability")
    username: str = Field("", description="empty: connect without credentials")
    password: str = Field("", description="used with username")
    client_id: str = Field("", description="MQTT client id; empty: edgerec-HOSTNAME")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant discovery topic prefix; "
                                  "empty: no discovery messages")


class Config(Section):
    """Everything `edgerec run --config FILE` reads."""

    source: SourceSection = Field(default_factory=SourceSection)
    model: ModelSection = Field(default_factory=ModelSection)
    recognition: RecognitionSection = Field(default_factory=RecognitionSection)
    motion: MotionSection = Field(default_factory=MotionSection)
    regions: list[RegionSection] = Field(default_factory=list)
    cameras: list[CameraSection] = Field(default_factory=list)
    overlay: OverlaySection = Field(default_factory=OverlaySection)
    display: DisplaySection = Field(default_factory=DisplaySection)
    events: EventsSection = Field(default_factory=EventsSection)
    snapshots: SnapshotsSection = Field(default_factory=SnapshotsSection)
    recording: RecordingSection = Field(default_factory=RecordingSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    web: WebSection = Field(default_factory=WebSection)
    review: ReviewSection = Field(default_factory=ReviewSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)

    @field_validator("source", mode="before")
    @classmethod
    def _source_shorthand(cls, value: object) -> object:
        return {"uri": value} if isinstance(value, (str, int)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _places(self) -> Config:
        if self.cameras and self.regions:
            raise ValueError("[[regions]] belong to the one camera of [source]; with [[cameras]], give each "
                             "camera its regions as [[cameras.regions]]")
        if self.cameras and self.source != SourceSection():
            raise ValueError("[source] and [[cameras]] both name what to read; valid: one of them")
        _unique_regions(self.regions, "regions")
        places = [("regions", self.regions)] + [(f"camera {c.name}: regions", c.regions) for c in self.cameras]
        if not any(regions for _, regions in places) and self.recognition.trigger == "interval":
            _needs_interval(self.recognition.interval, "recognition: trigger 'interval'")
        for where, regions in places:
            for region in regions:
                trigger = region.trigger or self.recognition.trigger
                if trigger == "interval":
                    _needs_interval(region.interval or self.recognition.interval,
                                    f"{where}: {region.name}: trigger 'interval'")
        names = [camera.name for camera in self.cameras]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"cameras: camera name {name!r} appears twice; valid: a different name for each")
        retained = self.retention.max_mb is not None or self.retention.max_days is not None
        if retained and self.recording.path and self.recording.segment is None:
            raise ValueError("retention: a recording is kept within max_mb/max_days only in segments; valid: "
                             "recording.segment = SECONDS (--segment), or no retention")
        return self


# --- reading ---------------------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML file; every problem is an EdgerecError starting with the file's name."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgerecError(f"{path}: no such file (`edgerec config --defaults` prints an example)") from None
    except UnicodeDecodeError:
        raise EdgerecError(f"{path}: not UTF-8 text, which TOML requires") from None
    except OSError as error:
        raise EdgerecError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise EdgerecError(f"{path}: invalid TOML: {error}") from None
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        raise EdgerecError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    return parse_config(data, origin=str(path))


def parse_config(data: Mapping[str, Any], origin: str = "config") -> Config:
    """Validate parsed TOML; a problem raises EdgerecError("ORIGIN: KEY.PATH: what is wrong and valid")."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise EdgerecError(f"{origin}: {describe_error(error)}") from None


def with_overrides(config: Config, values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> Config:
    """`config` with keys replaced, e.g. {"source.fps": 5}, validated like the file.

    An invalid value raises EdgerecError naming it as `names` does (e.g. "--fps"), else by its key.
    """
    data = config.model_dump()
    for key, value in values.items():
        section, _, field = key.partition(".")
        if field:
            data[section][field] = value
        else:  # a whole list of tables, e.g. "regions"
            data[section] = value
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise EdgerecError(describe_error(error, names or {})) from None


def describe_error(error: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """The first problem of `error` on one line: `KEY.PATH: what is wrong (what is valid)`."""
    problems = error.errors()
    first = problems[0]
    loc = [str(part) for part in first["loc"] if not isinstance(part, int)]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    label = (names or {}).get(key, key)
    more = f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})" if len(problems) > 1 else ""
    if not loc and first["type"] == "value_error":  # a check across sections: its message names the keys
        return f"{first['ctx']['error']}{more}"
    if first["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        where = f" in [{key.rpartition('.')[0]}]" if len(loc) > 1 else ""
        return f"unknown key '{_printable(label)}' (valid keys{where}: {', '.join(parent.model_fields)}){more}"
    got = "(hidden)" if key in SECRETS else toml_value(first["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{label}: {_what_is_valid(first, loc)}, got {got}{more}"


def _printable(text: str) -> str:
    """`text` with control characters as \\uXXXX, so that a message stays on one line."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _what_is_valid(problem: Mapping[str, Any], loc: list[str]) -> str:
    kind, ctx = problem["type"], problem.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        return f"must be {bounds[kind]} {_bound(ctx)}"
    if kind == "literal_error":
        choices = [c for arg in typing.get_args(_field_at(loc).annotation) or [_field_at(loc).annotation]
                   for c in (typing.get_args(arg) or [arg]) if c is not type(None)]
        return "must be one of " + ", ".join(toml_value(c) for c in choices)
    if kind == "model_type":
        return f"must be a table ([{'.'.join(loc)}] with keys {', '.join(_model_at(loc).model_fields)})"
    if kind == "value_error":
        return str(ctx["error"])
    types = {"finite": "a finite number", "int": "an integer", "float": "a number", "bool": "true or false",
             "string": "a string in quotes"}
    for name, words in types.items():
        if kind.startswith(name):
            return f"must be {words}"
    return problem["msg"][0].lower() + problem["msg"][1:]


def _bound(ctx: Mapping[str, Any]) -> str:
    value = next(iter(ctx.values()))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _field_at(loc: list[str]) -> Any:
    return _model_at(loc[:-1]).model_fields[loc[-1]]


def _model_at(loc: list[str]) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for part in loc:
        model = _unwrap(model.model_fields[part].annotation)
    return model


def _unwrap(annotation: Any) -> Any:
    """The table type inside list[X] or X | None."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


# --- using ------------------------------------------------------------------------------------------


def run_options(config: Config) -> RunOptions:
    """The pipeline's options for `config` (limits such as max_frames are the command line's business)."""
    model, recognition = config.model, config.recognition
    return RunOptions(
        source=source_options(config.source),
        model=model.path or None,
        device=model.device,
        threads=model.threads,
        fast_int8=model.fast_int8,
        spinning=None if model.spinning == "auto" else model.spinning,
        infer_fps=recognition.infer_fps,
        trigger=recognition.trigger,
        interval=recognition.interval,
        regions=tuple(region_options(region, config) for region in config.regions),
        cameras=tuple(camera_options(camera, config) for camera in config.cameras),
        motion=motion_options(config.motion),
        smoothing=SmoothingOptions(recognition.ema, recognition.switch_margin, recognition.switch_frames,
                                   recognition.min_score, recognition.unknown, recognition.unknown_threshold),
        overlay=OverlayOptions(top_k=config.overlay.top_k, stats=config.overlay.stats, motion=config.overlay.motion),
        display=None if config.display.window == "auto" else config.display.window,
        out=config.recording.path or None,
        segment=config.recording.segment,
        retention=RetentionOptions(config.retention.max_mb, config.retention.max_days),
        events=config.events.path or None,
        snapshots=config.snapshots.dir or None,
        web=web_options(config.web, config.review),
        mqtt=mqtt_options(config.mqtt),
    )  # fmt: skip


def source_options(source: SourceSection) -> SourceOptions:
    return SourceOptions(source.uri, width=source.width, height=source.height, fps=source.fps, mjpg=source.mjpg,
                         decode_scale=source.decode_scale, paced=source.paced, loop=source.loop,
                         open_timeout=source.open_timeout, read_timeout=source.read_timeout)


def region_options(region: RegionSection, config: Config) -> RegionOptions:
    """A region's options; the keys it leaves out come from [recognition] and [model]."""
    recognition = config.recognition

    def pick(key: str) -> Any:
        value = getattr(region, key)
        return value if value is not None else getattr(recognition, key)

    return RegionOptions(
        name=region.name, box=tuple(region.box), model=region.model or None,  # None: the run's [model] path
        trigger=TriggerOptions(pick("trigger"), pick("interval"), pick("infer_fps")),
        smoothing=SmoothingOptions(pick("ema"), pick("switch_margin"), pick("switch_frames"), pick("min_score"),
                                   pick("unknown"), pick("unknown_threshold")),
    )  # fmt: skip


def camera_options(camera: CameraSection, config: Config) -> CameraOptions:
    return CameraOptions(source_options(camera.source), camera.name,
                         tuple(region_options(region, config) for region in camera.regions),
                         motion_options(camera.motion or config.motion))


def motion_options(motion: MotionSection) -> MotionOptions:
    return MotionOptions(width=motion.width, threshold=motion.threshold, min_area=motion.min_area,
                         alpha=motion.alpha, lightning=motion.lightning, still_every=motion.still_every)


def web_options(web: WebSection, review: ReviewSection | None = None) -> WebOptions | None:
    if not web.listen:
        return None
    return WebOptions(web.listen, web.token or None, web.max_clients, web.jpeg_fps, metrics=web.metrics,
                      state_dir=web.state_dir or None, review=ReviewOptions(**(review or ReviewSection()).model_dump()),
                      tls=web.tls, tls_cert=web.tls_cert or None, tls_key=web.tls_key or None)


def mqtt_options(mqtt: MqttSection) -> MqttOptions | None:
    if not mqtt.enabled:
        return None
    return MqttOptions(mqtt.host, mqtt.port, mqtt.topic_prefix, mqtt.username, mqtt.password or None,
                       mqtt.client_id, mqtt.discovery_prefix)


def web_tls(web: WebSection) -> str:
    if web.tls == "auto":
        return " (HTTPS, self-signed certificate)"
    return f" (HTTPS, certificate {web.tls_cert})" if web.tls_cert else ""


def describe_config(config: Config) -> list[str]:
    """A few lines for `edgerec check-config`: what will be read, with what, and where results go."""
    source, model, recognition = config.source, config.model, config.recognition
    camera = ", ".join(part for part in (
        f"{source.width or '?'}x{source.height or '?'}" if source.width or source.height else "",
        f"{source.fps:g} fps" if source.fps else "", "loop" if source.loop else "",
        decoded_at(source)) if part)  # fmt: skip
    outputs = [f"display {str(config.display.window).lower()}"]
    outputs += [f"{name} {value}" for name, value in (
        ("events", config.events.path), ("snapshots", config.snapshots.dir),
        ("recording", config.recording.path + (f" in {config.recording.segment:g} s segments"
                                               if config.recording.path and config.recording.segment else "")),
        ("web", config.web.listen + (" (token set)" if config.web.token else "") + web_tls(config.web)),
        ("mqtt", f"{config.mqtt.host}:{config.mqtt.port}" if config.mqtt.enabled else "")) if value]  # fmt: skip
    return [
        *([f"source       {source.uri}" + (f" ({camera})" if camera else "")] if not config.cameras else []),
        f"model        {model.path or 'embedded ImageNet EfficientNet-Lite0 INT8'}, device {model.device}, "
        f"threads {model.threads or 'auto'}" + (", fast INT8 (saturating sums on x86 without VNNI)"
                                                if model.fast_int8 else ""),
        f"recognition  {recognition.trigger}"
        + (f" (every {recognition.interval:g} s)" if recognition.interval and recognition.trigger != "frame" else "")
        + f", {'no rate cap' if not recognition.infer_fps else f'at most {recognition.infer_fps:g} fps'}, "
        f"ema {recognition.ema:g}, switch after {recognition.switch_frames} frames "
        f"{recognition.switch_margin:g} ahead, min score {recognition.min_score:g}, unknown "
        + ("off" if not recognition.unknown else "above the model file's threshold"
           if recognition.unknown_threshold is None else f"above novelty {recognition.unknown_threshold:g}"),
        *describe_places(config),
        f"outputs      {', '.join(outputs)}",
    ]


def decoded_at(source: SourceSection) -> str:
    """"decoded at 1/N size" for a source with decode_scale N > 1, else ""."""
    return f"decoded at 1/{source.decode_scale} size" if source.decode_scale > 1 else ""


def describe_places(config: Config) -> list[str]:
    """One line per camera of [[cameras]] and per region: name, box, trigger."""
    recognition = config.recognition

    def region(r: RegionSection) -> str:
        trigger = r.trigger or recognition.trigger
        every = r.interval or recognition.interval
        when = trigger + (f" every {every:g} s" if every and trigger != "frame" else "")
        return f"{r.name} [{', '.join(f'{v:g}' for v in r.box)}] on {when}" + (f", model {r.model}" if r.model else "")

    def camera(c: CameraSection) -> str:
        decoded = decoded_at(c.source)
        return (f"{c.name}: {c.source.uri}" + (f" ({decoded})" if decoded else "")
                + f"; regions: {', '.join(map(region, c.regions)) or 'whole frame'}")

    lines = [f"camera       {camera(c)}" for c in config.cameras]
    lines += [f"region       {region(r)}" for r in config.regions]
    return lines


# --- writing the example ----------------------------------------------------------------------------

HEADER = """\
# edgerec configuration: `edgerec run --config FILE`; check it with `edgerec check-config FILE`.
# Every setting is shown with its default value; a line `# key = value` is unset, with an example.
# Flags given to `edgerec run` override this file. edgerec rewrites it only when the web page saves a
# region or accepts a model (without these comments; the file before that is kept as FILE.bak).
"""


SERVICE = {
    "recording": {"path": "/var/lib/edgerec/rec.mp4", "segment": 300.0},
    "retention": {"max_mb": 20000.0, "max_days": 30.0},
}
"""What the service's example config (`edgerec config --service`, written by scripts/install-service.sh) sets
beyond the defaults: it records in 5-minute segments and keeps 20 GB and 30 days of them (docs/deployment.md,
"What a card holds")."""
SERVICE_HEADER = """\
# The service's example: the defaults, but recording in 5-minute segments (/var/lib/edgerec/rec-*.mp4),
# kept within 20 GB and 30 days ([recording], [retention]); `edgerec config --defaults` has every default.
"""


def defaults_toml(service: bool = False) -> str:
    """Every section and key with its description and default, as TOML that loads to `Config()`; `service`:
    with SERVICE's values instead (loads to the service's example)."""
    defaults = Config.model_validate(SERVICE) if service else Config()
    parts = [HEADER + (SERVICE_HEADER if service else "")]
    for name, section_field in Config.model_fields.items():
        section = section_field.annotation
        if typing.get_origin(section) is list:
            parts.append("\n" + _list_example(name, _unwrap(section)))
            continue
        parts.append("\n" + _comment(section.__doc__ or "") + f"[{name}]\n")
        for key, field in section.model_fields.items():
            value = getattr(getattr(defaults, name), key)
            line = f"{key} = {toml_value(value)}" if value is not None else f"# {key} = {toml_value(field.examples[0])}"
            parts.append(_comment(field.description or "") + line + "\n")
    return "".join(parts)


LIST_EXAMPLES = {
    "regions": '# [[regions]]\n# name = "door"\n# box = [0.25, 0.1, 0.3, 0.6]\n# trigger = "motion"\n',
    "cameras": '#   regions: [[cameras.regions]] tables with the keys of [[regions]]\n'
               '#   motion: a [cameras.motion] table with the keys of [motion]; unset: [motion]\n'
               '# (with [[cameras]], leave [source] out or at its defaults)\n'
               '# [[cameras]]\n# name = "garage"\n# source = "rtsp://cam.local:554/stream1"\n'
               '# [[cameras.regions]]\n# name = "door"\n# box = [0.25, 0.1, 0.3, 0.6]\n',
}


def _list_example(name: str, table: type[BaseModel]) -> str:
    """A list of tables ([[regions]], [[cameras]]) is empty by default: its keys, then a commented example."""
    keys = "".join(f"#   {key}: {' '.join((field.description or '').split())}\n"
                   for key, field in table.model_fields.items() if key not in ("regions", "motion"))
    return _comment(table.__doc__ or "") + f"# keys of [[{name}]]:\n{keys}{LIST_EXAMPLES[name]}"


def _comment(text: str) -> str:
    text = " ".join(text.split())
    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 100)) if text else ""


def toml_value(value: object) -> str:
    """A scalar as TOML writes it: true, 5, 0.5, "text"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'
    return repr(value)
