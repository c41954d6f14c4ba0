import datetime
import json
import threading
import time

import cv2
import numpy as np
import pytest

from edge.errors import EdgerecError
from edge.live.result import FrameResult, Result, single
from edge.sinks import EventsSink, NullSink, SnapshotSink, VideoFileSink, WindowSink
from edge.sinks import window as window_module

PROBS = np.array([0.7, 0.3], np.float32)


def result(index: int, label: str = "cat", changed: bool = False) -> FrameResult:
    return single(Result(index, time.monotonic() - 0.02, label, 0, 0.7123456, PROBS, changed, True, 20.04, 30.0))


def frame(level: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    return np.full((size[1], size[0], 3), level, np.uint8)


def read_video(path) -> tuple[list[int], float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    fps, size = capture.get(cv2.CAP_PROP_FPS), (int(capture.get(3)), int(capture.get(4)))
    levels = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        levels.append(int(image.mean().round()))
    capture.release()
    return levels, fps, size


def test_every_sink_has_the_one_interface():
    for sink_type in (NullSink, WindowSink, VideoFileSink, EventsSink, SnapshotSink):
        assert isinstance(sink_type.wants_overlay, bool)
        assert callable(sink_type.write) and callable(sink_type.close)
    sink = NullSink()
    sink.write(frame(0), result(0))
    sink.close()


def test_video_file_gets_every_frame_and_appears_only_when_complete(tmp_path):
    path = tmp_path / "out.mp4"
    sink = VideoFileSink(path, fps=lambda: 12.5)
    levels = list(range(20, 220, 8))
    for i, level in enumerate(levels):
        sink.write(frame(level), result(i))
    assert not path.exists()  # still being written under a temporary name
    sink.close()

    read, fps, size = read_video(path)
    assert read == pytest.approx(levels, abs=5)
    assert fps == pytest.approx(12.5) and size == (64, 48)
    assert sink.frames == len(levels) and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_video_file_keeps_its_own_copy_of_each_frame(tmp_path):
    sink = VideoFileSink(tmp_path / "out.avi", fps=lambda: 25)
    image = frame(50)
    for level in (50, 200, 120):
        image[:] = level  # a source reuses its buffer as soon as write returns
        sink.write(image, result(0))
    sink.close()
    assert read_video(tmp_path / "out.avi")[0] == pytest.approx([50, 200, 120], abs=3)


def test_video_file_fits_later_frames_of_another_size_into_the_first_size(tmp_path):
    sink = VideoFileSink(tmp_path / "out.avi", fps=lambda: None)
    for i, size in enumerate([(64, 48), (128, 96), (32, 20), (64, 48)]):
        sink.write(frame(100, size), result(i))
    sink.close()
    levels, fps, size = read_video(tmp_path / "out.avi")
    assert len(levels) == 4 and size == (64, 48) and fps == pytest.approx(30.0)


def test_video_file_without_frames_leaves_no_file(tmp_path):
    VideoFileSink(tmp_path / "out.mp4", fps=lambda: 25).close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name,message", [("out.xyz", "valid endings"), ("missing/out.mp4", "does not exist")]
)
def test_video_file_refuses_what_it_cannot_write(tmp_path, name, message):
    with pytest.raises(EdgerecError, match=message):
        VideoFileSink(tmp_path / name, fps=lambda: 25)


def test_events_are_one_flushed_json_line_per_label_change(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = EventsSink(path)
    labels = ["cat", "cat", "dog", "dog", "dog", "unknown", "cat"]
    for i, label in enumerate(labels):
        sink.write(frame(0), result(i, label, changed=i == 0 or label != labels[i - 1]))
        if i == 2:
            assert len(path.read_text().splitlines()) == 2  # flushed as it happens
    sink.close()

    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["frame"], e["label"]) for e in events] == [(0, "cat"), (2, "dog"), (5, "unknown"), (6, "cat")]
    assert events[0]["score"] == 0.7123 and events[0]["latency_ms"] == 20.0
    when = datetime.datetime.fromisoformat(events[0]["time"])
    assert when.tzinfo is not None
    assert abs((datetime.datetime.now().astimezone() - when).total_seconds()) < 5


def test_events_append_to_an_existing_file(tmp_path):
    path = tmp_path / "events.jsonl"
    for run in range(2):
        sink = EventsSink(path)
        sink.write(frame(0), result(run, changed=True))
        sink.close()
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [0, 1]


def test_events_to_standard_output(capsys):
    sink = EventsSink("-")
    sink.write(frame(0), result(3, "dog", changed=True))
    sink.close()
    assert json.loads(capsys.readouterr().out)["label"] == "dog"


def test_events_into_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EdgerecError, match="--events"):
        EventsSink(tmp_path / "missing" / "e.jsonl")


def test_snapshots_save_the_frame_on_each_label_change(tmp_path):
    sink = SnapshotSink(tmp_path / "snaps")
    changes = [
        (0, "tabby cat", 60),
        (1, "tabby cat", 61),
        (2, "fox/squirrel?", 180),
        (3, "fox/squirrel?", 181),
    ]
    for i, label, level in changes:
        sink.write(frame(level, (96, 64)), result(i, label, changed=i in (0, 2)))
    sink.close()

    files = sorted((tmp_path / "snaps").iterdir())
    assert [f.name.split("-", 1)[1] for f in files] == ["f000000-tabby_cat.jpg", "f000002-fox_squirrel.jpg"]
    images = [cv2.imread(str(f)) for f in files]
    assert [img.shape for img in images] == [(64, 96, 3)] * 2
    assert [int(img.mean().round()) for img in images] == pytest.approx([60, 180], abs=2)
    assert sink.saved == 2


def test_window_without_a_gui_says_what_to_do(monkeypatch):
    monkeypatch.setattr(window_module, "opencv_gui", lambda: "")
    with pytest.raises(EdgerecError, match="no-display"):
        WindowSink(threading.Event())


class FakeHighgui:
    def __init__(self, keys: list[int]) -> None:
        self.keys, self.shown = keys, []

    def namedWindow(self, title, flags):  # noqa: N802 -- cv2's name
        pass

    def imshow(self, title, image):
        self.shown.append(image)

    def waitKey(self, delay):  # noqa: N802
        return self.keys.pop(0)

    def getWindowProperty(self, title, prop):  # noqa: N802
        return 1.0

    def destroyWindow(self, title):  # noqa: N802
        pass


@pytest.mark.parametrize("key", [ord("q"), 27])
def test_window_quit_keys_set_the_stop_event(monkeypatch, key):
    gui = FakeHighgui([-1, ord("x"), key, -1])
    monkeypatch.setattr(window_module, "window_possible", lambda: True)
    for name in ("namedWindow", "imshow", "waitKey", "getWindowProperty", "destroyWindow"):
        monkeypatch.setattr(window_module.cv2, name, getattr(gui, name))
    stop = threading.Event()
    sink = WindowSink(stop)
    for i in range(2):
        sink.write(frame(i), result(i))
        assert not stop.is_set()
    sink.write(frame(2), result(2))
    assert stop.is_set() and len(gui.shown) == 3
    sink.close()
