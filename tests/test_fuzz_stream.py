"""Fuzzing the HTTP MJPEG camera reader: a loopback camera whose every connection plays a drawn script of
valid, corrupt, truncated and garbage parts, huge or missing boundaries, stalls mid-frame and early closes.

The property: the reader (LiveSource over OpenCV's FFmpeg backend, in a worker process so that a crash in
FFmpeg shows as a failed example) never raises; every frame it hands over is uint8 HxWx3; a stream that
opens with a valid frame delivers frames; a connection that ends or stalls is counted as a reconnect; and
close() returns within its bound. Each example runs the source for about a second.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from conftest import Worker, fuzz_examples  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

RUN_S, READ_TIMEOUT_S, OPEN_TIMEOUT_S = 1.2, 0.4, 1.0
JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), (40, 90, 200), np.uint8))[1].tobytes()

WORKER = r"""
import json, sys, time
import numpy as np
from edge.live.capture import SourceOptions, open_source

for line in sys.stdin:
    url, run_s, read_timeout, open_timeout = json.loads(line)
    states, frames, bad = [], 0, []
    try:
        options = SourceOptions(url, open_timeout=open_timeout, read_timeout=read_timeout, backoff_min=0.05,
                                backoff_max=0.2)
        source = open_source(options, on_state=lambda status: states.append(status.state))
        start = time.monotonic()
        while time.monotonic() - start < run_s:
            frame = source.read(0.05)
            if frame is not None:
                frames += 1
                image = frame.image
                if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
                    bad.append(f"{image.dtype} {image.shape}")
        status = source.status()
        closing = time.monotonic()
        source.close()
        reply = {"frames": frames, "bad": bad, "states": sorted(set(states)), "produced": status.frames,
                 "reconnects": status.reconnects, "close_s": time.monotonic() - closing}
    except BaseException as error:
        reply = {"exception": f"{type(error).__name__}: {error}"}
    print(json.dumps(reply), flush=True)
"""

# --- the camera --------------------------------------------------------------------------------------

parts = st.one_of(
    st.tuples(st.just("frame")),
    st.tuples(st.just("corrupt"), st.lists(st.tuples(st.integers(0, len(JPEG) - 1), st.integers(1, 255)),
                                           min_size=1, max_size=10)),
    st.tuples(st.just("truncated"), st.integers(0, len(JPEG) - 1)),
    st.tuples(st.just("garbage"), st.binary(max_size=2000)),
    st.tuples(st.just("no-length")),
    st.tuples(st.just("lying-length"), st.integers(0, 10**9)),
    st.tuples(st.just("stall"), st.floats(0.05, 1.5)),
)
scripts = st.fixed_dictionaries({
    "boundary": st.one_of(st.just("frame"), st.just(None), st.text("abcXYZ019-_", min_size=1, max_size=70),
                          st.just("b" * 20000)),
    "content_type": st.sampled_from(["multipart/x-mixed-replace", "multipart/x-mixed-replace", "image/jpeg",
                                     "text/html", None]),
    "parts": st.one_of(st.lists(parts, min_size=1, max_size=12),
                       st.lists(parts, max_size=9).map(lambda rest: [("frame",)] * 3 + rest)),
    "repeat": st.integers(1, 20),
})


def render(part: tuple, boundary: str) -> tuple[bytes, float]:
    """(bytes to send, seconds to stall after them) for one part of a script."""
    kind = part[0]
    head = f"--{boundary}\r\nContent-Type: image/jpeg\r\n".encode()
    if kind == "frame":
        return head + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG + b"\r\n", 0.0
    if kind == "corrupt":
        flips = dict(part[1])
        jpeg = bytes(b ^ flips.get(i, 0) for i, b in enumerate(JPEG))
        return head + b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n", 0.0
    if kind == "truncated":  # a frame cut short, then the next part goes on as if it were complete
        return head + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG[:part[1]], 0.0
    if kind == "garbage":
        return part[1], 0.0
    if kind == "no-length":
        return head + b"\r\n" + JPEG + b"\r\n", 0.0
    if kind == "lying-length":
        return head + b"Content-Length: %d\r\n\r\n" % part[1] + JPEG + b"\r\n", 0.0
    return head + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG[:len(JPEG) // 2], part[1]  # stall mid-frame


class ScriptedCamera:
    """A loopback HTTP camera: every connection plays `script` and closes (a camera that drops out)."""

    def __init__(self) -> None:
        self.script: dict[str, Any] = {}
        self.stopping = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                script = camera.script
                boundary = script["boundary"] or "frame"
                kind = script["content_type"]
                self.send_response(200)
                if kind is not None:
                    multipart = script["boundary"] and kind.startswith("multi")
                    self.send_header("Content-Type", kind + (f"; boundary={script['boundary']}" if multipart else ""))
                self.end_headers()
                try:
                    for _ in range(script["repeat"]):
                        for part in script["parts"]:
                            data, stall = render(part, boundary)
                            self.wfile.write(data)
                            self.wfile.flush()
                            if camera.stopping.wait(stall + 0.02):
                                return
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class StreamWorker(Worker):
    """A worker process reading the camera's stream for a while, one run at a time."""

    def __init__(self) -> None:
        super().__init__(WORKER)

    def run(self, url: str, run_s: float = RUN_S) -> dict[str, Any]:
        request = json.dumps([url, run_s, READ_TIMEOUT_S, OPEN_TIMEOUT_S])
        return self.ask(request, run_s + READ_TIMEOUT_S + OPEN_TIMEOUT_S + 20)


@pytest.fixture(scope="module")
def camera():
    server = ScriptedCamera()
    yield server
    server.close()


@pytest.fixture(scope="module")
def worker():
    process = StreamWorker()
    yield process
    process.close()


def check(reply: dict[str, Any], script: dict[str, Any]) -> None:
    """The property."""
    assert "crash" not in reply, f"the reader's process died ({reply['crash']})"
    assert "exception" not in reply, reply["exception"]
    assert reply["bad"] == [], reply["bad"]
    assert reply["close_s"] < READ_TIMEOUT_S + OPEN_TIMEOUT_S + 1.5, reply
    assert reply["frames"] <= reply["produced"], reply
    assert set(reply["states"]) <= {"connecting", "streaming", "reconnecting", "closed"}, reply
    proper = script["boundary"] is not None and script["content_type"] == "multipart/x-mixed-replace"
    if proper and script["parts"][:3] == [("frame",)] * 3:  # FFmpeg's probe may take the first frames
        assert reply["frames"] > 0, f"a stream that opens with valid frames delivered none: {reply}"
    if reply["frames"] > 0 and "reconnecting" in reply["states"]:
        assert reply["reconnects"] >= 0


@settings(max_examples=fuzz_examples(12), suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(script=scripts)
@example(script={"boundary": "frame", "content_type": "multipart/x-mixed-replace", "parts": [("frame",)],
                 "repeat": 1})  # one frame, then the camera hangs up: FFmpeg's probe takes it
@example(script={"boundary": "frame", "content_type": "multipart/x-mixed-replace", "parts": [("frame",)] * 3
                 + [("stall", 1.5)], "repeat": 1})  # stalls mid-frame: the read timeout reconnects
@example(script={"boundary": "b" * 20000, "content_type": "multipart/x-mixed-replace", "parts": [("frame",)],
                 "repeat": 20})
@example(script={"boundary": None, "content_type": "image/jpeg", "parts": [("garbage", b"\xff" * 2000)],
                 "repeat": 5})
def test_the_stream_reader_never_fails(script: dict[str, Any], camera: ScriptedCamera, worker: Worker) -> None:
    camera.script = script
    check(worker.run(camera.url), script)


def test_a_stall_mid_frame_is_a_counted_reconnect_and_frames_come_back(camera: ScriptedCamera,
                                                                         worker: Worker) -> None:
    camera.script = {"boundary": "frame", "content_type": "multipart/x-mixed-replace",
                     "parts": [("frame",)] * 20 + [("stall", 0.8)], "repeat": 1}
    started = time.monotonic()
    reply = worker.run(camera.url, run_s=3.0)
    check(reply, camera.script)
    assert reply["reconnects"] >= 1 and "reconnecting" in reply["states"], reply
    assert reply["frames"] >= 2, reply
    assert time.monotonic() - started < 3.0 + 5


@pytest.mark.parametrize("bad", [("garbage", b"\x00\xff" * 300), ("truncated", 200)])
def test_a_broken_part_is_a_counted_reconnect_and_frames_keep_coming(bad: tuple, camera: ScriptedCamera,
                                                                       worker: Worker) -> None:
    """FFmpeg gives up on the connection at a broken part: the reader counts a reconnect and goes on."""
    camera.script = {"boundary": "frame", "content_type": "multipart/x-mixed-replace",
                     "parts": [("frame",)] * 5 + [bad] + [("frame",)] * 5, "repeat": 10}
    reply = worker.run(camera.url, run_s=2.0)
    check(reply, camera.script)
    assert reply["reconnects"] >= 2 and reply["frames"] >= 20, reply
