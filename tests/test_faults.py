"""Injected faults: the disk filling up, a read-only state folder, a camera that changes resolution or freezes,
an MQTT broker away at start and mid-run, the wall clock jumping. The frame loop must go on labelling
through each, say what is wrong once, and recover by itself; nothing already written may be damaged.

Each test is bounded in time and needs no network (loopback only). The disk-full and read-only tests
mount a small tmpfs / a read-only bind mount, which needs root (CI runs as root); elsewhere they skip.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COLOURS, REPO, make_tiny_model, write_clip
from mjpeg_server import MjpegServer
from test_mqtt import Broker, Listener, needs_broker
from test_regions import INSTANT, LEFT, RIGHT, regions, serving_cameras, split_clip
from test_web import get, wait_until

from edge.core.model import Model
from edge.live.camera import CameraOptions
from edge.live.capture import SourceOptions
from edge.live.regions import TriggerOptions
from edge.live.result import FrameResult, Result
from edge.loop.pipeline import RunOptions, run
from edge.sinks import EventsSink, SnapshotSink
from edge.sinks import outage as outage_module
from edge.sinks import video as video_module
from edge.web import state as web_state
from edge.web.options import WebOptions
from edge.web.state import FrozenWatch

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    return Model.load(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), "cpu", threads=1)


def mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 32 MiB tmpfs: a disk that can be filled up in a test without touching the machine's disks."""
    if not ROOT:
        pytest.skip("filling a disk needs a tmpfs of its own, and mounting one needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = mount("-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs", str(disk))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def fill(disk: Path, name: str, leave: int = 0) -> Path:
    """Write a ballast file until only `leave` bytes are free (0: until the disk says it is full)."""
    ballast = disk / name
    with open(ballast, "wb", buffering=0) as file:
        for chunk in (1 << 20, 4096, 512):
            block = b"\0" * chunk
            while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - chunk >= leave:
                try:
                    file.write(block)
                except OSError:
                    break
    return ballast


def read_frames(path: Path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, size


def sink_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgerec.sinks" and r.getMessage().startswith(what)]


@contextlib.contextmanager
def running(options: RunOptions, model: Model):
    """`run` on a thread; yields (changes, summary box); the run stops when the block ends."""
    stop, changes, box = threading.Event(), [], {}

    def target() -> None:
        box["summary"] = run(options, stop, model=model, on_change=changes.append)

    thread = threading.Thread(target=target, name="test-run")
    thread.start()
    try:
        yield changes, box
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and "summary" in box, "the run did not end"


# --- the disk fills up, then space is freed ----------------------------------------------------------


def test_a_full_disk_degrades_every_file_sink_and_space_freed_later_is_used_again(small_disk, model, tmp_path,
                                                                                   caplog, monkeypatch):
    monkeypatch.setattr(outage_module, "RETRY_S", 0.3)
    caplog.set_level(logging.INFO, logger="edgerec.sinks")
    clip = write_clip(tmp_path / "clip.mp4", ["blue", "blue", "green", "green", "red", "red"], fps=25)
    events, snaps, out = small_disk / "events.jsonl", small_disk / "snaps", small_disk / "out.mp4"
    options = RunOptions(SourceOptions(str(clip), loop=True), display=False, smoothing=INSTANT,
                         events=str(events), snapshots=str(snaps), out=str(out))
    with running(options, model) as (changes, _):
        wait_until(lambda: len(changes) >= 5)
        low = fill(small_disk, "ballast-1", leave=video_module.RESERVE_BYTES // 2)
        wait_until(lambda: out.exists(), timeout=5)  # under the reserve: the first part closed, playable
        full = fill(small_disk, "ballast-2")  # now nothing is left for events and snapshots either
        wait_until(lambda: sink_lines(caplog, f"--events {events}: cannot write"), timeout=15)
        wait_until(lambda: sink_lines(caplog, f"--snapshots {snaps}: cannot write"), timeout=15)
        during = len(changes)
        time.sleep(1.0)
        assert len(changes) > during + 5  # the frame loop kept labelling through the full disk
        low.unlink()
        full.unlink()
        wait_until(lambda: sink_lines(caplog, f"--events {events}: writing again"), timeout=10)
        wait_until(lambda: sink_lines(caplog, f"--snapshots {snaps}: writing again"), timeout=10)
        wait_until(lambda: sink_lines(caplog, f"--out {out}: writing again"), timeout=10)
        settled = len(changes)
        wait_until(lambda: len(changes) > settled + 5)
    # events: every label change is in the file, in order, every line whole JSON
    lines = events.read_bytes().decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == [c.frame_index for c in changes]
    # snapshots: only complete files under their names, every one decodes, and new ones after the outage
    files = sorted(snaps.iterdir())
    assert not [f for f in files if f.name.startswith(".")], files
    assert all(cv2.imread(str(f)) is not None for f in files)
    newest = max(int(f.name.split("-f")[1][:6]) for f in files)
    assert newest > [c.frame_index for c in changes][-8]  # written again after the space came back
    # recording: the part closed before the disk filled plays, and recording went on in a second part
    first, second = read_frames(out), read_frames(small_disk / "out.2.mp4")
    assert first[0] > 10 and first[1] == (96, 64) and second[0] > 5 and second[1] == (96, 64)
    # one line when each sink's outage began and one when it ended, not one per frame or per retry
    for what in (f"--events {events}", f"--snapshots {snaps}", f"--out {out}"):
        assert len(sink_lines(caplog, f"{what}: cannot write")) == 1, caplog.text
        assert len(sink_lines(caplog, f"{what}: writing again")) == 1, caplog.text


def test_a_recording_closes_its_part_playable_before_the_disk_is_full_and_starts_the_next(tmp_path, monkeypatch):
    """The same without root: the free space the sink sees is made up."""
    from edge.sinks import VideoFileSink

    free = [1 << 40]
    monkeypatch.setattr(video_module, "free_bytes", lambda folder: free[0])
    monkeypatch.setattr(video_module, "SPACE_CHECK_S", 0.0)
    monkeypatch.setattr(outage_module, "RETRY_S", 0.0)
    sink = VideoFileSink(tmp_path / "out.avi", fps=lambda: 25)
    for i in range(30):
        if i == 10:
            free[0] = video_module.RESERVE_BYTES - 1  # nearly full: close the part while its index fits
        if i == 20:
            free[0] = 1 << 40  # space freed
        sink.write(np.full((48, 64, 3), 8 * i, np.uint8), change(i, "blue"))
    sink.close()
    assert [p.name for p in sink.parts] == ["out.avi", "out.2.avi"] and sink.lost == 10
    assert read_frames(tmp_path / "out.avi") == (10, (64, 48)) and read_frames(tmp_path / "out.2.avi") == (10, (64, 48))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.2.avi", "out.avi"]  # no partial file left


def test_an_events_write_that_fails_part_way_leaves_only_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    sink = EventsSink(path)
    sink.write(np.zeros((4, 4, 3), np.uint8), change(0, "blue"))
    real_write = os.write

    def half_then_full(fd: int, data) -> int:  # what a disk filling mid-write does
        if fd == sink._fd:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    sink.write(np.zeros((4, 4, 3), np.uint8), change(1, "green"))
    assert [json.loads(line)["label"] for line in path.read_text().splitlines()] == ["blue"]
    assert sink.pending == 1 and sink.outage.failing
    monkeypatch.setattr(os, "write", real_write)
    sink.outage.clock = lambda: time.monotonic() + 3600  # the retry is due
    sink.write(np.zeros((4, 4, 3), np.uint8), change(2, "red"))
    sink.close()
    assert [json.loads(line)["label"] for line in path.read_text().splitlines()] == ["blue", "green", "red"]
    assert sink.events == 3 and sink.lost == 0


def test_events_beyond_the_memory_bound_are_counted_as_lost(tmp_path):
    sink = EventsSink(tmp_path / "events.jsonl", max_pending=3)
    sink.outage.failed("injected")  # as if the disk were full, the retry not yet due
    for i in range(5):
        sink.write(np.zeros((4, 4, 3), np.uint8), change(i, "blue" if i % 2 else "red"))
    assert sink.pending == 3 and sink.lost == 2
    sink.close()  # a last try, which works: the three kept are written
    assert [json.loads(line)["frame"] for line in (tmp_path / "events.jsonl").read_text().splitlines()] == [2, 3, 4]


def change(index: int, label: str, region: str = "frame") -> FrameResult:
    result = Result(index, time.monotonic(), label, 0, 0.9, np.zeros(3, np.float32), True, True, 10.0, 25.0, 2.0,
                    region=region)
    return FrameResult("camera", index, result.captured, 25.0, (result,))


# --- the state folder turns read-only -----------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` read-only for this process while the block runs: a read-only bind mount as root (root ignores
    permissions), else its mode bits."""
    if ROOT:
        for args in (("--bind", str(folder), str(folder)), ("-o", "remount,bind,ro", str(folder))):
            done = mount(*args)
            if done.returncode:
                subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)
                pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_a_snapshot_folder_turned_read_only_skips_snapshots_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edgerec.sinks")
    folder = tmp_path / "snaps"
    sink = SnapshotSink(folder)
    later = [0.0]
    sink.outage.clock = lambda: time.monotonic() + later[0]
    frame = np.full((48, 64, 3), 90, np.uint8)
    sink.write(frame, change(0, "blue"))
    with read_only(folder):
        for i in range(1, 30):  # 29 label changes while the folder refuses files
            sink.write(frame, change(i, "green" if i % 2 else "blue"))
    later[0] = 3600.0  # the retry is due
    sink.write(frame, change(30, "red"))
    sink.close()
    names = sorted(f.name for f in folder.iterdir())
    assert len(names) == 2 and names[0].endswith("f000000-blue.jpg") and names[1].endswith("f000030-red.jpg")
    assert all(cv2.imread(str(folder / name)) is not None for name in names)
    assert sink.saved == 2 and sink.lost == 29
    failed = sink_lines(caplog, f"--snapshots {folder}: cannot write")
    back = sink_lines(caplog, f"--snapshots {folder}: writing again")
    assert len(failed) == 1 and ("Read-only file system" in failed[0] or "Permission denied" in failed[0])
    assert len(back) == 1 and "29 label change(s) without snapshots" in back[0]


def test_a_state_folder_read_only_at_start_is_one_line_naming_it(tmp_path):
    from conftest import run_cli

    folder = tmp_path / "state"
    folder.mkdir()
    with read_only(folder):
        done = run_cli("run", "--source", "demo", "--no-display", "--max-frames", "5", "--snapshots", str(folder))
    assert done.returncode == 2 and str(folder) in done.stderr and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("edgerec: error: --snapshots") and "read-only" in errors[0]


# --- the camera changes its resolution ----------------------------------------------------------------


def halves(size: tuple[int, int], left: str, right: str) -> np.ndarray:
    image = np.empty((size[1], size[0], 3), np.uint8)
    image[:, : size[0] // 2], image[:, size[0] // 2 :] = COLOURS[left], COLOURS[right]
    return image


def test_a_camera_that_changes_resolution_keeps_its_regions_and_recording(tmp_path, model):
    """Within one connection OpenCV's FFmpeg reader scales every frame to the connection's first size; a camera
    that reconnects at its new size hands over frames of that size: regions (fractions) are cut at the new
    size, the motion detector starts over, the recording keeps its first size."""
    small, large = (160, 120), (320, 180)  # 4:3, then 16:9
    camera = MjpegServer(fps=25, images=[halves(small, "blue", "red")] * 10 + [halves(large, "green", "red")] * 10)
    camera.start()
    snaps, out = tmp_path / "snaps", tmp_path / "out.avi"
    places = regions(("left", LEFT), ("right", RIGHT), trigger=TriggerOptions("motion", interval=1.0))
    source = SourceOptions(camera.url, read_timeout=1.0, backoff_min=0.1, backoff_max=0.5)
    options = RunOptions(SourceOptions("unused"), display=False, snapshots=str(snaps), out=str(out),
                         cameras=(CameraOptions(source, "cam", places),))
    try:
        with running(options, model) as (changes, box):
            wait_until(lambda: [c.label for c in changes if c.region == "left"][:2] == ["blue", "green"])
            camera.stop()  # the camera restarts at its new resolution, on the same address
            camera = MjpegServer(fps=25, port=camera.port, images=[halves(large, "red", "green")]).start()
            wait_until(lambda: {(c.region, c.label) for c in changes} >= {("left", "red"), ("right", "green")},
                       timeout=15)
    finally:
        camera.stop()
    summary = box["summary"].cameras["cam"]
    assert summary.source.reconnects >= 1
    assert (summary.regions["left"].label, summary.regions["right"].label) == ("red", "green")
    crops = {}
    for file in snaps.glob("*.crop.jpg"):
        crops.setdefault(file.name.split("-cam-")[1], set()).add(cv2.imread(str(file)).shape[:2])
    assert crops["left-blue.crop.jpg"] == {(120, 80)} and crops["left-green.crop.jpg"] == {(120, 80)}
    assert crops["left-red.crop.jpg"] == {(180, 160)} and crops["right-green.crop.jpg"] == {(180, 160)}
    frames, size = read_frames(out)
    assert frames >= 10 and size == small  # how many depends on how fast the labels settle; readable throughout


# --- a camera that sends the same picture for ever -----------------------------------------------------


def test_frozen_watch_tells_a_frozen_picture_from_a_still_scene_with_noise():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, (120, 160, 3), np.uint8)
    watch = FrozenWatch()
    for second in range(5):
        frame = scene.copy()
        frame[110:, :40] = second  # the overlay's fps figures, in the bottom-left corner
        watch.look(frame, float(second))
    assert watch.frozen_s(4.0) == 4.0
    noisy = FrozenWatch()
    for second in range(5):
        noise = rng.integers(-1, 2, scene.shape)
        noisy.look(np.clip(scene + noise, 0, 255).astype(np.uint8), float(second))
    assert noisy.frozen_s(4.0) == 0.0
    changed = scene.copy()
    changed[0, 0] += 1  # one sampled pixel, one level
    watch.look(changed, 4.5)  # not looked at: once a second
    assert watch.frozen_s(4.5) == 4.5
    watch.look(changed, 5.0)
    assert watch.frozen_s(5.0) == 0.0


def test_a_frozen_camera_is_unhealthy_by_name_while_the_other_is_fine(model, monkeypatch):
    monkeypatch.setattr(web_state, "FROZEN_AFTER_S", 2.0)
    stuck = MjpegServer(fps=20, images=[halves((160, 120), "blue", "red")]).start()  # one JPEG for ever
    live = MjpegServer(fps=20).start()  # grey levels that change every frame
    cameras = (CameraOptions(SourceOptions(stuck.url), "stuck"), CameraOptions(SourceOptions(live.url), "live"))
    try:
        with serving_cameras(cameras, model) as sink:
            wait_until(lambda: get(sink, "/healthz")[0] == 200)
            wait_until(lambda: get(sink, "/healthz")[0] == 503, timeout=10)
            body = get(sink, "/healthz")[2].decode()
            status = json.loads(get(sink, "/api/status")[2])
            metrics = get(sink, "/metrics")[2].decode()
    finally:
        stuck.stop()
        live.stop()
    assert "camera stuck: the same picture for" in body and "(frozen)" in body and "camera live: frame" in body
    assert not status["cameras"]["stuck"]["healthy"] and status["cameras"]["stuck"]["frozen_s"] >= 2.0
    assert status["cameras"]["live"]["healthy"] and status["cameras"]["live"]["frozen_s"] == 0.0
    assert status["cameras"]["stuck"]["fps"] > 5  # its frames arrive: only their pixels say it is frozen
    assert 'edgerec_camera_healthy{camera="stuck"} 0.0' in metrics


# --- the MQTT broker: away at start, gone mid-run -------------------------------------------------------


@needs_broker
def test_region_changes_reach_a_broker_that_was_away_at_start_and_mid_run(tmp_path, model):
    from edge.sinks.mqtt import MqttOptions

    broker = Broker(tmp_path)  # not started: nothing listens on its port yet
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "red")] * 8 + [("green", "red")] * 8)
    mqtt = MqttOptions("127.0.0.1", broker.port, "edgerec/faults", client_id="faults")
    options = RunOptions(SourceOptions("unused"), display=False, mqtt=mqtt,
                         cameras=(CameraOptions(SourceOptions(str(clip), loop=True), "porch",
                                                regions(("left", LEFT), ("right", RIGHT))),))
    listener = None
    try:
        with running(options, model) as (changes, box):
            wait_until(lambda: len(changes) >= 6)  # the loop labels while no broker answers
            broker.start()
            listener = Listener(broker.port)
            listener.wait_for("edgerec/faults/availability", b"online", timeout=20)
            wait_until(lambda: listener.on("edgerec/faults/porch/left/state") and
                       listener.on("edgerec/faults/porch/right/state"), timeout=10)
            listener.close()
            broker.stop()  # mid-run: gone, and back without its retained messages
            during = len(changes)
            wait_until(lambda: len(changes) >= during + 6)
            broker.start()
            listener = Listener(broker.port)
            listener.wait_for("edgerec/faults/availability", b"online", timeout=30)
            wait_until(lambda: listener.on("edgerec/faults/porch/left/state") and
                       listener.on("edgerec/faults/porch/right/state"), timeout=10)
            later = len(changes)
            wait_until(lambda: len(changes) >= later + 2)
            left = [c for c in changes if c.region == "left"][-1]
            wait_until(lambda: json.loads(listener.on("edgerec/faults/porch/left/state")[-1][0])["frame"] >=
                       left.frame_index)
        summary = box["summary"]
    finally:
        if listener is not None:
            listener.close()
        broker.stop()
    assert json.loads(listener.on("edgerec/faults/porch/right/state")[-1][0])["label"] == "red"
    assert summary.stages["sinks"].max_ms < 100  # publishing never waited for the broker


# --- the wall clock jumps -------------------------------------------------------------------------------


def test_durations_come_from_the_monotonic_clock_only():
    """time.time() may only turn a monotonic capture time into a date (events.wall_clock): a duration, an
    age, a timeout or a rate from the wall clock goes wrong when NTP or a person sets the clock."""
    uses = []
    for path in sorted((REPO / "edge").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for function in [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)] + [tree]:
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and ast.unparse(node.func) in ("time.time", "time.time_ns",
                                                                             "datetime.datetime.now", "datetime.now"):
                    uses.append((path.relative_to(REPO).as_posix(), getattr(function, "name", "<module>")))
    allowed = {("edge/sinks/events.py", "wall_clock"), ("edge/core/metadata.py", "now_iso"),
               ("edge/learn/collect.py", "take"),  # a crop's file name: a date, never subtracted
               ("edge/web/trainer.py", "start"), ("edge/web/trainer.py", "train_worker")}  # dates shown
    assert {use for use in uses if use[1] != "<module>"} <= allowed, uses


def test_a_wall_clock_jumping_back_and_forth_changes_no_duration(tmp_path, model, monkeypatch):
    real = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 5 + ["green"] * 5, fps=20)
    events = tmp_path / "events.jsonl"
    web = WebOptions("127.0.0.1:0")
    options = RunOptions(SourceOptions(str(clip), loop=True), display=False, smoothing=INSTANT, events=str(events),
                         duration=3.0, trigger="interval", interval=0.25, web=web)
    stop = threading.Event()

    def jump() -> None:  # back an hour, forward two, ... every 0.2 s
        for i in range(15):
            offset[0] += 7200 if i % 2 else -3600
            if stop.wait(0.2):
                return

    jumps = threading.Thread(target=jump)
    jumps.start()
    started = time.monotonic()
    summary = run(options, model=model)
    took = time.monotonic() - started
    stop.set()
    jumps.join()
    assert summary.stopped_by == "duration" and 2.9 <= summary.elapsed_s <= 3.5 and took < 8
    assert 9 <= summary.cameras["camera"].regions["frame"].inferences <= 15  # every 0.25 s, whatever the date
    assert 15 <= summary.fps <= 25 and summary.latency.max_ms < 1000
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert records and all(r["latency_ms"] < 1000 for r in records)
