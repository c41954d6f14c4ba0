"""Recording in segments (edge.sinks.video), events rotation (edge.sinks.events) and retention
(edge.sinks.retention): no frame lost at a boundary, names, oldest first, never the open file, only edgerec's
files, bad values refused in one line, the config keys, /metrics."""

from __future__ import annotations

import datetime
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import count_frames, make_tiny_model, run_cli, write_clip

from edge.app.config import Config, defaults_toml, parse_config, run_options
from edge.core.model import Model
from edge.errors import EdgerecError
from edge.live.camera import CameraOptions
from edge.live.capture import SourceOptions
from edge.live.result import FrameResult, Result, single
from edge.loop.pipeline import RunOptions, per_camera_path, run
from edge.sinks import EventsSink, SnapshotSink, VideoFileSink
from edge.sinks.events import wall_clock
from edge.sinks.retention import FileFamily, Retention, RetentionOptions, stamped
from edge.web.options import WebOptions
from edge.web.sink import WebSink

PROBS = np.array([0.7, 0.3], np.float32)
SEGMENT_NAME = re.compile(r"rec-[0-9]{8}-[0-9]{6}\.mp4")


def result(index: int, captured: float, label: str = "cat", changed: bool = False) -> FrameResult:
    return single(Result(index, captured, label, 0, 0.7, PROBS, changed, True, 20.0, 30.0))


def frame(level: int) -> np.ndarray:
    return np.full((48, 64, 3), level, np.uint8)


def record(path: Path, frames: int, every_s: float, segment_s: float | None, **kw) -> tuple[VideoFileSink, float]:
    """`frames` frames captured `every_s` apart (made-up capture times, so that the test does not wait)."""
    sink = VideoFileSink(path, fps=lambda: 10, segment_s=segment_s, **kw)
    start = time.monotonic() - frames * every_s
    for i in range(frames):
        sink.write(frame(i % 50 * 5), result(i, start + i * every_s))
    sink.close()
    return sink, start


# --- segments -----------------------------------------------------------------------------------------


def test_segments_lose_no_frame_at_a_boundary_and_are_named_from_their_first_frame(tmp_path):
    closed = []
    sink, start = record(tmp_path / "rec.mp4", 47, 0.5, 2.0, on_closed=closed.append)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(SEGMENT_NAME.fullmatch(name) for name in names), names  # nothing else: no partial file left
    counts = [count_frames(tmp_path / name) for name in names]
    assert counts == [4] * 11 + [3]  # 2 s of frames 0.5 s apart; the frame at 2.0 s starts the next file
    assert sum(counts) == sink.frames == 47 and sink.lost == 0
    assert [p.name for p in closed] == names == [p.name for p in sink.parts]
    firsts = [wall_clock(start + i * 2.0) for i in range(12)]  # the first frame of each segment
    assert names == [f"rec-{when:%Y%m%d-%H%M%S}.mp4" for when in firsts]


def test_frames_cross_boundaries_in_order(tmp_path):
    """Each segment starts with the frame after the last one of the previous segment."""
    record(tmp_path / "rec.avi", 20, 0.25, 1.0)
    levels = []
    for path in sorted(tmp_path.iterdir()):
        capture = cv2.VideoCapture(str(path))
        while (read := capture.read())[0]:
            levels.append(int(read[1].mean().round()))
    assert levels == pytest.approx([i * 5 for i in range(20)], abs=3)


def test_a_taken_name_gets_a_number_and_one_camera_of_several_keeps_its_own(tmp_path):
    path = Path(per_camera_path(str(tmp_path / "rec.mp4"), "garage"))
    start = time.monotonic()
    taken = path.with_name(f"rec-garage-{wall_clock(start):%Y%m%d-%H%M%S}.mp4")
    taken.write_bytes(b"an earlier run's segment")
    sink = VideoFileSink(path, fps=lambda: 10, segment_s=1.0)
    for i in range(3):
        sink.write(frame(100), result(i, start + i * 0.1))
    sink.close()
    assert taken.read_bytes() == b"an earlier run's segment"
    assert sink.parts == [taken.with_name(f"{taken.stem}-2.mp4")] and count_frames(sink.parts[0]) == 3


def test_one_file_without_segments_as_before(tmp_path):
    record(tmp_path / "rec.mp4", 30, 0.5, None)
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"] and count_frames(tmp_path / "rec.mp4") == 30


@pytest.mark.parametrize("segment", [0.0, -5.0, 0.5])
def test_too_short_a_segment_is_refused(tmp_path, segment):
    with pytest.raises(EdgerecError, match=f"--segment {segment}: too short; valid: seconds >= 1"):
        VideoFileSink(tmp_path / "rec.mp4", fps=lambda: 10, segment_s=segment)
    with pytest.raises(EdgerecError, match="segment .* is too short"):
        RunOptions(SourceOptions("demo"), out="rec.mp4", segment=segment)


def test_a_run_records_every_frame_across_its_segments_with_retention_on(tmp_path):
    """The real loop: a paced clip of 2.4 s in 1 s segments; every frame is in exactly one playable file."""
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 30 + ["red"] * 30, fps=25.0)
    model = Model.load(make_tiny_model(tmp_path / "tiny.onnx"), "cpu", threads=1)
    out = tmp_path / "out" / "rec.mp4"
    out.parent.mkdir()
    options = RunOptions(SourceOptions(str(clip)), display=False, out=str(out), segment=1.0,
                         snapshots=str(tmp_path / "out" / "snaps"), retention=RetentionOptions(max_mb=50))
    summary = run(options, model=model)
    segments = sorted(p for p in out.parent.iterdir() if p.is_file())
    assert len(segments) >= 2 and all(SEGMENT_NAME.fullmatch(p.name) for p in segments)
    assert sum(count_frames(p) for p in segments) == summary.frames  # each frame the loop had is in one file
    assert summary.frames + summary.source.skipped == 60  # (a paced clip skips what a slow machine cannot keep up with)


def test_several_cameras_record_segments_under_their_own_names(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 35, fps=25.0)
    model = Model.load(make_tiny_model(tmp_path / "tiny.onnx"), "cpu", threads=1)
    cameras = tuple(CameraOptions(SourceOptions(str(clip)), name) for name in ("porch", "garage"))
    summary = run(RunOptions(SourceOptions("unused"), cameras=cameras, display=False,
                             out=str(tmp_path / "rec.mp4"), segment=1.0), model=model)
    for name in ("porch", "garage"):
        segments = sorted(tmp_path.glob(f"rec-{name}-*.mp4"))
        assert len(segments) >= 2 and all(re.fullmatch(rf"rec-{name}-[0-9]{{8}}-[0-9]{{6}}\.mp4", p.name)
                                          for p in segments)
        assert sum(count_frames(p) for p in segments) == summary.cameras[name].frames


# --- retention ------------------------------------------------------------------------------------------


def make(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def recording_family(folder: Path) -> FileFamily:
    return VideoFileSink(folder / "rec.mp4", fps=lambda: 10, segment_s=10).files()


def test_retention_deletes_the_oldest_first_never_the_open_segment_nor_other_files(tmp_path):
    family = recording_family(tmp_path)  # (the sink checks that it can write by making and removing the partial)
    old = [make(tmp_path / f"rec-20261207-0100{i}0.mp4", 1000, 100 - i) for i in range(5)]
    writing = make(tmp_path / ".rec.partial.mp4", 3000, 0)
    mine = [make(tmp_path / name, 5000, 1000) for name in ("rec.mp4", "rec-holiday.mp4", "notes.txt",
                                                           "rec-20261207-010000.mp4.bak", "Rec-20261207-010000.mp4")]
    outside = make(tmp_path.parent / "elsewhere.mp4", 9000, 2000)
    (tmp_path / "rec-20261207-000000.mp4").symlink_to(outside)  # a link is never followed nor deleted
    retention = Retention(RetentionOptions(max_mb=0.006), [family])

    stats = retention.sweep()

    # 5 x 1000 + 3000 writing = 8000 bytes, plus room for the open one to grow to 1000: none (it is 3000)
    assert [p.exists() for p in old] == [False, False, True, True, True]  # down to 6000 bytes
    assert writing.exists() and all(p.exists() for p in mine) and outside.exists()
    assert (stats.kept_bytes, stats.kept_files, stats.deleted_bytes, stats.deleted_files) == (6000, 4, 2000, 2)


def test_retention_keeps_room_for_the_segment_being_written(tmp_path):
    """A new segment starts small; the budget counts it at the size of the last one, so the folder stays within
    the budget while it grows."""
    family = recording_family(tmp_path)
    for i in range(4):
        make(tmp_path / f"rec-20261207-0100{i}0.mp4", 1000, 100 - i)
    make(tmp_path / ".rec.partial.mp4", 100, 0)
    stats = Retention(RetentionOptions(max_mb=0.0035), [family]).sweep()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".rec.partial.mp4", "rec-20261207-010020.mp4",
                                                         "rec-20261207-010030.mp4"]
    assert stats.kept_bytes == 2100  # + 900 still to come <= 3500


def test_retention_by_age_and_across_families_oldest_first(tmp_path):
    snaps = tmp_path / "snaps"
    snapshots = SnapshotSink(snaps)
    events = EventsSink(tmp_path / "events.jsonl")
    old_snapshot = make(snaps / "20261101T120000.000-f000001-cat.jpg", 10, 40 * 86400)
    old_crop = make(snaps / "20261101T120000.000-f000001-cam-door-open.crop.jpg", 10, 40 * 86400)
    new_snapshot = make(snaps / "20261206T120000.000-f000002-dog.jpg", 10, 86400)
    old_events = make(tmp_path / "events-20261101-000000.jsonl", 10, 35 * 86400)
    new_events = make(tmp_path / "events-20261205-000000.jsonl", 10, 2 * 86400)
    user = make(snaps / "holiday.jpg", 10, 400 * 86400)
    families = [snapshots.files(), events.files(), recording_family(tmp_path)]
    stats = Retention(RetentionOptions(max_days=30), families).sweep()
    events.close()
    assert not old_snapshot.exists() and not old_crop.exists() and not old_events.exists()
    assert new_snapshot.exists() and new_events.exists() and user.exists() and (tmp_path / "events.jsonl").exists()
    assert stats.deleted_files == 3


def test_the_sweeper_thread_sweeps_when_poked_and_stops(tmp_path):
    # budget 2500 bytes: one 1000-byte segment plus the room kept for the next (1000) fits; two do not
    make(tmp_path / "rec-20261207-010000.mp4", 1000, 10)
    retention = Retention(RetentionOptions(max_mb=0.0025, every_s=3600), [recording_family(tmp_path)]).start()
    try:
        wait_for(lambda: retention.stats().sweeps >= 1)  # the sweep at start: nothing over the budget yet
        assert retention.stats().deleted_files == 0
        make(tmp_path / "rec-20261207-010010.mp4", 1000, 0)
        retention.poke(tmp_path / "rec-20261207-010010.mp4")
        wait_for(lambda: retention.stats().deleted_files >= 1)
        assert not (tmp_path / "rec-20261207-010000.mp4").exists()
        assert (tmp_path / "rec-20261207-010010.mp4").exists()
    finally:
        retention.close()
    assert retention._thread is None


@pytest.mark.parametrize("kw, message", [
    ({"max_mb": -1.0}, "retain-mb -1.0 is not positive"), ({"max_days": 0.0}, "retain-days 0.0 is not positive")])
def test_bad_retention_values_are_refused(kw, message):
    with pytest.raises(EdgerecError, match=message):
        RetentionOptions(**kw)


@pytest.mark.parametrize("flags, message", [
    (["--retain-mb", "-1"], "error: --retain-mb: must be > 0, got -1.0"),
    (["--segment", "0"], "error: --segment: must be >= 1, got 0.0"),
    (["--retain-days", "0"], "error: --retain-days: must be > 0, got 0.0"),
    (["--out", "x.mp4", "--retain-mb", "5"], "error: retention: a recording is kept within max_mb/max_days only in "
                                             "segments"),
])
def test_the_command_line_refuses_bad_values_in_one_line(flags, message):
    done = run_cli("run", "--source", "demo", "--no-display", *flags)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_config_keys_map_onto_the_run_options():
    config = parse_config({"recording": {"path": "/r/rec.mp4", "segment": 300},
                           "retention": {"max_mb": 4000, "max_days": 14.5}})
    options = run_options(config)
    assert options.out == "/r/rec.mp4" and options.segment == 300
    assert options.retention == RetentionOptions(max_mb=4000, max_days=14.5) and options.retention.enabled
    defaults = run_options(Config())
    assert defaults.segment is None and not defaults.retention.enabled
    with pytest.raises(EdgerecError, match="recording.segment: must be >= 1, got 0"):
        parse_config({"recording": {"segment": 0}})
    with pytest.raises(EdgerecError, match="retention.max_mb: must be > 0, got -4"):
        parse_config({"retention": {"max_mb": -4}})


def test_the_service_example_records_in_segments_with_retention():
    service = parse_config(__import__("tomllib").loads(defaults_toml(service=True)))
    assert service.recording.path.endswith("rec.mp4") and service.recording.segment == 300
    assert service.retention.max_mb and service.retention.max_days
    assert parse_config(__import__("tomllib").loads(defaults_toml())) == Config()


# --- events rotation ---------------------------------------------------------------------------------------


def test_events_rotate_by_size_named_after_their_first_line(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = EventsSink(path, rotate_bytes=400)
    start = time.monotonic()
    for i in range(12):
        sink.write(frame(0), result(i, start + i, label=f"label{i}", changed=True))
    sink.close()
    parts = sink.rotated
    assert len(parts) >= 2 and all(stamped("events", ".jsonl").fullmatch(p.name) for p in parts)
    lines = [json.loads(line) for p in [*parts, path] for line in p.read_text().splitlines()]
    assert [line["label"] for line in lines] == [f"label{i}" for i in range(12)]  # none lost, in order
    for part in parts:
        first = datetime.datetime.fromisoformat(json.loads(part.read_text().splitlines()[0])["time"])
        assert part.name.startswith(f"events-{first:%Y%m%d-%H%M%S}")
    assert all(p.stat().st_size >= 400 for p in parts)


def test_events_from_an_earlier_day_are_rotated_at_the_first_new_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"time": "2026-12-01T23:59:58.000+01:00", "label": "old"}) + "\n")
    sink = EventsSink(path)
    sink.write(frame(0), result(1, time.monotonic(), label="new", changed=True))
    sink.close()
    assert [p.name for p in sink.rotated] == ["events-20261201-235958.jsonl"]
    assert json.loads(path.read_text())["label"] == "new"


# --- /metrics ------------------------------------------------------------------------------------------------


def test_metrics_show_bytes_kept_and_deleted(tmp_path):
    for i in range(3):
        make(tmp_path / f"rec-20261207-0100{i}0.mp4", 1000, 100 - i)
    retention = Retention(RetentionOptions(max_mb=0.0025), [recording_family(tmp_path)])
    retention.sweep()
    sink = WebSink(WebOptions("127.0.0.1:0"), retention=retention)
    try:
        from edge.web.metrics import exposition

        text = exposition(sink.registry).decode()
    finally:
        sink.close()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("edgerec_retention"))
    # 3000 bytes, and room for the next segment to grow to 1000: two deleted to fit 2500
    assert float(values["edgerec_retention_kept_bytes"]) == 1000
    assert float(values["edgerec_retention_kept_files"]) == 1
    assert float(values["edgerec_retention_deleted_bytes_total"]) == 2000
    assert float(values["edgerec_retention_deleted_files_total"]) == 2


# --- teach crops ------------------------------------------------------------------------------------------------


def test_teach_crops_are_capped_per_label_on_disk_whatever_the_sessions(tmp_path):
    from edge.learn.collect import CollectOptions, Collector

    collector = Collector(tmp_path)
    folder = collector.data_dir("cam", "door") / "open"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"1733130000000-{i}.jpg").write_bytes(b"jpeg")
    with pytest.raises(EdgerecError, match=r"label open of cam/door holds 3 crops, the most kept per label \(3\)"):
        collector.start(CollectOptions("cam", "door", "open", max_crops=3))
    collector.start(CollectOptions("cam", "door", "shut", max_crops=3))  # another label has room
    assert collector.session is not None
    collector.close()
