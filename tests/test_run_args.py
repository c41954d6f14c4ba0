import json

import cv2
import pytest
from conftest import make_tiny_model, run_parser, write_clip

from edge.app.cli import main
from edge.app.run_args import (
    DEMO_VIDEO,
    demo_defaults,
    describe_change,
    describe_state,
    describe_summary,
    options_from_args,
)
from edge.errors import EdgerecError
from edge.loop.pipeline import run


def test_flags_become_run_options():
    args = run_parser().parse_args(
        "--source /dev/video0 --width 1280 --height 720 --fps 30 --no-mjpg --infer-fps 5 --ema 0.3 "
        "--switch-margin 0.2 --switch-frames 4 --min-score 0.4 --no-display --out a.mp4 --events - "
        "--snapshots snaps --top-k 3 --no-stats --max-frames 100 --duration 60 --read-timeout 2".split()
    )
    options = options_from_args(args)
    source = options.source
    assert (source.uri, source.width, source.height, source.fps, source.mjpg) == ("/dev/video0", 1280, 720, 30, False)
    assert source.paced and not source.loop and source.read_timeout == 2.0
    assert options.infer_fps == 5 and options.max_frames == 100 and options.duration == 60
    assert (options.smoothing.alpha, options.smoothing.margin, options.smoothing.frames) == (0.3, 0.2, 4)
    assert options.smoothing.min_score == 0.4
    assert (options.display, options.out, options.events, options.snapshots) == (False, "a.mp4", "-", "snaps")
    assert options.overlay.top_k == 3 and not options.overlay.stats
    assert options.model is None and options.device == "auto"


def test_defaults():
    options = options_from_args(run_parser().parse_args(["--source", "clip.mp4", "--as-fast-as-possible", "--loop"]))
    assert options.display is None and options.infer_fps is None and not options.source.paced
    assert options.source.loop and options.source.mjpg and options.overlay.top_k == 0


def test_help_teaches_every_source_with_an_example():
    text = run_parser().format_help()
    sources = ("0, 1", "/dev/video0", "clip.mp4", "photos/", "photo.jpg", "rtsp://", "http://", "gst:", "picamera2")
    for example in (*sources, "demo"):
        assert example in text
    assert "--as-fast-as-possible" in text and "--infer-fps" in text and "edgerec run --source" in text


@pytest.mark.parametrize(
    "flags,message",
    [("--ema 0", "--ema: must be > 0, got 0.0"), ("--infer-fps 0", "--infer-fps: must be > 0, got 0.0"),
     ("--switch-frames 0", "--switch-frames: must be >= 1, got 0"), ("--width -5", "--width: must be > 0, got -5"),
     ("--device gpu", "--device: unknown device 'gpu'; valid: auto, cpu, "), ("--max-frames 0", "max-frames 0")],
)
def test_bad_values_are_clear_errors(flags, message):
    args = run_parser().parse_args(["--source", "0", *flags.split()])
    with pytest.raises(EdgerecError) as error:
        options_from_args(args)
    assert str(error.value).startswith(message)


def test_source_comes_from_the_flag_or_the_config():
    with pytest.raises(EdgerecError, match="needs --source URI or --config FILE"):
        options_from_args(run_parser().parse_args([]))


def test_parsed_options_run_end_to_end(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 8 + ["red"] * 8, size=(64, 48))
    model = make_tiny_model(tmp_path / "tiny.onnx")
    args = run_parser().parse_args(
        [
            "--source",
            str(clip),
            "--model",
            str(model),
            "--as-fast-as-possible",
            "--no-display",
            "--events",
            str(tmp_path / "e.jsonl"),
            "--switch-frames",
            "1",
        ]
    )
    changes = []
    summary = run(options_from_args(args), on_change=changes.append)
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [e["label"] for e in events] == ["blue", "red"] and summary.frames == 16

    line = describe_change(changes[1])
    assert f"frame {changes[1].frame_index}  red " in line and line.endswith(" ms)")
    text = "\n".join(describe_summary(summary))
    assert "16 frames" in text and "stopped by end" in text and "infer" in text and "latency" in text
    assert describe_state(summary.source) == "source: ended"


def test_the_demo_alone_shows_a_window_on_a_desktop_and_records_on_a_headless_machine():
    demo = options_from_args(run_parser().parse_args(["--source", "demo"]))
    desktop, note = demo_defaults(demo, window=True)
    assert desktop.display is True and desktop.out is None and "window" in note
    headless, note = demo_defaults(demo, window=False, service=False)
    assert headless.display is False and headless.out == DEMO_VIDEO == "edgerec-demo.mp4"
    assert note.endswith("the annotated video goes to edgerec-demo.mp4")

    for flags in (["--no-display"], ["--display"], ["--out", "x.mp4"], ["--events", "-"], ["--snapshots", "s"]):
        asked = options_from_args(run_parser().parse_args(["--source", "demo", *flags]))
        assert demo_defaults(asked, window=False) == (asked, "")  # an output asked for: nothing added
    clip = options_from_args(run_parser().parse_args(["--source", "clip.mp4"]))
    assert demo_defaults(clip, window=False) == (clip, "")


def test_edgerec_run_demo_headless_prints_label_changes_and_writes_the_video(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)  # tests run by a CI runner that systemd started
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert main(["run", "--source", "demo", "--as-fast-as-possible", "--max-frames", "50", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    changes = captured.out.splitlines()
    assert changes and all(" frame " in line and line.endswith(" ms)") for line in changes)
    assert "fox squirrel" in captured.out  # the second photo starts at frame 42
    assert "the annotated video goes to edgerec-demo.mp4" in captured.err
    capture = cv2.VideoCapture(str(tmp_path / "edgerec-demo.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 50


def test_a_camera_that_stays_away_is_one_warning_then_a_reminder_and_one_line_when_back(caplog):
    import logging

    from edge.app.run_args import REMIND_S, StateLog
    from edge.live.capture import SourceStatus

    now = [0.0]
    log = StateLog(clock=lambda: now[0])

    def state(name: str, camera: str = "garage", error: str = "") -> None:
        log(SourceStatus(name, 0, 0, 0, 0, error, camera))

    with caplog.at_level(logging.DEBUG, logger="edgerec.run"):
        state("streaming", "porch")
        state("reconnecting", error="the stream ended")
        for backoff in (0.5, 1, 2, 4, 8, 16, 30):  # retries: debug only
            now[0] += backoff
            state("reconnecting", error="cannot open stream")
        now[0] = REMIND_S + 1
        state("reconnecting", error="cannot open stream")  # a long outage: one reminder
        now[0] = REMIND_S + 31
        state("streaming")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
    assert lines == [
        ("INFO", "camera porch: streaming"),
        ("WARNING", "camera garage: reconnecting (the stream ended)"),
        ("WARNING", f"camera garage: reconnecting (cannot open stream); still away after 9 attempts in "
                    f"{REMIND_S + 1:.0f} s"),
        ("INFO", f"camera garage: streaming again after {REMIND_S + 31:.1f} s away (9 attempts)"),
    ]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 7
