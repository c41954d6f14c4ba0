"""Label changes to an MQTT broker, with availability (last will) and Home Assistant discovery.

    PREFIX/availability   "online" (retained) once connected; "offline" when closed, or from the broker as
                          the last will when the process dies or the connection is lost
    PREFIX/state          the whole-frame label of a single camera without regions: one JSON object per
                          label change (retained, so a new subscriber sees the label now):
                          {"label", "score", "novelty", "time", "camera", "region", "frame", "latency_ms"}
    PREFIX/CAMERA/REGION/state     the same, per region, when regions or several cameras are configured
    PREFIX/CAMERA/availability     "online" while the camera streams, "offline" while it reconnects
    DISCOVERY/sensor/NODE/label/config (or .../NODE/CAMERA_REGION/config)
                          Home Assistant MQTT discovery: one sensor per region showing its label, with the rest
                          of the state as attributes, available while edgerec and its camera are (retained;
                          sent again on each connect and when Home Assistant announces "online" on
                          DISCOVERY/status)

paho-mqtt (the `[mqtt]` extra) runs the connection on its own thread (loop_start) and reconnects with a
growing delay; `write` only calls `publish`, which queues the message for that thread, and only when the
label changed, so a slow or absent broker never holds up the frame loop. Messages published while the
broker is away (QoS 1) go out after the reconnect.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import EdgerecError
from edge.live.capture import SourceStatus
from edge.live.result import FrameResult, Result
from edge.sinks.events import event

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessageInfo

PASSWORD_ENV = "EDGEREC_MQTT_PASSWORD"
QOS = 1
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 60
ONLINE, OFFLINE = b"online", b"offline"
CLOSE_WAIT_S = 5.0  # the longest `close` waits for a label change the broker has not acknowledged yet


@dataclass(frozen=True)
class MqttOptions:
    host: str = "localhost"
    """Broker host name or address."""
    port: int = 1883
    """Broker port."""
    topic_prefix: str = "edgerec"
    """Topics are PREFIX/state and PREFIX/availability; give each device its own."""
    username: str = ""
    """Empty: connect without credentials."""
    password: str | None = None
    """Used with `username`; None: $EDGEREC_MQTT_PASSWORD."""
    client_id: str = ""
    """MQTT client id, also the Home Assistant device id; empty: edgerec-HOSTNAME."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant discovery topic prefix; empty: no discovery messages."""
    keepalive: int = 30
    """Seconds between pings; the broker sends the last will after 1.5 times this without a word."""

    def __post_init__(self) -> None:
        if not self.host:
            raise EdgerecError("mqtt host is empty; valid: a broker host name or address")
        if not 0 < self.port < 65536:
            raise EdgerecError(f"mqtt port {self.port} is out of range; valid: 1-65535")
        for name in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, name)
            if re.search(r"[#+\x00]", value) or value.startswith("/") or value.endswith("/"):
                raise EdgerecError(f"mqtt {name.replace('_', '-')} {value!r} is not a topic prefix; valid: "
                                   "levels separated by /, without + # or a leading or trailing /")
        if not self.topic_prefix:
            raise EdgerecError("mqtt topic-prefix is empty; valid: e.g. edgerec/kitchen")
        if self.keepalive < 5:
            raise EdgerecError(f"mqtt keepalive {self.keepalive} is too short; valid: 5 seconds or more")


def parse_broker(value: str) -> tuple[str, int]:
    """`HOST` or `HOST:PORT` (`[IPv6]:PORT`) -> (host, port); the port defaults to 1883."""
    host, sep, port = value.rpartition(":")
    if not sep or (":" in host and not host.startswith("[")):  # no port, or a bare IPv6 address
        host, port = value, "1883"
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgerecError(f"--mqtt {value!r} is not HOST or HOST:PORT; valid: e.g. localhost, broker.lan:1883")
    return host, int(port)


@dataclass(frozen=True)
class Place:
    """A region of a camera, as MQTT names it."""

    camera: str = "camera"
    region: str = "frame"
    legacy: bool = True
    """The whole frame of a single camera: the topics and sensor of edgerec before regions (PREFIX/state)."""


class MqttSink:
    wants_overlay = False

    def __init__(self, options: MqttOptions, environ: Mapping[str, str] | None = None,
                 on_state: Callable[[str], None] | None = None, places: tuple[Place, ...] = (Place(),)) -> None:
        """Starts connecting in the background; `on_state` hears "connected ..." and "disconnected ...";
        `places`: the regions to announce to Home Assistant."""
        mqtt = _import_paho()
        environ = os.environ if environ is None else environ
        self.options = options
        self.client_id = options.client_id or f"edgerec-{socket.gethostname()}"
        self.node = re.sub(r"[^A-Za-z0-9_-]", "_", self.client_id)
        self.places = places
        self._legacy = all(place.legacy for place in places)  # one camera, whole frame: PREFIX/availability only
        self.state_topic = f"{options.topic_prefix}/state"
        self.availability_topic = f"{options.topic_prefix}/availability"
        self.connected = threading.Event()
        self.events = 0
        self._on_state = on_state
        self._states: dict[str, bytes] = {}  # the newest state published on each state topic
        self._cameras: dict[str, bytes] = {}  # the newest availability of each camera
        self._last_mid = -1  # paho's message id of the newest state publish
        self._writing: set[str] = set()  # state topics `write` is publishing a change on (under the lock)
        self._unacked: dict[str, int] = {}  # state topics whose newest publish is not acknowledged: its message id
        self._state_acked = threading.Event()  # set when the broker acknowledges _last_mid
        self._lock = threading.Lock()  # "closing" against "connected" (see close()); `write` against _announce
        self._acked_mid = -2  # the newest message id a broker acknowledged (set on paho's thread)
        self._closing = False
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if options.username:
            password = options.password if options.password is not None else environ.get(PASSWORD_ENV)
            self._client.username_pw_set(options.username, password or None)
        self._client.will_set(self.availability_topic, "offline", qos=QOS, retain=True)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.max_queued_messages_set(1000)  # while the broker is away; older label changes go first
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message
        self._client.on_publish = self._published
        self._client.connect_timeout = 5.0  # also the longest `close` waits for a connection attempt
        self._client.connect_async(options.host, options.port, keepalive=options.keepalive)
        self._client.loop_start()

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self._cameras.get(result.camera) is not ONLINE and not self._legacy:
            self._camera_available(result.camera, ONLINE)  # frames flow (again)
        for region in result.regions:
            if region.changed:
                topic = self.topic_of(region)
                with self._lock:  # a connection coming up now (_announce) leaves this change to this thread
                    self._states[topic] = json.dumps(event(region)).encode()
                    self._writing.add(topic)
                self._publish_state(topic)  # outside the lock: paho's thread may hold its own while it waits
                with self._lock:
                    self._writing.discard(topic)
                self.events += 1

    def source_state(self, camera: str, status: SourceStatus) -> None:
        """A camera's source changed state (on its grabber thread): its availability topic follows."""
        if not self._legacy and status.state != "streaming":  # "online" comes with the next frame
            self._camera_available(camera, OFFLINE)

    def _camera_available(self, camera: str, payload: bytes) -> None:
        if self._cameras.get(camera) is not payload:
            self._cameras[camera] = payload
            self._client.publish(self.camera_topic(camera), payload, qos=QOS, retain=True)

    def topic_of(self, result: Result) -> str:
        if result.whole_frame and self._legacy:
            return self.state_topic
        return f"{self.options.topic_prefix}/{result.camera}/{result.region}/state"

    def camera_topic(self, camera: str) -> str:
        return f"{self.options.topic_prefix}/{camera}/availability"

    def close(self) -> None:
        """Deliver the last label change (waiting up to CLOSE_WAIT_S for a connection that is not up yet, as
        after a run shorter than the connect), announce "offline", disconnect."""
        with self._lock:  # a connect either happened before (close announces "offline") or sees _closing
            self._closing = True
            connected = self.connected.is_set()
        if self._states and self._acked_mid != self._last_mid:  # a change not acknowledged yet
            connected = connected or self.connected.wait(CLOSE_WAIT_S)
            if connected:
                self._state_acked.wait(CLOSE_WAIT_S)
        if connected:
            _wait(self._client.publish(self.availability_topic, "offline", qos=QOS, retain=True), 2.0)
        self._client.disconnect()
        self._client.loop_stop()

    def discovery(self, place: Place | None = None) -> tuple[str, bytes]:
        """The Home Assistant discovery topic and config for one region's label sensor (default: the first)."""
        place = place or self.places[0]
        if place.legacy:
            object_id, name, state = "label", "Label", self.state_topic
            availability = {"availability_topic": self.availability_topic}
        else:
            object_id, name = f"{place.camera}_{place.region}", f"{place.camera} {place.region}"
            state = f"{self.options.topic_prefix}/{place.camera}/{place.region}/state"
            availability = {"availability": [{"topic": self.availability_topic},
                                             {"topic": self.camera_topic(place.camera)}],
                            "availability_mode": "all"}  # fmt: skip
        config = {
            "name": name,
            "unique_id": f"{self.node}_{object_id}",
            "state_topic": state,
            "value_template": "{{ value_json.label }}",
            "json_attributes_topic": state,
            **availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:cctv",
            "device": {"identifiers": [self.node], "name": f"edgerec {self.node}", "manufacturer": "edgerec",
                       "model": "edgerec image recognition", "sw_version": _version()},
        }
        topic = f"{self.options.discovery_prefix}/sensor/{self.node}/{object_id}/config"
        return topic, json.dumps(config).encode()

    # --- on paho's network thread ---

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._tell(f"mqtt: {self.options.host}:{self.options.port} refused the connection ({reason_code})")
            return
        with self._lock:
            self._announce()
            self.connected.set()
        if self.options.discovery_prefix:
            client.subscribe(f"{self.options.discovery_prefix}/status", qos=QOS)
        self._tell(f"mqtt: connected to {self.options.host}:{self.options.port} as {self.client_id}")

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._closing:
            self._tell(f"mqtt: disconnected from {self.options.host}:{self.options.port} ({reason_code}); "
                       f"reconnecting")

    def _message(self, client, userdata, message) -> None:
        if message.payload == b"online":  # Home Assistant restarted: it wants the discovery config again
            with self._lock:
                self._announce()

    def _announce(self) -> None:
        """Discovery config, then availability, then the label now (a broker without persistence forgot them).

        A label change that a broker has not acknowledged yet is still in paho's queue and goes out after
        this; sending it here too would announce the same change twice. Every other region's label is sent
        again: the broker may have forgotten it even though it did not change. A connection that comes up after
        close() began sends only the discovery config: close() delivers the queued change, then "offline".
        """
        if self.options.discovery_prefix:
            for place in self.places:
                self._client.publish(*self.discovery(place), qos=QOS, retain=True)
        if self._closing:
            return
        self._client.publish(self.availability_topic, "online", qos=QOS, retain=True)
        for camera, payload in list(self._cameras.items()):
            self._client.publish(self.camera_topic(camera), payload, qos=QOS, retain=True)
        for topic in list(self._states):
            if topic not in self._unacked and topic not in self._writing:  # a change in paho's queue, or being
                self._publish_state(topic)  # put there by `write` right now, goes out after this

    def _publish_state(self, topic: str) -> None:
        self._state_acked.clear()
        self._last_mid = self._unacked[topic] = self._client.publish(topic, self._states[topic], qos=QOS,
                                                                     retain=True).mid

    def _published(self, client, userdata, mid, reason_code, properties) -> None:
        self._acked_mid = mid
        for topic, pending in list(self._unacked.items()):
            if pending == mid:
                self._unacked.pop(topic, None)
        if mid == self._last_mid:
            self._state_acked.set()

    def _tell(self, line: str) -> None:
        if self._on_state is not None:
            self._on_state(line)


def _wait(info: MQTTMessageInfo, timeout: float) -> None:
    """Wait for the broker to acknowledge `info`; at once when it could not be sent (connection lost)."""
    try:
        info.wait_for_publish(timeout)
    except (ValueError, RuntimeError):
        pass


def _import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgerecError("MQTT needs paho-mqtt 2 or newer: pip install 'edgerec[mqtt]'") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise EdgerecError("MQTT needs paho-mqtt 2 or newer (this one is 1.x): pip install 'paho-mqtt>=2'")
    return mqtt


def _version() -> str:
    try:
        return importlib.metadata.version("edgerec")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"
