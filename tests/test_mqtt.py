"""The MQTT sink against a real mosquitto broker that each test starts on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_tiny_model, run_parser, write_clip

from edge.app.run_args import options_from_args
from edge.core.model import Model
from edge.errors import EdgerecError
from edge.live.capture import SourceOptions
from edge.live.result import FrameResult, Result, single
from edge.loop.pipeline import RunOptions, run
from edge.sinks.mqtt import MqttOptions, MqttSink, parse_broker

MOSQUITTO = shutil.which("mosquitto") or next(
    (path for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(path, os.X_OK)), None)
try:
    import paho.mqtt.client as paho
except ImportError:
    paho = None
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None or paho is None,
    reason="no mosquitto binary (Debian: apt-get install mosquitto)" if MOSQUITTO is None
    else "paho-mqtt is not installed (pip install 'edgerec[mqtt]')")  # fmt: skip



class Broker:
    """mosquitto on 127.0.0.1 with a throwaway config and no persistence."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def broker(tmp_path) -> Broker:
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Listener:
    """A paho client subscribed to everything, keeping (topic, payload, retained) in arrival order."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"listener-{time.monotonic_ns()}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.on_connect = lambda client, *args: client.subscribe("#", qos=1)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert subscribed.wait(10), "the listener could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self._cond.notify_all()

    def wait_for(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        with self._cond:
            found = self._cond.wait_for(lambda: any(m[:2] == (topic, payload) for m in self.messages), timeout)
        assert found, f"no {payload!r} on {topic} in {self.messages}"

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._cond:
            return [(payload, retained) for t, payload, retained in self.messages if t == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def result(index: int, label: str, changed: bool = True) -> FrameResult:
    return single(Result(index, time.monotonic(), label, 2, 0.875, np.zeros(3, np.float32), changed, True, 12.0,
                         25.0, 3.0))


@needs_broker
def test_label_changes_availability_and_discovery_reach_the_broker(broker, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 15 + ["green"] * 15 + ["red"] * 15)
    model = Model.load(make_tiny_model(tmp_path / "tiny.onnx"), "cpu", threads=1)
    listener = Listener(broker.port)
    changes: list[Result] = []
    try:
        mqtt = MqttOptions("127.0.0.1", broker.port, "edgerec/test", client_id="edgerec-test")
        run(RunOptions(SourceOptions(str(clip)), display=False, mqtt=mqtt), model=model, on_change=changes.append)
        listener.wait_for("edgerec/test/availability", b"offline")
        events = [json.loads(payload) for payload, _ in listener.on("edgerec/test/state")]
        config = json.loads(listener.on("homeassistant/sensor/edgerec-test/label/config")[0][0])
    finally:
        listener.close()

    assert [e["label"] for e in events] == [c.label for c in changes] == ["blue", "green", "red"]
    assert [e["frame"] for e in events] == [c.frame_index for c in changes]
    keys = {"label", "score", "novelty", "time", "camera", "region", "frame", "latency_ms"}
    assert all(set(e) == keys and e["camera"] == "camera" and e["region"] == "frame" and e["score"] > 0.5
               for e in events)
    availability = [p for p, _ in listener.on("edgerec/test/availability")]
    assert availability in ([b"online", b"offline"], [b"offline"])  # no "online" when the run beat the connect
    assert config["state_topic"] == config["json_attributes_topic"] == "edgerec/test/state"
    assert config["availability_topic"] == "edgerec/test/availability"
    assert config["value_template"] == "{{ value_json.label }}" and config["unique_id"] == "edgerec-test_label"
    assert config["device"]["identifiers"] == ["edgerec-test"]

    late = Listener(broker.port)  # a subscriber that comes later gets the retained messages
    try:
        late.wait_for("edgerec/test/availability", b"offline")
        late.wait_for("edgerec/test/state", listener.on("edgerec/test/state")[-1][0])
        discovery = "homeassistant/sensor/edgerec-test/label/config"
        late.wait_for(discovery, listener.on(discovery)[-1][0])  # retained messages come in the broker's order
        assert all(retained for _, _, retained in late.messages)
    finally:
        late.close()


@needs_broker
def test_the_broker_announces_offline_when_the_process_dies(broker):
    listener = Listener(broker.port)
    script = ("import sys, time\nfrom edge.sinks.mqtt import MqttOptions, MqttSink\n"
              f"sink = MqttSink(MqttOptions('127.0.0.1', {broker.port}, 'edgerec/dying', client_id='dying'))\n"
              "time.sleep(60)\n")  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        listener.wait_for("edgerec/dying/availability", b"online", timeout=30)
        process.kill()  # no clean disconnect: the broker sends the last will
        listener.wait_for("edgerec/dying/availability", b"offline", timeout=10)
    finally:
        process.kill()
        process.wait()
        listener.close()


@needs_broker
def test_it_reconnects_after_the_broker_restarts_and_writes_never_wait(broker):
    lines: list[str] = []
    sink = MqttSink(MqttOptions("127.0.0.1", broker.port, "edgerec/again", client_id="again"), on_state=lines.append)
    try:
        assert sink.connected.wait(10)
        sink.write(np.zeros((4, 4, 3), np.uint8), result(0, "blue"))
        broker.stop()
        wait_until(lambda: not sink.connected.is_set())
        slowest = 0.0
        for i, label in enumerate(["green", "red", "blue", "red"], start=1):
            started = time.perf_counter()
            sink.write(np.zeros((4, 4, 3), np.uint8), result(i, label))
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.05

        broker.start()  # without persistence: it forgot every retained message
        assert sink.connected.wait(20)
        listener = Listener(broker.port)
        try:
            listener.wait_for("edgerec/again/availability", b"online")
            wait_until(lambda: listener.on("edgerec/again/state"))
            assert json.loads(listener.on("edgerec/again/state")[-1][0])["label"] == "red"
            assert listener.on("homeassistant/sensor/again/label/config")
        finally:
            listener.close()

        broker.stop()  # again, and no label change while it is away:
        wait_until(lambda: not sink.connected.is_set())
        broker.start()
        assert sink.connected.wait(20)
        listener = Listener(broker.port)
        try:  # the sink tells the forgetful broker the label now
            wait_until(lambda: listener.on("edgerec/again/state"))
            assert json.loads(listener.on("edgerec/again/state")[-1][0])["label"] == "red"
        finally:
            listener.close()
    finally:
        sink.close()
    assert lines[0].startswith("mqtt: connected to 127.0.0.1:") and "disconnected" in lines[1]
    assert lines[2].startswith("mqtt: connected to") and len(lines) == 5


def test_options_and_flags():
    assert parse_broker("broker.lan") == ("broker.lan", 1883)
    assert parse_broker("10.0.0.5:8883") == ("10.0.0.5", 8883)
    assert parse_broker("[::1]:1884") == ("::1", 1884)
    assert parse_broker("fd00::5") == ("fd00::5", 1883)
    for bad in ("", ":1883", "host:0", "host:port"):
        with pytest.raises(EdgerecError, match="HOST or HOST:PORT"):
            parse_broker(bad)
    for options in ({"topic_prefix": "a/#"}, {"topic_prefix": ""}, {"topic_prefix": "a/"},
                    {"discovery_prefix": "+"}, {"port": 0}, {"host": ""}, {"keepalive": 1}):
        with pytest.raises(EdgerecError):
            MqttOptions(**options)

    parser = run_parser()
    args = parser.parse_args("--source 0 --mqtt broker.lan:1884 --mqtt-topic-prefix edgerec/door".split())
    assert options_from_args(args).mqtt == MqttOptions("broker.lan", 1884, "edgerec/door")
    assert options_from_args(parser.parse_args(["--source", "0"])).mqtt is None


def test_without_paho_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(EdgerecError, match=r"pip install 'edgerec\[mqtt\]'"):
        MqttSink(MqttOptions())


@needs_broker
def test_a_change_written_before_the_connection_is_announced_once(broker):
    listener = Listener(broker.port)
    sink = MqttSink(MqttOptions("127.0.0.1", broker.port, "edgerec/early", client_id="early"))
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result(0, "blue"))  # queued: the connection is not up yet
        assert sink.connected.wait(10)
        listener.wait_for("edgerec/early/availability", b"online")
        wait_until(lambda: listener.on("edgerec/early/state"))
        time.sleep(0.5)  # a second copy would arrive right behind the first
        assert len(listener.on("edgerec/early/state")) == 1
    finally:
        sink.close()
        listener.close()


@needs_broker
def test_closing_before_the_connection_is_up_still_delivers_the_change_and_offline(broker):
    listener = Listener(broker.port)
    try:
        sink = MqttSink(MqttOptions("127.0.0.1", broker.port, "edgerec/short", client_id="short"))
        sink.write(np.zeros((4, 4, 3), np.uint8), result(0, "blue"))  # a run shorter than the connect
        sink.close()
        listener.wait_for("edgerec/short/availability", b"offline")
    finally:
        listener.close()
    assert [json.loads(p)["label"] for p, _ in listener.on("edgerec/short/state")] == ["blue"]  # before offline
    assert listener.on("edgerec/short/availability")[-1][0] == b"offline"  # never a stale "online" at the end
    assert listener.on("homeassistant/sensor/short/label/config")  # Home Assistant still learns of the sensor


@needs_broker
def test_closing_with_nothing_to_send_and_no_broker_does_not_wait(broker):
    port = broker.port
    broker.stop()
    sink = MqttSink(MqttOptions("127.0.0.1", port, "edgerec/none", client_id="none"))
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 3.0  # not CLOSE_WAIT_S; paho looks at its stop flag once a second


@needs_broker
def test_each_region_has_its_topic_its_sensor_and_its_camera_availability(broker, tmp_path):
    from test_regions import LEFT, RIGHT, regions, split_clip

    from edge.live.camera import CameraOptions

    clip = split_clip(tmp_path / "clip.mp4", [("blue", "red")] * 10 + [("green", "red")] * 10)
    model = Model.load(make_tiny_model(tmp_path / "tiny.onnx"), "cpu", threads=1)
    listener = Listener(broker.port)
    try:
        mqtt = MqttOptions("127.0.0.1", broker.port, "edgerec/test", client_id="edgerec-test")
        cameras = (CameraOptions(SourceOptions(str(clip)), "porch", regions(("left", LEFT), ("right", RIGHT))),)
        run(RunOptions(SourceOptions("unused"), display=False, mqtt=mqtt, cameras=cameras), model=model)
        listener.wait_for("edgerec/test/availability", b"offline")
        left = [json.loads(p)["label"] for p, _ in listener.on("edgerec/test/porch/left/state")]
        right = [json.loads(p)["label"] for p, _ in listener.on("edgerec/test/porch/right/state")]
        config = json.loads(listener.on("homeassistant/sensor/edgerec-test/porch_left/config")[0][0])
        camera = [p for p, _ in listener.on("edgerec/test/porch/availability")]
    finally:
        listener.close()
    assert left == ["blue", "green"] and right == ["red"]
    assert listener.on("edgerec/test/state") == []  # the whole-frame topic is for a camera without regions
    assert config["state_topic"] == "edgerec/test/porch/left/state" and config["unique_id"] == "edgerec-test_porch_left"
    assert config["availability"] == [{"topic": "edgerec/test/availability"},
                                      {"topic": "edgerec/test/porch/availability"}]
    assert config["availability_mode"] == "all" and camera[:1] == [b"online"]
