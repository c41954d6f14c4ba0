"""Frame sources chosen by URI, each read with `read(timeout) -> Frame | None`.

Playback sources (a video file, a folder of images) hand over every frame, paced at their own rate
or as fast as possible. Live sources (cameras, network streams, GStreamer, Picamera2) run a grabber
thread that keeps only the newest frame: older unread frames are dropped and counted, so the consumer
never works on a stale frame. A live source that fails or stalls reconnects with exponential backoff
and reports it through `status()` and an optional state callback; it never raises after opening.

A returned `Frame.image` stays valid until the next `read()`: its buffer is reused after that.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.core.decode import imread
from edge.errors import EdgerecError

IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .bmp .webp .tif .tiff .ppm .pgm .pbm .pnm .jp2 .avif .gif".split()
)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
DECODE_SCALES = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip
"""decode_scale -> the cv2.imdecode flag: libjpeg decodes 1/2, 1/4 or 1/8 of each side, skipping the work."""
BAD_PACKETS = 3  # MJPEG packets in a row that do not decode before the stream counts as failed

SOURCE_HELP = """\
sources (--source):
  0, 1, ...                 camera by index (V4L2 on Linux); --width/--height/--fps are requests, MJPG is
                            asked for unless --no-mjpg; --decode-scale 2 decodes its MJPG at half size
  /dev/video0               camera by device path
  clip.mp4                  a video file, paced at its own frame rate (--as-fast-as-possible for batch work)
  photos/                   a folder of images in name order, at --fps if given, else as fast as possible
  photo.jpg                 one image: a single frame, or repeated with --loop (at --fps if given)
  rtsp://cam.local:554/s1   an RTSP stream (also rtsps://, rtmp://)
  http://cam.local/mjpg     an HTTP(S) MJPEG stream, e.g. an IP camera's multipart/x-mixed-replace URL
                            (--decode-scale 2, 4 or 8 decodes it at a fraction of its size)
  'gst:v4l2src ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1'
                            a GStreamer pipeline ending in appsink (OpenCV built with GStreamer), quoted;
                            Jetson CSI camera: 'gst:nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,
                            height=720 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert !
                            video/x-raw,format=BGR ! appsink drop=1' (one line)
  picamera2                 the Raspberry Pi camera through the picamera2 module (picamera2:1 = camera 1)
  demo                      a 17 s clip of five real photos shipped with edgerec
live sources (cameras, streams, GStreamer, picamera2) keep only the newest frame and reconnect on failure"""


@dataclass(frozen=True)
class SourceOptions:
    uri: str
    """What to read; see SOURCE_HELP."""
    width: int | None = None
    """Camera: requested frame width (the camera may pick the nearest it supports)."""
    height: int | None = None
    """Camera: requested frame height."""
    fps: float | None = None
    """Camera: requested frame rate. Video file: playback rate instead of the file's. Folder: its rate."""
    mjpg: bool = True
    """V4L2 camera: ask for MJPG, which gives USB cameras full frame rate at high resolutions."""
    paced: bool = True
    """Video file / folder: play at the frame rate; False reads as fast as possible."""
    loop: bool = False
    """Video file / folder: start again at the end instead of ending."""
    open_timeout: float = 10.0
    """Network stream: seconds to wait for a connection."""
    read_timeout: float = 5.0
    """Network stream: seconds without a frame before the source counts as stalled and reconnects."""
    backoff_min: float = 0.5
    """Live source: first wait before reconnecting, doubled after each failure."""
    backoff_max: float = 30.0
    """Live source: longest wait between reconnect attempts."""
    decode_scale: int = 1
    """V4L2 camera or network stream sending MJPEG: decode each JPEG at 1/2, 1/4 or 1/8 of its width and height
    (libjpeg's reduced decoding: less CPU for a camera with more pixels than the model needs). Every sink gets
    the smaller frames too. 1: full size, through OpenCV's own decoding."""

    def __post_init__(self) -> None:
        if self.decode_scale not in DECODE_SCALES:
            raise EdgerecError(f"source decode_scale {self.decode_scale} is not one of 1, 2, 4, 8")
        problem = decode_scale_problem(self.uri, self.mjpg, self.decode_scale)
        if problem:
            raise EdgerecError(f"source decode_scale {self.decode_scale}: {problem}")
        for name in ("width", "height", "fps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise EdgerecError(f"source {name} {value} is not positive; valid: a number > 0")
        for name in ("open_timeout", "read_timeout", "backoff_min", "backoff_max"):
            if getattr(self, name) <= 0:
                raise EdgerecError(f"source {name} {getattr(self, name)} is not positive; valid: seconds > 0")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    """BGR uint8 [H, W, 3]; valid until the next read() (the buffer is reused)."""
    index: int
    """0-based position in everything the source produced, dropped frames included."""
    captured: float
    """time.monotonic() when the frame arrived from the camera, stream or decoder."""


@dataclass(frozen=True)
class SourceStatus:
    state: str
    """"connecting", "streaming", "reconnecting", "ended" or "closed"."""
    frames: int
    """Frames the source produced (read by the consumer or dropped)."""
    dropped: int
    """Live source: frames replaced by a newer one before the consumer read them."""
    skipped: int
    """Folder: images that could not be decoded."""
    reconnects: int
    """Live source: connection attempts after the first."""
    error: str
    """The last failure, "" if none."""
    camera: str = ""
    """The camera it belongs to, when a run with several cameras reports it ("" otherwise)."""


StateCallback = Callable[[SourceStatus], None]


class Source(Protocol):
    live: bool
    fps: float | None
    """Nominal frame rate (reported by the file or camera, or requested); None when unknown."""

    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None when none arrived within `timeout` seconds or the source ended."""

    @property
    def ended(self) -> bool:
        """True once a playback source is past its end (never for live sources)."""

    def status(self) -> SourceStatus: ...

    def close(self) -> None: ...


def is_live(uri: str) -> bool:
    """Whether `uri` names a live source (camera, stream, GStreamer, Picamera2) rather than a file or folder."""
    return (uri.isdigit() or uri.startswith(("/dev/video", "gst:")) or uri.lower().startswith(STREAM_SCHEMES)
            or uri == "picamera2" or uri.startswith("picamera2:"))


def open_source(options: SourceOptions, on_state: StateCallback | None = None) -> Source:
    """Open the source `options.uri` names; an impossible URI raises EdgerecError right away."""
    uri = options.uri
    if uri.isdigit() or uri.startswith("/dev/video"):
        return LiveSource(uri, functools.partial(_open_camera, uri, options), options, on_state)
    if uri.lower().startswith(STREAM_SCHEMES):
        return LiveSource(uri, functools.partial(_open_stream, uri, options), options, on_state)
    if uri.startswith("gst:"):
        _require_gstreamer(uri)
        return LiveSource(uri, functools.partial(_open_gstreamer, uri[4:]), options, on_state)
    if uri == "picamera2" or uri.startswith("picamera2:"):
        return LiveSource(uri, _picamera2_opener(uri, options), options, on_state)
    if uri == "demo":
        return VideoFileSource(demo_clip(), options, on_state)
    path = Path(uri)
    if path.is_dir():
        return FolderSource(path, options, on_state)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES - {".gif"}:
        return StillSource(_read_image(path), options, on_state)
    if path.is_file():
        return VideoFileSource(path, options, on_state)
    raise EdgerecError(
        f"source {uri!r} is neither a camera index, /dev/videoN, an existing video file, image or folder, "
        "rtsp://, rtmp://, http(s)://, gst:PIPELINE, picamera2 nor demo"
    )


def decode_scale_problem(uri: str, mjpg: bool, scale: int) -> str | None:
    """What is wrong with decode_scale `scale` for source `uri` (None: nothing), said after the key: above 1 it
    needs MJPEG frames, from a V4L2 camera asked for MJPG or from a network stream."""
    if scale == 1:
        return None
    camera = uri.isdigit() or uri.startswith("/dev/video")
    if not camera and not uri.lower().startswith(STREAM_SCHEMES):
        return (f"must be 1 for source {uri!r}: above 1 it applies to V4L2 cameras and network streams sending "
                "MJPEG only")
    if camera and not mjpg:
        return "must be 1 while mjpg is off: above 1 it scales the camera's MJPG frames"
    return None


def demo_clip() -> Path:
    """The short real-photo clip shipped in the package (edge/assets/demo/LICENSE-NOTE.md says what it shows)."""
    path = Path(str(resources.files("edge") / "assets" / "demo" / "demo.mp4"))
    if not path.is_file():
        raise EdgerecError(f"source 'demo': {path} is missing; this installation has no demo clip")
    return path


# --- live sources: a grabber thread keeps only the newest frame -------------------------------------


class Reader(Protocol):
    """One open connection to a live source."""

    fps: float | None

    def read(self, out: np.ndarray | None) -> np.ndarray | None:
        """The next frame, written into `out` when its shape fits; None on failure or timeout."""

    def close(self) -> None: ...


class LiveSource:
    """Grabber thread + newest-frame slot (triple buffer) + reconnect with exponential backoff."""

    live = True
    ended = False

    def __init__(
        self, uri: str, opener: Callable[[], Reader], options: SourceOptions, on_state: StateCallback | None
    ) -> None:
        self.uri, self.fps, self.options = uri, options.fps, options
        self._opener, self._on_state = opener, on_state
        self.on_frame: Callable[[], None] | None = None
        """Called on the grabber thread after each new frame (a frame loop watching several cameras)."""
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._back: np.ndarray | None = None  # the grabber decodes into this
        self._slot: np.ndarray | None = None  # newest complete frame
        self._front: np.ndarray | None = None  # the consumer's current frame
        self._slot_index, self._slot_time, self._fresh = -1, 0.0, False
        self._frames = self._dropped = self._reconnects = 0
        self._state, self._error = "connecting", ""
        self._thread = threading.Thread(target=self._grab_loop, name=f"edgerec-grab {uri}", daemon=True)
        self._thread.start()

    def read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._fresh and not self._closing.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    return None
            if not self._fresh:
                return None
            self._front, self._slot = self._slot, self._front
            self._fresh = False
            return Frame(self._front, self._slot_index, self._slot_time)

    def status(self) -> SourceStatus:
        with self._cond:
            return SourceStatus(self._state, self._frames, self._dropped, 0, self._reconnects, self._error)

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=self.options.read_timeout + self.options.open_timeout + 1.0)
        self._set_state("closed", self._error)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _grab_loop(self) -> None:
        backoff = self.options.backoff_min
        while not self._closing.is_set():
            error = self._session()
            if self._closing.is_set():
                return
            if error is None:  # frames flowed before the failure: retry soon
                backoff = self.options.backoff_min
                error = f"the stream ended or stalled (no frame within {self.options.read_timeout:g} s)"
            self._set_state("reconnecting", f"{self.uri}: {error}; retrying in {backoff:g} s")
            if self._closing.wait(backoff):
                return
            backoff = min(backoff * 2, self.options.backoff_max)
            with self._cond:
                self._reconnects += 1

    def _session(self) -> str | None:
        """Open, then pump frames until failure; the error text if nothing flowed, else None."""
        try:
            reader = self._opener()
        except Exception as error:  # whatever a driver raises, a live source retries
            return str(error) or type(error).__name__
        try:
            return self._pump(reader)
        except Exception as error:
            return f"read failed: {error or type(error).__name__}"
        finally:
            _close_quietly(reader)

    def _pump(self, reader: Reader) -> str | None:
        if reader.fps and not self.fps:
            self.fps = reader.fps
        flowed = False
        while not self._closing.is_set():
            image = reader.read(self._back)
            if image is None:
                return None if flowed else "opened but delivered no frame"
            self._publish(image, time.monotonic())
            if not flowed:
                flowed = True
                self._set_state("streaming", "")
        return None

    def _publish(self, image: np.ndarray, captured: float) -> None:
        with self._cond:
            if self._fresh:
                self._dropped += 1
            self._back, self._slot = self._slot, image
            self._slot_index, self._slot_time, self._fresh = self._frames, captured, True
            self._frames += 1
            self._cond.notify()
        if self.on_frame is not None:
            self.on_frame()

    def _set_state(self, state: str, error: str) -> None:
        with self._cond:
            self._state, self._error = state, error
        if self._on_state is not None:
            self._on_state(self.status())


def _close_quietly(reader: Reader) -> None:
    try:
        reader.close()
    except Exception:  # a device that failed may fail to close too; the next session opens afresh
        pass


class _CvReader:
    def __init__(self, capture: cv2.VideoCapture, what: str) -> None:
        if not capture.isOpened():
            capture.release()
            raise EdgerecError(f"cannot open {what}")
        self.capture = capture
        self.fps = capture.get(cv2.CAP_PROP_FPS) or None

    def read(self, out: np.ndarray | None) -> np.ndarray | None:
        ok, image = self.capture.read(out)
        return image if ok else None

    def close(self) -> None:
        self.capture.release()


class _JpegReader(_CvReader):
    """A capture that hands over each frame's JPEG bytes (raw mode), decoded here at a reduced size."""

    def __init__(self, capture: cv2.VideoCapture, what: str, scale: int) -> None:
        super().__init__(capture, what)
        self.flags = DECODE_SCALES[scale]

    def read(self, out: np.ndarray | None) -> np.ndarray | None:
        """The next frame that decodes (cv2.imdecode cannot write into `out`: a new array each frame); None when
        the capture fails or BAD_PACKETS packets in a row do not decode."""
        for _ in range(BAD_PACKETS):
            ok, packet = self.capture.read()
            if not ok:
                return None
            image = cv2.imdecode(packet, self.flags) if packet.size else None
            if image is not None:
                return image
        return None


def _fourcc(capture: cv2.VideoCapture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> shift) & 0xFF) for shift in (0, 8, 16, 24)).strip("\x00 ") or "unknown"


def _jpeg_reader(capture: cv2.VideoCapture, what: str, options: SourceOptions, raw: tuple[int, float]) -> Reader:
    """`capture` switched to raw frames (`raw`: the property and value that do it for its backend) and decoded
    at `options.decode_scale`; an EdgerecError when it did not open or does not send MJPEG."""
    if capture.isOpened():
        fourcc = _fourcc(capture)
        if fourcc != "MJPG" or not capture.set(*raw):
            capture.release()
            raise EdgerecError(f"{what} sends {fourcc}, not MJPEG frames OpenCV can hand over undecoded; "
                               f"decode_scale {options.decode_scale} needs them (set decode_scale = 1)")
    return _JpegReader(capture, what, options.decode_scale)


def _open_camera(uri: str, options: SourceOptions) -> Reader:
    target: int | str = int(uri) if uri.isdigit() else uri
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    capture = cv2.VideoCapture(target, api)
    if capture.isOpened():  # V4L2 wants the pixel format before the size, the size before the rate
        if options.mjpg:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, options.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, options.height),
            (cv2.CAP_PROP_FPS, options.fps),
            (cv2.CAP_PROP_READ_TIMEOUT_MSEC, options.read_timeout * 1000),  # where the backend has one
        ):
            if value:
                capture.set(prop, value)
    if options.decode_scale > 1:  # V4L2 hands over the JPEG bytes when it does not convert to BGR
        return _jpeg_reader(capture, f"camera {uri}", options, (cv2.CAP_PROP_CONVERT_RGB, 0))
    return _CvReader(capture, f"camera {uri}")


def _open_stream(uri: str, options: SourceOptions) -> Reader:
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout * 1000),
    ]  # fmt: skip
    capture = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
    if options.decode_scale > 1:  # FFmpeg hands over the packets undecoded in its raw mode
        return _jpeg_reader(capture, f"stream {uri}", options, (cv2.CAP_PROP_FORMAT, -1))
    return _CvReader(capture, f"stream {uri}")


def _open_gstreamer(pipeline: str) -> Reader:
    return _CvReader(cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER), f"GStreamer pipeline {pipeline!r}")


@functools.cache
def _opencv_has(feature: str) -> bool:
    return re.search(rf"^\s*{feature}:\s*YES", cv2.getBuildInformation(), re.MULTILINE) is not None


def _require_gstreamer(uri: str) -> None:
    if not _opencv_has("GStreamer"):
        raise EdgerecError(
            f"source {uri!r} needs OpenCV built with GStreamer, and this OpenCV {cv2.__version__} has none "
            "(cv2.getBuildInformation() says GStreamer: NO); use the distribution's python3-opencv, "
            "e.g. JetPack's, in a venv with --system-site-packages"
        )


class _Picamera2Reader:
    def __init__(self, camera: object, fps: float | None) -> None:
        self.camera, self.fps = camera, fps

    def read(self, out: np.ndarray | None) -> np.ndarray | None:
        return self.camera.capture_array("main")  # "RGB888" is B, G, R in memory: OpenCV order

    def close(self) -> None:
        self.camera.stop()
        self.camera.close()


def _picamera2_opener(uri: str, options: SourceOptions) -> Callable[[], Reader]:
    number = uri.partition(":")[2] or "0"
    if not number.isdigit():
        raise EdgerecError(f"source {uri!r}: the camera number after 'picamera2:' must be an integer")
    try:
        from picamera2 import Picamera2
    except ImportError as error:
        raise EdgerecError(
            f"source {uri!r} needs the picamera2 module, which does not import here ({error}); on "
            "Raspberry Pi OS: sudo apt install python3-picamera2 and a venv with --system-site-packages"
        ) from None

    def open_camera() -> Reader:
        camera = Picamera2(int(number))
        size = (options.width or 640, options.height or 480)
        controls = {"FrameRate": options.fps} if options.fps else {}
        camera.configure(
            camera.create_video_configuration(main={"size": size, "format": "RGB888"}, controls=controls)
        )
        camera.start()
        return _Picamera2Reader(camera, options.fps)

    return open_camera


# --- playback sources: every frame, paced or as fast as possible -------------------------------------


class _Playback:
    """Pacing, looping and counting shared by the video file and folder sources."""

    live = False

    def __init__(self, fps: float | None, options: SourceOptions, on_state: StateCallback | None) -> None:
        self.fps, self.options, self._on_state = fps, options, on_state
        self._period = 1.0 / fps if options.paced and fps else 0.0
        self._due = 0.0
        self._frames = self._skipped = 0
        self._state, self._error = "streaming", ""
        self.ended = False

    def read(self, timeout: float) -> Frame | None:
        if self.ended or not self._wait_until_due(timeout):
            return None
        image = self._next_image()
        if image is None and self.options.loop and self._frames > 0:
            self._rewind()
            image = self._next_image()
        if image is None:
            self.ended = True
            self._set_state("ended")
            return None
        frame = Frame(image, self._frames, time.monotonic())
        self._frames += 1
        return frame

    def status(self) -> SourceStatus:
        return SourceStatus(self._state, self._frames, 0, self._skipped, 0, self._error)

    def next_in(self) -> float:
        """Seconds until the next frame is due (0 when one is, or when reading as fast as possible)."""
        return max(0.0, self._due - time.monotonic()) if self._period and self._due else 0.0

    def __enter__(self) -> _Playback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._set_state("closed")

    def _wait_until_due(self, timeout: float) -> bool:
        if not self._period:
            return True
        now = time.monotonic()
        if self._due == 0.0 or self._due < now - self._period:  # start, or too far behind to catch up
            self._due = now
        wait = self._due - now
        if wait > timeout:
            time.sleep(timeout)
            return False
        if wait > 0:
            time.sleep(wait)
        self._due += self._period
        return True

    def _set_state(self, state: str) -> None:
        self._state = state
        if self._on_state is not None:
            self._on_state(self.status())

    def _next_image(self) -> np.ndarray | None:
        raise NotImplementedError

    def _rewind(self) -> None:
        raise NotImplementedError


class VideoFileSource(_Playback):
    """A video file decoded by OpenCV (FFMPEG where available) into one reused buffer."""

    def __init__(self, path: Path, options: SourceOptions, on_state: StateCallback | None = None) -> None:
        self.path = path
        self._capture = self._open()
        file_fps = self._capture.get(cv2.CAP_PROP_FPS)
        super().__init__(options.fps or (file_fps if file_fps > 0 else None), options, on_state)
        self._buffer: np.ndarray | None = None

    def close(self) -> None:
        self._capture.release()
        super().close()

    def _open(self) -> cv2.VideoCapture:
        api = cv2.CAP_FFMPEG if _opencv_has("FFMPEG") else cv2.CAP_ANY
        capture = cv2.VideoCapture(str(self.path), api)
        if not capture.isOpened():
            raise EdgerecError(f"cannot read video file {self.path}: OpenCV cannot open it as a video")
        return capture

    def _next_image(self) -> np.ndarray | None:
        ok, image = self._capture.read(self._buffer)
        if not ok:
            return None
        self._buffer = image
        return image

    def _rewind(self) -> None:
        self._capture.release()
        self._capture = self._open()


class FolderSource(_Playback):
    """Images of a folder in name order; an image that does not decode is skipped and counted."""

    def __init__(self, path: Path, options: SourceOptions, on_state: StateCallback | None = None) -> None:
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise EdgerecError(f"folder {path} has no images; valid: files ending in {_suffix_list()}")
        super().__init__(options.fps, options, on_state)
        self._position = 0

    def _next_image(self) -> np.ndarray | None:
        while self._position < len(self.files):
            file = self.files[self._position]
            self._position += 1
            image = imread(file)
            if image is not None:
                return image
            self._skipped += 1
            self._error = f"cannot decode {file}"
        return None

    def _rewind(self) -> None:
        self._position = 0


class StillSource(_Playback):
    """One image as a frame: once, or over and over with `loop` (a photo; benchmarks at a frame size).

    Each read hands over a fresh copy in one reused buffer, so drawing on a frame never reaches the next.
    """

    def __init__(self, image: np.ndarray, options: SourceOptions, on_state: StateCallback | None = None) -> None:
        super().__init__(options.fps, options, on_state)
        self.image = image
        self._buffer = np.empty_like(image)
        self._given = False

    def _next_image(self) -> np.ndarray | None:
        if self._given:
            return None
        self._given = True
        np.copyto(self._buffer, self.image)
        return self._buffer

    def _rewind(self) -> None:
        self._given = False


def _read_image(path: Path) -> np.ndarray:
    image = imread(path)
    if image is None:
        raise EdgerecError(f"cannot read image {path}: OpenCV cannot decode it")
    return image


def _suffix_list() -> str:
    return " ".join(sorted(IMAGE_SUFFIXES))
