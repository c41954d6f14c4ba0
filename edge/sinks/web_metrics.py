"""/metrics: the web sink's counters in the Prometheus text format (0.0.4), written by prometheus-client.

The frame loop keeps its own cheap counters and histograms (a bisect and two additions per inferred frame,
under the sink's lock); a custom collector reads a snapshot of them at scrape time, so scraping costs the frame
loop nothing and the loop pays nothing for prometheus-client's locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from edge.sinks.web import Histogram, WebSink

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class SinkCollector(Collector):
    """Every edgerec_* metric, from one status() and one snapshot of the sink's counters per scrape."""

    def __init__(self, sink: WebSink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        status, snap, feed = self.sink.status(), self.sink.stats.snapshot(), self.sink.feed
        yield gauge("edgerec_fps", "Frames per second reaching the sinks (0 while frames do not flow).", status["fps"])
        yield counter("edgerec_frames", "Frames that reached the sinks.", snap.frames)
        yield counter("edgerec_label_changes", "Changes of the shown label.", snap.label_changes)
        if snap.last is not None:
            yield gauge("edgerec_label_score", "Smoothed probability of the shown label.", snap.last.score)
            info = GaugeMetricFamily("edgerec_label_info", "The shown label (value always 1).", labels=["label"])
            info.add_metric([snap.last.label], 1)
            yield info
            yield gauge("edgerec_last_frame_age_seconds", "Seconds since the newest frame was captured.",
                        status["last_frame_age_s"])
        yield gauge("edgerec_healthy", "1 while frames flow (what /healthz answers 200 for).", int(status["healthy"]))
        yield histogram("edgerec_latency_seconds", "Capture to labelled result, per inference.", snap.latency)
        yield histogram("edgerec_inference_seconds", "Model run time, per inference.", snap.inference)
        source = status["source"]
        if source is not None:
            yield gauge("edgerec_source_up", "1 while the source is streaming.", int(source["state"] == "streaming"))
            yield counter("edgerec_source_frames", "Frames the source produced.", source["frames"])
            yield counter("edgerec_frames_dropped",
                          "Live source: frames replaced by a newer one before the frame loop took them.",
                          source["dropped"])
            yield counter("edgerec_source_reconnects", "Live source: reconnect attempts.", source["reconnects"])
        yield gauge("edgerec_web_viewers", "MJPEG viewers now.", feed.viewers)
        yield counter("edgerec_jpeg_encodes", "JPEGs encoded for the MJPEG stream.", feed.encodes)
        yield counter("edgerec_jpeg_encode_seconds", "Time spent encoding them.", feed.encode_s)
        yield gauge("edgerec_uptime_seconds", "Seconds since the web preview started.", status["uptime_s"])


def registry_for(sink: WebSink) -> CollectorRegistry:
    """A registry of its own (not prometheus-client's global one): one per sink, nothing else in it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SinkCollector(sink))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    """`name` without `_total`: prometheus-client appends it."""
    return CounterMetricFamily(name, help_text, value=value)


def histogram(name: str, help_text: str, values: Histogram) -> HistogramMetricFamily:
    buckets, total = [], 0
    for bound, count in zip((*values.bounds, float("inf")), values.counts):
        total += count
        buckets.append((floatToGoString(bound), total))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=values.sum)
