"""Where results go. Every sink has `wants_overlay`, `write(frame, result)` and `close()`."""

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
