"""/metrics: the web sink's counters in the Prometheus text format (0.0.4), written by prometheus-client.

The frame loop keeps its own cheap counters and histograms (a bisect and two additions per inferred frame,
under the sink's lock); a custom collector reads a snapshot of them at scrape time, so scraping costs the frame
loop nothing and the loop pays nothing for prometheus-client's locks.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from edge.sinks.retention import RetentionStats
from edge.web.state import Histogram, Served

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class SinkCollector(Collector):
    """Every edgerec_* metric, from one status() and one snapshot of the sink's counters per scrape."""

    def __init__(self, sink: Served) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        status, snap, feed = self.sink.status(), self.sink.stats.snapshot(), self.sink.feed
        yield gauge("edgerec_fps", "Frames per second reaching the sinks (0 while frames do not flow).", status["fps"])
        yield counter("edgerec_frames", "Frames that reached the sinks.", snap.frames)
        yield counter("edgerec_label_changes", "Changes of the shown label.", snap.label_changes)
        if snap.last is not None and snap.last.regions:
            first = snap.last.first
            yield gauge("edgerec_label_score", "Smoothed probability of the shown label.", first.score)
            info = GaugeMetricFamily("edgerec_label_info", "The shown label (value always 1).", labels=["label"])
            info.add_metric([first.label], 1)
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
        yield from per_camera(status["cameras"])
        yield gauge("edgerec_web_viewers", "MJPEG viewers now.", feed.viewers)
        yield counter("edgerec_jpeg_encodes", "JPEGs encoded for the MJPEG stream.", feed.encodes)
        yield counter("edgerec_jpeg_encode_seconds", "Time spent encoding them.", feed.encode_s)
        yield gauge("edgerec_uptime_seconds", "Seconds since the web preview started.", status["uptime_s"])
        yield from review(status["review"])
        if self.sink.retention is not None:
            yield from retention(self.sink.retention.stats())


def review(status: dict) -> Iterator[Metric]:
    """The review queue: items per region, bytes, crops kept and dropped (by why) since the start."""
    items = GaugeMetricFamily("edgerec_review_items", "Crops waiting for review in a region.",
                              labels=["camera", "region"])
    for camera, regions in status["items"].items():
        for region, count in regions.items():
            items.add_metric([camera, region], count)
    yield items
    yield gauge("edgerec_review_bytes", "Bytes the review queue's crops take (at most max_mb).", status["bytes"])
    yield counter("edgerec_review_kept", "Crops kept for review.", status["kept"])
    dropped = CounterMetricFamily("edgerec_review_dropped", "Crops worth review that were not kept, by why "
                                  "(duplicate, hourly, bytes: the oldest dropped, busy: the writer was behind, "
                                  "error).", labels=["why"])
    for why, count in status["dropped"].items():
        dropped.add_metric([why], count)
    yield dropped


def retention(stats: RetentionStats) -> Iterator[Metric]:
    """What the retention sweeper keeps and has deleted (recording segments, snapshots, rotated events)."""
    yield gauge("edgerec_retention_kept_bytes", "Bytes of recordings, snapshots and events files kept, as of the "
                "last sweep.", stats.kept_bytes)
    yield gauge("edgerec_retention_kept_files", "Files kept, as of the last sweep.", stats.kept_files)
    yield counter("edgerec_retention_deleted_bytes", "Bytes deleted by retention.", stats.deleted_bytes)
    yield counter("edgerec_retention_deleted_files", "Files deleted by retention.", stats.deleted_files)
    yield counter("edgerec_retention_sweeps", "Retention sweeps.", stats.sweeps)


def per_camera(cameras: dict[str, dict]) -> Iterator[Metric]:
    """The same figures per camera (label `camera`) and per region (labels `camera`, `region`)."""
    families = {
        "fps": GaugeMetricFamily("edgerec_camera_fps", "Frames per second of a camera (0 while they do not flow).",
                                 labels=["camera"]),
        "healthy": GaugeMetricFamily("edgerec_camera_healthy", "1 while a camera's frames flow.", labels=["camera"]),
        "frames": CounterMetricFamily("edgerec_camera_frames", "A camera's frames that reached the sinks.",
                                      labels=["camera"]),
        "up": GaugeMetricFamily("edgerec_camera_source_up", "1 while a camera's source is streaming.",
                                labels=["camera"]),
        "reconnects": CounterMetricFamily("edgerec_camera_source_reconnects", "A camera's reconnect attempts.",
                                          labels=["camera"]),
        "moving": GaugeMetricFamily("edgerec_camera_motion_area", "Fraction of a camera's picture that moved "
                                    "(cameras with a region triggered by motion).", labels=["camera"]),
        "score": GaugeMetricFamily("edgerec_region_score", "Smoothed probability of a region's label.",
                                   labels=["camera", "region"]),
        "label": GaugeMetricFamily("edgerec_region_label_info", "A region's label (value always 1).",
                                   labels=["camera", "region", "label"]),
        "novelty": GaugeMetricFamily("edgerec_region_novelty", "How unlike the taught photos a region looks "
                                     "(smoothed; regions whose model carries novelty data).",
                                     labels=["camera", "region"]),
        "age": GaugeMetricFamily("edgerec_region_label_age_seconds", "Seconds since a region's model last ran.",
                                 labels=["camera", "region"]),
    }  # fmt: skip
    for name, camera in cameras.items():
        families["fps"].add_metric([name], camera["fps"])
        families["healthy"].add_metric([name], int(camera["healthy"]))
        families["frames"].add_metric([name], camera["frames"])
        source = camera["source"]
        if source is not None:
            families["up"].add_metric([name], int(source["state"] == "streaming"))
            families["reconnects"].add_metric([name], source["reconnects"])
        if camera["motion"] is not None:
            families["moving"].add_metric([name], camera["motion"]["area"])
        for region in camera["regions"]:
            families["score"].add_metric([name, region["name"]], region["score"])
            families["label"].add_metric([name, region["name"], region["label"]], 1)
            if region["novelty"] is not None:
                families["novelty"].add_metric([name, region["name"]], region["novelty"])
            families["age"].add_metric([name, region["name"]], region["age_s"])
    yield from families.values()


def registry_for(sink: Served) -> CollectorRegistry:
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
