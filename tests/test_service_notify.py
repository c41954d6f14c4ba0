"""edge.sinks.service against a real AF_UNIX datagram socket standing in for systemd's notify socket: the Notifier
alone, then ServiceSink inside the real frame loop."""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model

from edge.core.model import Model
from edge.errors import EdgerecError
from edge.live.capture import Frame, SourceOptions
from edge.loop.pipeline import RUN_MODEL, RunOptions, build_loop
from edge.sinks.service import Notifier, ServiceSink


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bind(address: str | bytes) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # as systemd does, to learn the sender's pid
    receiver.settimeout(2)
    return receiver


def received(receiver: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, without blocking."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        receiver.settimeout(2)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    receiver = bind(path)
    yield receiver, path
    receiver.close()


def test_ready_status_stopping(manager: tuple[socket.socket, str]) -> None:
    receiver, path = manager
    with Notifier({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready() and notifier.status("12.5 fps, fox squirrel 94%\nsecond line")
        assert notifier.extend_timeout(90) and notifier.stopping()
    assert received(receiver) == ["READY=1", "STATUS=12.5 fps, fox squirrel 94% second line",
                                  "EXTEND_TIMEOUT_USEC=90000000", "STOPPING=1"]


def test_watchdog_pings_once_per_half_interval(manager: tuple[socket.socket, str]) -> None:
    receiver, path = manager
    clock = FakeClock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}, clock=clock)
    assert notifier.watchdog_period == 15.0
    sent = [notifier.watchdog() for _ in range(1000)]  # a frame loop: the first call pings, the rest are free
    assert sent.count(True) == 1 and received(receiver) == ["WATCHDOG=1"]
    clock.now += 14.9
    assert not notifier.watchdog() and received(receiver) == []
    clock.now += 0.1
    assert notifier.watchdog() and not notifier.watchdog()
    assert received(receiver) == ["WATCHDOG=1"]


def test_watchdog_with_the_real_clock(manager: tuple[socket.socket, str]) -> None:
    receiver, path = manager
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})  # ping every 10 ms
    assert notifier.watchdog()
    threading.Event().wait(0.02)
    assert notifier.watchdog()
    assert received(receiver) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_no_watchdog_without_watchdog_usec(manager: tuple[socket.socket, str]) -> None:
    receiver, path = manager
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.watchdog_period is None and not notifier.watchdog()
    assert notifier.ready() and received(receiver) == ["READY=1"]


def test_abstract_namespace_socket() -> None:
    name = f"edgerec-test-{uuid.uuid4().hex}"
    receiver = bind(b"\0" + name.encode())
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"})
        assert notifier.ready() and notifier.watchdog()
        assert received(receiver) == ["READY=1", "WATCHDOG=1"]
    finally:
        receiver.close()


def test_no_socket_means_no_ops() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not any([notifier.ready(), notifier.watchdog(), notifier.status("x"), notifier.stopping()])
    notifier.close()


def test_watchdog_pid_of_another_process_disables_only_the_watchdog(manager: tuple[socket.socket, str]) -> None:
    receiver, path = manager
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_period is None and not other.watchdog()
    assert other.ready()
    ours = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog()
    assert received(receiver) == ["READY=1", "WATCHDOG=1"]


def test_pings_from_a_frame_thread_carry_the_main_pid(manager: tuple[socket.socket, str]) -> None:
    """NotifyAccess=main accepts only the main process: a frame loop in a thread still qualifies."""
    receiver, path = manager
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    thread = threading.Thread(target=notifier.watchdog)
    thread.start()
    thread.join()
    message, ancillary, _, _ = receiver.recvmsg(4096, socket.CMSG_SPACE(12))
    (level, kind, data), = ancillary
    assert (message, level, kind) == (b"WATCHDOG=1", socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    assert int.from_bytes(data[:4], sys.byteorder) == os.getpid()


def test_manager_gone_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled and not notifier.ready()


@pytest.mark.parametrize("environ, key", [
    ({"NOTIFY_SOCKET": "vsock:2:1234"}, "NOTIFY_SOCKET"),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"}, "WATCHDOG_USEC"),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "0"}, "WATCHDOG_USEC"),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, "WATCHDOG_PID"),
])
def test_malformed_environment_is_named(environ: dict[str, str], key: str) -> None:
    with pytest.raises(EdgerecError, match=key):
        Notifier(environ)


# ServiceSink in the real frame loop (edge.loop.pipeline.FrameLoop) with a tiny model and a scripted source.

class ScriptedSource:
    """`frames` frames 10 ms apart, then either the end (playback) or silence (a hung camera)."""

    live, fps = True, 100.0

    def __init__(self, frames: int, hangs: bool, on_hang: Callable[[], object] = lambda: None) -> None:
        self.frames, self.hangs, self.on_hang = frames, hangs, on_hang
        self.index, self.hung = 0, False
        self.image = np.full((48, 64, 3), (40, 40, 200), np.uint8)

    def read(self, timeout: float) -> Frame | None:
        if self.index < self.frames:
            time.sleep(0.01)
            self.index += 1
            return Frame(self.image, self.index - 1, time.monotonic())
        if self.hangs and not self.hung:
            self.hung = True
            self.on_hang()
        time.sleep(min(timeout, 0.02))
        return None

    @property
    def ended(self) -> bool:
        return not self.hangs and self.index >= self.frames

    def status(self) -> None: ...

    def close(self) -> None: ...


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return Model.load(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), "cpu", threads=1)


def frame_loop(model: Model, source: ScriptedSource, sink: ServiceSink, duration: float | None = None) -> str:
    options = RunOptions(SourceOptions("scripted"), display=False, duration=duration)
    return build_loop(options, {RUN_MODEL: model}, [source], [sink], threading.Event()).run().stopped_by


def test_service_sink_tells_systemd_ready_status_and_stopping(manager: tuple[socket.socket, str],
                                                              tiny: Model) -> None:
    receiver, path = manager
    sink = ServiceSink(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}))
    assert frame_loop(tiny, ScriptedSource(5, hangs=False), sink) == "end"
    sink.close()
    messages = received(receiver)
    assert messages[:2] == ["READY=1", "WATCHDOG=1"] and messages[-1] == "STOPPING=1"
    status = [m for m in messages if m.startswith("STATUS=")]
    assert len(status) == 1 and re.fullmatch(r"STATUS=\d+\.\d fps, red 100%, latency \d+ ms", status[0])


def test_pings_stop_when_frames_stop(manager: tuple[socket.socket, str], tiny: Model) -> None:
    """A camera that delivers 20 frames and then nothing: pings every 10 ms while frames flow, none after."""
    receiver, path = manager
    sink = ServiceSink(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}))
    while_flowing: list[str] = []
    source = ScriptedSource(20, hangs=True, on_hang=lambda: while_flowing.extend(received(receiver)))
    assert frame_loop(tiny, source, sink, duration=0.5) == "duration"
    assert while_flowing[0] == "READY=1" and while_flowing.count("WATCHDOG=1") >= 2
    assert "WATCHDOG=1" not in received(receiver)


def test_a_compiling_provider_asks_systemd_for_start_time(manager: tuple[socket.socket, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jetson's first start builds a TensorRT engine for minutes; TimeoutStartSec=60s must not kill it."""
    import onnxruntime as ort

    from edge.loop.pipeline import ENGINE_BUILD_S, ask_for_engine_build_time

    receiver, path = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not ask_for_engine_build_time("cuda") and not ask_for_engine_build_time("cpu")
    assert received(receiver) == []
    assert ask_for_engine_build_time("auto")  # auto picks TensorRT where it is available
    messages = received(receiver)
    assert messages[-1] == f"EXTEND_TIMEOUT_USEC={ENGINE_BUILD_S * 1_000_000}"
    assert messages[0].startswith("STATUS=loading the model")
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not ask_for_engine_build_time("tensorrt")  # not under systemd: nothing to ask
