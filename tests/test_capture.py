import functools
import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_server import MjpegServer

from edge.errors import EdgerecError
from edge.live.capture import FolderSource, LiveSource, SourceOptions, StillSource, VideoFileSource, open_source

LEVELS = [10 * i + 20 for i in range(12)]  # one flat grey level per frame


def write_video(path: Path, levels: list[int], fps: float = 25.0, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    writer.release()
    return path


def read_all(source, limit: int = 1000) -> list:
    frames = []
    while not source.ended and len(frames) < limit:
        frame = source.read(timeout=1.0)
        if frame is not None:
            frames.append((frame.index, frame.captured, int(frame.image.mean().round()), frame.image.shape))
    return frames


def test_video_file_hands_over_every_frame_in_order(tmp_path):
    path = write_video(tmp_path / "clip.mp4", LEVELS)
    with open_source(SourceOptions(str(path), paced=False)) as source:
        assert isinstance(source, VideoFileSource) and not source.live
        assert source.fps == pytest.approx(25.0)
        frames = read_all(source)
        assert source.read(timeout=0.1) is None
        assert source.status().state == "ended" and source.status().frames == len(LEVELS)
    assert [f[0] for f in frames] == list(range(len(LEVELS)))
    assert [f[2] for f in frames] == pytest.approx(LEVELS, abs=5)
    assert {f[3] for f in frames} == {(48, 64, 3)}


def test_video_file_is_paced_at_its_frame_rate_unless_asked_otherwise(tmp_path):
    path = write_video(tmp_path / "clip.mp4", LEVELS, fps=50.0)
    elapsed = {}
    for paced in (True, False):
        with open_source(SourceOptions(str(path), paced=paced)) as source:
            start = time.monotonic()
            assert len(read_all(source)) == len(LEVELS)
            elapsed[paced] = time.monotonic() - start
    assert elapsed[True] >= (len(LEVELS) - 1) / 50.0 * 0.95
    assert elapsed[False] < elapsed[True] / 2


def test_paced_read_returns_none_when_the_next_frame_is_not_due_yet(tmp_path):
    path = write_video(tmp_path / "clip.mp4", LEVELS, fps=5.0)
    with open_source(SourceOptions(str(path))) as source:
        assert source.read(timeout=0.01) is not None
        assert source.read(timeout=0.01) is None  # due in 0.2 s
        assert source.read(timeout=0.5).index == 1


def test_video_file_loops_with_increasing_indices(tmp_path):
    path = write_video(tmp_path / "clip.mp4", LEVELS)
    with open_source(SourceOptions(str(path), paced=False, loop=True)) as source:
        frames = read_all(source, limit=3 * len(LEVELS))
        assert not source.ended
    assert [f[0] for f in frames] == list(range(3 * len(LEVELS)))
    assert [f[2] for f in frames] == pytest.approx(LEVELS * 3, abs=5)


def test_video_file_reuses_one_buffer(tmp_path):
    path = write_video(tmp_path / "clip.mp4", LEVELS)
    with open_source(SourceOptions(str(path), paced=False)) as source:
        addresses = {source.read(1.0).image.ctypes.data for _ in range(5)}
    assert len(addresses) == 1


def test_folder_plays_images_in_name_order_and_skips_what_does_not_decode(tmp_path):
    for i, level in enumerate(LEVELS[:4]):
        cv2.imwrite(str(tmp_path / f"img{i:02d}.png"), np.full((30 + i, 40, 3), level, np.uint8))
    (tmp_path / "img02b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with open_source(SourceOptions(str(tmp_path), paced=False)) as source:
        assert isinstance(source, FolderSource)
        frames = read_all(source)
        status = source.status()
    assert [f[2] for f in frames] == LEVELS[:4]
    assert [f[3][0] for f in frames] == [30, 31, 32, 33]
    assert status.skipped == 1 and "img02b.jpg" in status.error and status.state == "ended"


def test_an_image_file_is_one_frame_or_repeats_with_loop(tmp_path):
    cv2.imwrite(str(tmp_path / "photo.png"), np.full((30, 40, 3), 77, np.uint8))
    with open_source(SourceOptions(str(tmp_path / "photo.png"))) as source:
        assert isinstance(source, StillSource)
        assert [f[2] for f in read_all(source)] == [77]
    with open_source(SourceOptions(str(tmp_path / "photo.png"), loop=True, paced=False)) as source:
        first = source.read(1.0)
        first.image[:] = 0  # drawing on one frame
        frames = [first] + [source.read(1.0) for _ in range(3)]
        assert [f.index for f in frames] == [0, 1, 2, 3] and frames[3].image.mean() == 77


def test_an_image_opencv_cannot_decode_is_a_clear_error(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EdgerecError, match="photo.jpg"):
        open_source(SourceOptions(str(tmp_path / "photo.jpg")))


def test_folder_loops(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), LEVELS[i], np.uint8))
    with open_source(SourceOptions(str(tmp_path), paced=False, loop=True)) as source:
        frames = read_all(source, limit=7)
    assert [f[2] for f in frames] == [LEVELS[0], LEVELS[1], LEVELS[2]] * 2 + [LEVELS[0]]


@pytest.mark.parametrize(
    "uri,message",
    [
        ("no/such/clip.mp4", "neither a camera index"),
        ("ftp://host/x", "neither a camera index"),
        ("picamera2", "picamera2 module"),
        ("picamera2:x", "must be an integer"),
    ],
)
def test_impossible_sources_are_clear_errors(uri, message):
    with pytest.raises(EdgerecError, match=message):
        open_source(SourceOptions(uri))


def test_gstreamer_without_opencv_support_is_a_clear_error():
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(EdgerecError, match="GStreamer"):
        open_source(SourceOptions("gst:videotestsrc ! appsink"))


def test_a_file_opencv_cannot_decode_is_a_clear_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(EdgerecError, match="broken.mp4"):
        open_source(SourceOptions(str(tmp_path / "broken.mp4")))


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EdgerecError, match="has no images"):
        open_source(SourceOptions(str(tmp_path)))


def stream_options(url: str, **kw) -> SourceOptions:
    return SourceOptions(url, open_timeout=2.0, read_timeout=0.5, backoff_min=0.05, backoff_max=0.4, **kw)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("scale", [1, 2])
def test_http_mjpeg_stream_reconnects_after_the_camera_restarts(scale):
    camera = MjpegServer().start()
    states = []
    source = open_source(stream_options(camera.url, decode_scale=scale), on_state=lambda s: states.append(s.state))
    try:
        assert isinstance(source, LiveSource) and source.live
        before = [source.read(timeout=5.0) for _ in range(5)]
        assert all(f is not None for f in before) and before[0].image.shape == (120 // scale, 160 // scale, 3)
        camera.stop()
        wait_for(lambda: source.status().state == "reconnecting")
        assert source.read(timeout=0.3) is None  # nothing stale comes back while the camera is down
        time.sleep(0.5)  # a few failed attempts with backoff
        camera.start()
        after = [source.read(timeout=5.0) for _ in range(5)]
        status = source.status()
    finally:
        source.close()
        camera.stop()
    assert all(f is not None for f in after)
    indices = [f.index for f in before + after]
    assert indices == sorted(set(indices))
    assert status.state == "streaming" and status.reconnects >= 1
    changes = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert changes == ["streaming", "reconnecting", "streaming", "closed"]


@pytest.mark.parametrize("scale", [1, 2])
def test_http_mjpeg_stall_is_detected_by_the_read_timeout_and_recovered(scale):
    camera = MjpegServer().start()
    source = open_source(stream_options(camera.url, decode_scale=scale))
    try:
        assert source.read(timeout=5.0) is not None
        camera.paused.set()  # the connection stays open, no frames come
        wait_for(lambda: source.status().state == "reconnecting", timeout=5.0)
        assert "stalled" in source.status().error
        camera.paused.clear()
        wait_for(lambda: source.status().state == "streaming")
        assert source.read(timeout=5.0) is not None
    finally:
        source.close()
        camera.stop()


def test_slow_consumer_only_sees_the_newest_frame():
    camera = MjpegServer(fps=50).start()
    source = open_source(stream_options(camera.url))
    frames, ages = [], []
    try:
        assert source.read(timeout=5.0) is not None
        for _ in range(6):
            time.sleep(0.2)  # a slow consumer: 10 camera frames per read
            frame = source.read(timeout=5.0)
            ages.append(time.monotonic() - frame.captured)
            frames.append(frame.index)
        status = source.status()
    finally:
        source.close()
        camera.stop()
    assert frames == sorted(set(frames))
    assert min(b - a for a, b in zip(frames[:-1], frames[1:], strict=True)) >= 3
    assert max(ages) < 0.15  # a queued frame would be >= 0.2 s old
    assert status.dropped >= 5 * 3
    assert status.dropped + len(frames) + 1 <= status.frames <= status.dropped + len(frames) + 2


def test_read_never_returns_the_same_frame_twice():
    camera = MjpegServer(fps=20).start()
    source = open_source(stream_options(camera.url))
    try:
        indices = [source.read(timeout=5.0).index]
        for _ in range(40):  # polls 4x faster than the camera: most find nothing new
            frame = source.read(timeout=0.0)
            if frame is not None:
                indices.append(frame.index)
            time.sleep(0.0125)
        polls_without_frame = 40 - (len(indices) - 1)
    finally:
        source.close()
        camera.stop()
    assert indices == sorted(set(indices)) and len(indices) >= 5
    assert polls_without_frame >= 20


def test_close_stops_the_grabber_thread_while_reconnecting():
    source = open_source(stream_options("http://127.0.0.1:9/none.mjpg"))  # nothing listens on port 9
    wait_for(lambda: source.status().reconnects >= 2)
    assert source.read(timeout=0.1) is None
    source.close()
    assert not any(t.name.startswith("edgerec-grab") for t in threading.enumerate())
    assert source.status().state == "closed" and "cannot open" in source.status().error


class FlakyCamera:
    """Fails to open once, then delivers 3 frames per connection before its read raises."""

    def __init__(self) -> None:
        self.opens, self.fps = 0, None

    def open(self):
        self.opens += 1
        if self.opens == 1:
            raise RuntimeError("device busy")
        self.left = 3
        return self

    def read(self, out):
        if self.left == 0:
            raise cv2.error("driver hiccup")
        self.left -= 1
        time.sleep(0.005)
        return np.zeros((4, 4, 3), np.uint8)

    def close(self):
        raise OSError("already gone")


def test_a_live_source_survives_whatever_its_driver_raises():
    camera = FlakyCamera()
    source = LiveSource("flaky", camera.open, stream_options("flaky"), None)
    try:
        frames = [source.read(timeout=5.0) for _ in range(6)]
        status = source.status()
    finally:
        source.close()
    assert all(f is not None for f in frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert camera.opens >= 3 and status.reconnects >= 2


@pytest.mark.parametrize("scale", [2, 4])
def test_decode_scale_hands_over_a_mjpeg_streams_frames_decoded_at_a_fraction_of_their_size(scale):
    photo = cv2.resize(cv2.imread(str(Path(__file__).parent / "data" / "photos" / "chelsea.jpg")), (640, 480))
    camera = MjpegServer(fps=30, images=[photo]).start()
    source = open_source(stream_options(camera.url, decode_scale=scale))
    try:
        frame = source.read(timeout=5.0)
    finally:
        source.close()
        camera.stop()
    assert frame is not None and frame.image.shape == (480 // scale, 640 // scale, 3)
    full = cv2.imdecode(np.frombuffer(cv2.imencode(".jpg", photo)[1], np.uint8), cv2.IMREAD_COLOR)
    area = cv2.resize(full, (640 // scale, 480 // scale), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.image.astype(np.int16) - area).mean() < 4  # the same picture, smaller


def test_decode_scale_skips_a_damaged_jpeg_and_keeps_streaming():
    camera = MjpegServer(fps=50)
    camera._jpegs[1] = b"\xff\xd8 not a picture \xff\xd9"  # every second frame of the rotation is damaged
    camera._jpegs = camera._jpegs[:2]
    camera.start()
    source = open_source(stream_options(camera.url, decode_scale=2))
    try:
        frames = [source.read(timeout=5.0) for _ in range(10)]
        status = source.status()
    finally:
        source.close()
        camera.stop()
    assert all(f is not None and f.image.shape == (60, 80, 3) for f in frames)
    assert status.state == "streaming" and status.reconnects == 0


def test_decode_scale_on_a_stream_that_is_not_mjpeg_is_a_clear_error_and_retried(tmp_path):
    write_video(tmp_path / "clip.avi", LEVELS)  # MPEG-4 part 2, served over HTTP
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
    source = open_source(stream_options(url, decode_scale=2))
    try:
        wait_for(lambda: source.status().state == "reconnecting")
        error = source.status().error
    finally:
        source.close()
        server.shutdown()
        server.server_close()
    assert f"stream {url} sends " in error and "not MJPEG frames" in error and "set decode_scale = 1" in error


@pytest.mark.parametrize(("uri", "kw", "message"), [
    ("clip.mp4", {}, "must be 1 for source 'clip.mp4': above 1 it applies to V4L2 cameras and network streams"),
    ("demo", {}, "must be 1 for source 'demo'"),
    ("0", {"mjpg": False}, "must be 1 while mjpg is off"),
    ("http://cam/video.mjpg", {"decode_scale": 3}, "decode_scale 3 is not one of 1, 2, 4, 8"),
])  # fmt: skip
def test_decode_scale_where_it_cannot_apply_is_a_clear_error(uri, kw, message):
    with pytest.raises(EdgerecError, match=message.replace("(", r"\(")):
        SourceOptions(uri, **{"decode_scale": 2, **kw})
