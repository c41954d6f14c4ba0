"""Where results go: window, video file, JSON-lines events, snapshots, MQTT, systemd notify (service).
Every sink has `wants_overlay`, `write(frame, FrameResult)` and `close()`.

Imports: edge.live (results, source status), edge.core, the shared helpers. Never edge.web, edge.loop or
edge.app.
"""

from edge.sinks.base import Sink
from edge.sinks.events import EventsSink
from edge.sinks.mqtt import MqttOptions, MqttSink
from edge.sinks.null import NullSink
from edge.sinks.snapshots import SnapshotSink
from edge.sinks.video import VideoFileSink
from edge.sinks.window import WindowSink, window_possible

__all__ = [
    "EventsSink", "MqttOptions", "MqttSink", "NullSink", "Sink", "SnapshotSink", "VideoFileSink", "WindowSink",
    "window_possible",
]
