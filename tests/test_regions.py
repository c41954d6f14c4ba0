"""Regions, triggers and several cameras: the watch-a-place path, end to end on synthetic clips."""

import contextlib
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COLOURS, load_script, make_tiny_model, run_cli, write_clip

from edge.app.config import parse_config, run_options
from edge.core.model import Model
from edge.errors import EdgerecError
from edge.live.camera import CameraOptions
from edge.live.capture import SourceOptions
from edge.live.motion import MotionOptions
from edge.live.regions import RegionOptions, TriggerOptions, parse_region, pixel_rect
from edge.live.smoothing import SmoothingOptions
from edge.live.triggers import Trigger
from edge.loop.pipeline import RunOptions, run

LEFT, RIGHT = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 0.5, 1.0)
INSTANT = SmoothingOptions(alpha=1.0, frames=1)
START = MotionOptions().recalibrate_frames  # a motion region runs while its camera's scene is first learnt


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    return Model.load(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), "cpu", threads=1)


def split_clip(path: Path, halves: list[tuple[str, str]], fps: float = 25.0, size=(96, 64)) -> Path:
    """A clip whose left and right halves show the colours the tiny model names."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for left, right in halves:
        frame = np.empty((size[1], size[0], 3), np.uint8)
        frame[:, : size[0] // 2] = COLOURS[left]
        frame[:, size[0] // 2 :] = COLOURS[right]
        writer.write(frame)
    writer.release()
    return path


def regions(*boxes: tuple[str, tuple], trigger: TriggerOptions | None = None) -> tuple[RegionOptions, ...]:
    return tuple(RegionOptions(name, box, trigger=trigger or TriggerOptions(), smoothing=INSTANT)
                 for name, box in boxes)


# --- the region itself -------------------------------------------------------------------------------


def test_a_region_is_named_and_inside_the_frame():
    assert parse_region("door=0.25,0.1,0.3,0.6") == ("door", (0.25, 0.1, 0.3, 0.6))
    for text, words in (("door", "NAME=X,Y,W,H"), ("door=1,2,3", "NAME=X,Y,W,H"), ("door=a,b,c,d", "NAME=X,Y,W,H"),
                        ("door=0.2,0.2,0,0.5", "is empty"), ("door=0.8,0,0.3,0.5", "outside the frame"),
                        ("door=-0.1,0,0.3,0.5", "outside the frame"), ("../x=0,0,1,1", "letters, digits")):
        with pytest.raises(EdgerecError, match=words):
            parse_region(text)


def test_pixel_rect_scales_with_the_frame_and_keeps_at_least_a_pixel():
    assert pixel_rect((0.25, 0.5, 0.5, 0.5), 480, 640) == (slice(240, 480), slice(160, 480))
    assert pixel_rect((0.25, 0.5, 0.5, 0.5), 1080, 1920) == (slice(540, 1080), slice(480, 1440))
    rows, cols = pixel_rect((0.999, 0.999, 0.001, 0.001), 48, 64)
    assert rows.stop - rows.start == 1 and cols.stop - cols.start == 1


def test_the_cli_names_a_bad_region_and_exits_2(tmp_path):
    for flag, words in (("door=0.8,0,0.3,0.5", "--region door"), ("door", "--region 'door'")):
        done = run_cli("run", "--source", "demo", "--no-display", "--region", flag)
        assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = run_cli("run", "--source", "demo", "--no-display", "--region", "a=0,0,1,1", "--region", "a=0,0,.5,.5")
    assert done.returncode == 2 and "'a' appears twice" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("toml, words", [
    ('[[regions]]\nname = "door"\nbox = [0.5, 0.5, 0.6, 0.2]\n', "regions[0].box: is outside the frame"),
    ('[[regions]]\nname = "door"\nbox = [0.5, 0.5, 0.0, 0.2]\n', "regions[0].box: is empty"),
    ('[[regions]]\nname = "door"\nbox = [0.5, 0.5]\n', "regions[0].box"),
    ('[[regions]]\nname = "a b"\nbox = [0, 0, 1, 1]\n', "regions[0].name"),
    ('[[regions]]\nname = "a"\nbox = [0, 0, 1, 1]\n[[regions]]\nname = "a"\nbox = [0, 0, 1, 1]\n', "'a' appears twice"),
    ('[[regions]]\nname = "a"\nbox = [0, 0, 1, 1]\ntriger = "motion"\n', "unknown key 'regions[0].triger'"),
    ('[[regions]]\nname = "a"\nbox = [0, 0, 1, 1]\ntrigger = "often"\n', "must be one of"),
    ('[[regions]]\nname = "a"\nbox = [0, 0, 1, 1]\ntrigger = "interval"\n', "needs an interval"),
    ('[[cameras]]\nname = "a"\nsource = "0"\n[[cameras]]\nname = "a"\nsource = "1"\n', "'a' appears twice"),
    ('[source]\nuri = "1"\n[[cameras]]\nname = "a"\nsource = "0"\n', "[source] and [[cameras]]"),
    ('[[regions]]\nname = "a"\nbox = [0, 0, 1, 1]\n[[cameras]]\nname = "a"\nsource = "0"\n', "[[cameras.regions]]"),
])
def test_bad_region_and_camera_configs_are_one_line_naming_the_key(tmp_path, toml, words):
    path = tmp_path / "config.toml"
    path.write_text(toml)
    done = run_cli("check-config", str(path))
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_config_with_cameras_and_regions_maps_onto_run_options(tmp_path):
    config = parse_config({
        "model": {"path": "run.onnx"},
        "recognition": {"trigger": "motion", "interval": 30, "switch_frames": 2},
        "cameras": [
            {"name": "garage", "source": "rtsp://cam/1",
             "regions": [{"name": "door", "box": [0.1, 0.2, 0.3, 0.4]},
                         {"name": "bins", "box": [0, 0.5, 0.5, 0.5], "trigger": "interval", "interval": 60,
                          "switch_frames": 1, "model": "bins.onnx"}]},
            {"name": "feeder", "source": {"uri": "http://cam/2", "fps": 5}, "motion": {"threshold": 30}},
        ],
    })
    options = run_options(config)
    garage, feeder = options.camera_options()
    assert (garage.name, garage.source.uri, feeder.source.uri, feeder.source.fps) == (
        "garage", "rtsp://cam/1", "http://cam/2", 5)
    door, bins = garage.regions
    assert door.trigger == TriggerOptions("motion", 30.0, None) and door.smoothing.frames == 2 and door.model is None
    assert bins.trigger == TriggerOptions("interval", 60.0, None) and bins.smoothing.frames == 1
    assert bins.model == "bins.onnx" and feeder.regions == () and feeder.motion.threshold == 30
    assert garage.motion.threshold == 20
    assert options.model == "run.onnx"  # door runs on it: one session for the run's model, whatever uses it


# --- triggers ----------------------------------------------------------------------------------------


def test_a_motion_trigger_runs_at_start_on_motion_until_settled_and_as_keep_alive():
    trigger = Trigger(TriggerOptions("motion", interval=10.0))
    assert trigger.due(0.0, motion=False) and trigger.reason == ""
    trigger.ran(0.0, settled=True)
    assert trigger.reason == "start" and not trigger.due(0.1, motion=False)
    assert trigger.due(1.0, motion=True)
    trigger.ran(1.0, settled=False)  # one frame of motion, the label still moving
    assert trigger.due(1.1, motion=False)
    trigger.ran(1.1, settled=False)
    assert trigger.reason == "settling" and trigger.due(1.2, motion=False)
    trigger.ran(1.2, settled=True)
    assert not trigger.due(1.3, motion=False) and not trigger.settling
    assert not trigger.due(10.9, motion=False) and trigger.due(11.2, motion=False)
    trigger.ran(11.2, settled=True)
    assert trigger.reason == "keep-alive"


def test_settling_ends_after_settle_max_even_if_the_label_never_settles():
    trigger = Trigger(TriggerOptions("motion", interval=100.0))
    trigger.due(0.0, True)
    trigger.ran(0.0, settled=True)
    trigger.due(1.0, True)
    trigger.ran(1.0, settled=False)
    t = 1.0
    while trigger.due(t + 0.1, motion=False):
        t += 0.1
        trigger.ran(t, settled=False)
    assert 3.8 <= t <= 4.1  # SETTLE_MAX_S after the motion


def test_interval_and_frame_triggers_and_the_rate_cap():
    interval = Trigger(TriggerOptions("interval", interval=2.0))
    runs = [t / 10 for t in range(100) if interval.due(t / 10, motion=True) and interval.ran(t / 10, True) is None]
    assert runs == [0.0, 2.0, 4.0, 6.0, 8.0]
    capped = Trigger(TriggerOptions("frame", infer_fps=5.0))
    runs = [t / 25 for t in range(50) if capped.due(t / 25, False) and capped.ran(t / 25, True) is None]
    assert len(runs) == 10


# --- the pipeline with regions ----------------------------------------------------------------------


def test_each_region_is_labelled_from_its_own_crop(tmp_path, model):
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "red")] * 10 + [("green", "red")] * 10)
    events = tmp_path / "events.jsonl"
    options = RunOptions(SourceOptions(str(clip), paced=False), display=False, events=str(events),
                         regions=regions(("left", LEFT), ("right", RIGHT)))
    summary = run(options, model=model)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["region"], e["label"]) for e in lines] == [("left", "blue"), ("right", "red"), ("left", "green")]
    assert all(e["camera"] == "camera" for e in lines) and 10 <= lines[2]["frame"] <= 12
    assert summary.inferred == 40 and summary.frames == 20
    assert summary.cameras["camera"].regions["right"].label == "red"


def test_a_region_crop_keeps_its_detail(tmp_path, model):
    """A small red square in a blue frame: the whole frame says blue, the region over the square says red."""
    size = (320, 240)
    frame = np.full((size[1], size[0], 3), COLOURS["blue"], np.uint8)
    frame[100:140, 200:240] = COLOURS["red"]
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), frame)
    box = (200 / 320, 100 / 240, 40 / 320, 40 / 240)
    whole = run(RunOptions(SourceOptions(str(path)), display=False), model=model)
    region = run(RunOptions(SourceOptions(str(path)), display=False, regions=regions(("spot", box))), model=model)
    assert whole.label == "blue" and region.label == "red"


def test_snapshots_of_a_region_are_the_full_frame_and_the_crop(tmp_path, model):
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "red")] * 3 + [("green", "red")] * 3, size=(160, 96))
    snaps = tmp_path / "snaps"
    run(RunOptions(SourceOptions(str(clip), paced=False), display=False, snapshots=str(snaps),
                   regions=regions(("left", LEFT))), model=model)  # fmt: skip
    names = sorted(p.name for p in snaps.iterdir())
    assert [n.split("-", 2)[2] for n in names] == ["camera-left-blue.crop.jpg", "camera-left-blue.jpg",
                                                   "camera-left-green.crop.jpg", "camera-left-green.jpg"]
    shapes = {n: cv2.imread(str(snaps / n)).shape[:2] for n in names}
    assert shapes[names[0]] == (96, 80) and shapes[names[1]] == (96, 160)


def test_a_still_scene_under_the_motion_trigger_runs_the_model_only_at_start_and_as_keep_alive(tmp_path, model):
    clip = write_clip(tmp_path / "clip.mp4", ["green"] * 50, fps=25.0)
    trigger = TriggerOptions("motion", interval=0.5)
    summary = run(RunOptions(SourceOptions(str(clip)), display=False, trigger="motion", interval=0.5,
                             regions=regions(("all", (0, 0, 1, 1)), trigger=trigger)), model=model)  # fmt: skip
    assert summary.frames == 50 and summary.label == "green"
    assert summary.inferred <= START + 4  # the start's re-learning, then one every 0.5 s of a 2 s clip


def test_the_motion_trigger_catches_a_change_in_its_region_only(tmp_path, model):
    """Blue everywhere; from frame 20 the left half turns red and stays: one frame of motion."""
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "blue")] * 20 + [("red", "blue")] * 30, size=(160, 96))
    events = tmp_path / "events.jsonl"
    trigger = TriggerOptions("motion", interval=100.0)
    smoothing = SmoothingOptions()  # the default EMA and 3-frame hysteresis must still settle
    apart = (("left", (0.0, 0.0, 0.45, 1.0)), ("right", (0.55, 0.0, 0.45, 1.0)))  # the motion blob is dilated
    places = tuple(RegionOptions(name, box, trigger=trigger, smoothing=smoothing) for name, box in apart)
    summary = run(RunOptions(SourceOptions(str(clip)), display=False, events=str(events), regions=places),
                  model=model)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["region"], e["label"]) for e in lines] == [("left", "blue"), ("right", "blue"), ("left", "red")]
    assert 20 <= lines[2]["frame"] <= 20 + 25  # within 1 s at 25 fps
    regions_ = summary.cameras["camera"].regions
    assert regions_["right"].inferences == START  # the start's re-learning only: no motion touched it
    assert 3 <= regions_["left"].inferences <= 31  # start, then while the new colour moves the picture


# --- several cameras ---------------------------------------------------------------------------------


def test_two_cameras_are_each_labelled_and_recorded(tmp_path, model):
    one = write_clip(tmp_path / "one.mp4", ["blue"] * 25, fps=25.0)
    two = split_clip(tmp_path / "two.mp4", [("green", "red")] * 10, fps=5.0)
    events, out = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    cameras = (CameraOptions(SourceOptions(str(one)), "one"),
               CameraOptions(SourceOptions(str(two)), "two", regions(("left", LEFT), ("right", RIGHT))))
    summary = run(RunOptions(SourceOptions("unused"), display=False, events=str(events), out=str(out),
                             cameras=cameras), model=model)
    assert summary.stopped_by == "end" and summary.frames == 35
    assert summary.cameras["one"].frames == 25 and summary.cameras["two"].frames == 10
    lines = {(e["camera"], e["region"], e["label"]) for e in map(json.loads, events.read_text().splitlines())}
    assert lines == {("one", "frame", "blue"), ("two", "left", "green"), ("two", "right", "red")}
    assert summary.cameras["two"].regions["right"].label == "red"
    for name, frames in (("one", 25), ("two", 10)):
        capture = cv2.VideoCapture(str(tmp_path / f"out-{name}.mp4"))
        count = 0
        while capture.read()[0]:
            count += 1
        assert count == frames


def test_a_fast_camera_does_not_starve_a_slow_one(tmp_path, model):
    fast = write_clip(tmp_path / "fast.mp4", ["blue"] * 30, fps=30.0)
    slow = write_clip(tmp_path / "slow.mp4", ["red"] * 2, fps=2.0)
    cameras = (CameraOptions(SourceOptions(str(fast), loop=True), "fast"),
               CameraOptions(SourceOptions(str(slow), loop=True), "slow"))
    summary = run(RunOptions(SourceOptions("unused"), display=False, cameras=cameras, duration=2.0), model=model)
    fast_frames, slow_frames = summary.cameras["fast"].frames, summary.cameras["slow"].frames
    assert 50 <= fast_frames <= 65 and 4 <= slow_frames <= 5


def test_a_dead_camera_does_not_stop_the_others(tmp_path, model):
    from mjpeg_server import MjpegServer

    clip = write_clip(tmp_path / "clip.mp4", ["green"] * 10)
    camera = MjpegServer(fps=20).start()
    camera.stop()  # nothing listens there any more: the stream camera keeps reconnecting
    source = {"open_timeout": 0.5, "read_timeout": 0.5, "backoff_min": 0.05, "backoff_max": 0.2}
    cameras = (CameraOptions(SourceOptions(camera.url, **source), "dead"),
               CameraOptions(SourceOptions(str(clip), loop=True), "alive"))
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    summary = run(RunOptions(SourceOptions("unused"), display=False, cameras=cameras), stop, model=model)
    assert time.monotonic() - started < 5
    assert summary.cameras["alive"].frames >= 30 and summary.cameras["dead"].frames == 0
    dead = summary.cameras["dead"].source
    assert dead.state in ("connecting", "reconnecting") and dead.reconnects >= 1 and "cannot open" in dead.error


# --- a real object put down in a real scene -----------------------------------------------------------

PHOTOS = Path(__file__).parent / "data" / "photos"


@pytest.fixture(scope="module")
def pasted_clip(tmp_path_factory):
    """4 s of a real photo (a baboon) at 15 fps with sensor noise; at 2 s a photo of a squirrel is put down in
    the "shelf" region and stays still."""
    msc = load_script("make_still_clip")
    path = tmp_path_factory.mktemp("clip") / "pasted.avi"
    return msc.make_still_clip(path, PHOTOS / "baboon.jpg", seconds=4, fps=15, size=(640, 480), noise_sigma=2.0,
                               drift=0.5, paste=msc.Paste(PHOTOS / "squirrel_cls.jpg", SHELF, 2.0))


SHELF = (0.55, 0.45, 0.4, 0.5)
NOSE = (0.25, 0.1, 0.5, 0.3)  # the mandrill's nose: a clear label (fur patches are near ties between
# monkeys and textures that the clip's sensor noise flips from frame to frame)


@pytest.mark.parametrize("trigger", ["frame", "motion"])
def test_an_object_put_down_in_one_region_is_named_there_within_a_second(tmp_path, pasted_clip, trigger):
    events = tmp_path / "events.jsonl"
    places = tuple(RegionOptions(name, box, trigger=TriggerOptions(trigger, interval=60.0))
                   for name, box in (("shelf", SHELF), ("nose", NOSE)))
    summary = run(RunOptions(SourceOptions(str(pasted_clip.path), paced=False), threads=1, display=False,
                             events=str(events), regions=places))  # the embedded ImageNet model
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    after = [e for e in lines if e["frame"] >= pasted_clip.paste_frame]
    assert [(e["region"], e["label"]) for e in after] == [("shelf", "fox squirrel")], lines
    assert after[0]["frame"] - pasted_clip.paste_frame <= 15  # within 1 s at 15 fps
    regions_ = summary.cameras["camera"].regions
    assert regions_["nose"].label_changes == 1  # its first label, never changed
    if trigger == "motion":  # the nose saw no motion: it ran while the start was learnt; the shelf from the paste
        assert regions_["nose"].inferences == START
        assert regions_["shelf"].inferences <= summary.frames - pasted_clip.paste_frame + START


# --- the web page and metrics know cameras and regions -----------------------------------------------


@contextlib.contextmanager
def serving_cameras(cameras: tuple[CameraOptions, ...], model: Model):
    """The real frame loop on `cameras` with a web sink on a free port, on a thread."""
    from edge.live.capture import open_source
    from edge.loop.pipeline import RUN_MODEL, build_loop, close_all, open_sinks
    from edge.web.options import WebOptions

    options = RunOptions(SourceOptions("unused"), display=False, web=WebOptions("127.0.0.1:0"), cameras=cameras)
    stop, sinks = threading.Event(), []
    sources = [open_source(camera.source) for camera in cameras]
    thread = None
    try:
        loop = build_loop(options, {RUN_MODEL: model}, sources, sinks, stop)
        open_sinks(options, loop.cameras, stop, into=sinks)
        loop.attach(sinks)
        thread = threading.Thread(target=loop.run, name="test-frame-loop")
        thread.start()
        yield sinks[0]
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        close_all(sinks, sources)


def test_status_stream_health_and_metrics_per_camera_and_region(tmp_path, model):
    from test_web import CHROMIUM, chromium, get, wait_until

    one = write_clip(tmp_path / "one.mp4", ["blue"] * 25)
    two = split_clip(tmp_path / "two.mp4", [("green", "red")] * 25)
    cameras = (CameraOptions(SourceOptions(str(one), loop=True), "one"),
               CameraOptions(SourceOptions(str(two), loop=True), "two", regions(("left", LEFT), ("right", RIGHT))))
    with serving_cameras(cameras, model) as sink:
        wait_until(lambda: get(sink, "/healthz")[0] == 200)
        status = json.loads(get(sink, "/api/status")[2])
        assert set(status["cameras"]) == {"one", "two"} and status["label"] == "blue" and status["healthy"]
        assert [(r["name"], r["label"]) for r in status["cameras"]["two"]["regions"]] == [("left", "green"),
                                                                                         ("right", "red")]
        assert all(r["trigger"] == "frame" and r["age_s"] == 0 for r in status["cameras"]["two"]["regions"])
        assert get(sink, "/stream.mjpg?camera=nope")[0] == 404
        metrics = get(sink, "/metrics")[2].decode()
        assert 'edgerec_region_label_info{camera="two",label="red",region="right"} 1.0' in metrics
        assert 'edgerec_camera_healthy{camera="one"} 1.0' in metrics
        if CHROMIUM is not None:
            shot = tmp_path / "regions.png"
            dom = chromium("--dump-dom", sink.url + "?camera=two", tmp_path=tmp_path)
            assert ">left<" in dom.stdout and ">right<" in dom.stdout and ">two<" in dom.stdout, dom.stdout
            assert chromium(f"--screenshot={shot}", sink.url, tmp_path=tmp_path).returncode == 0


def test_a_dead_camera_shows_in_health_and_metrics_while_the_other_runs(tmp_path, model):
    from mjpeg_server import MjpegServer
    from test_web import get, wait_until

    camera = MjpegServer(fps=20).start()
    camera.stop()
    source = {"open_timeout": 0.5, "read_timeout": 0.5, "backoff_min": 0.05, "backoff_max": 0.2}
    clip = write_clip(tmp_path / "clip.mp4", ["green"] * 10)
    cameras = (CameraOptions(SourceOptions(str(clip), loop=True), "alive"),
               CameraOptions(SourceOptions(camera.url, **source), "dead"))
    with serving_cameras(cameras, model) as sink:
        wait_until(lambda: json.loads(get(sink, "/api/status")[2])["cameras"]["alive"]["frames"] > 10)
        code, _, body = get(sink, "/healthz")
        assert code == 503 and "camera dead: no frame yet" in body.decode() and "camera alive: frame" in body.decode()
        status = json.loads(get(sink, "/api/status")[2])
        assert status["cameras"]["alive"]["healthy"] and not status["cameras"]["dead"]["healthy"]
        metrics = get(sink, "/metrics")[2].decode()
        assert 'edgerec_camera_source_up{camera="dead"} 0.0' in metrics
        assert 'edgerec_camera_healthy{camera="alive"} 1.0' in metrics


def test_motion_regions_run_while_the_scene_is_relearnt(tmp_path, model):
    """Lights on: the whole picture changes at once, which the detector does not call motion; the regions
    run while it re-learns the scene, so the label follows what the region shows now."""
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "blue")] * 20 + [("red", "green")] * 20, size=(160, 96))
    trigger = TriggerOptions("motion", interval=100.0)
    places = tuple(RegionOptions(name, box, trigger=trigger, smoothing=INSTANT)
                   for name, box in (("left", (0.0, 0.0, 0.45, 1.0)), ("right", (0.55, 0.0, 0.45, 1.0))))
    summary = run(RunOptions(SourceOptions(str(clip), paced=False), display=False, regions=places), model=model)
    regions_ = summary.cameras["camera"].regions
    assert regions_["left"].label == "red" and regions_["right"].label == "green"
    assert regions_["left"].inferences <= 12  # start and the lights: a few frames of re-learning each
