import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import REPO

from edge.app.cli import main
from edge.app.dataset_capture import CaptureOptions, capture, write_new
from edge.errors import EdgerecError
from edge.live.capture import SourceOptions


def write_video(path, frames: int, fps: float = 25.0, size=(64, 48)):
    """Frame i is a flat grey of level 4 * i, so a saved image tells which frame it was."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 4 * i, np.uint8))
    writer.release()
    return path


def options(source, out, **kw):
    return CaptureOptions(SourceOptions(str(source), paced=False), out, "mug", **kw)


def levels(folder):
    return sorted(int(cv2.imread(str(p)).mean().round()) for p in folder.iterdir())


def test_a_video_file_gives_one_image_per_interval_of_its_own_time(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 50)  # 2 s at 25 fps
    saved, states = [], []
    summary = capture(options(clip, tmp_path / "data", every=0.5), on_saved=saved.append,
                      on_source_state=lambda status: states.append(status.state))

    folder = tmp_path / "data" / "mug"
    assert summary.folder == folder and summary.stopped_by == "end" and summary.frames == 50
    assert summary.saved == len(saved) == 4 and [s.count for s in saved] == [1, 2, 3, 4]
    assert [s.frame_index for s in saved] == [0, 13, 25, 38]  # 0, 0.52, 1.0, 1.52 s of the clip
    assert sorted(p.name for p in folder.iterdir()) == sorted(s.path.name for s in saved)  # nothing else left
    assert all(p.suffix == ".jpg" and not p.name.startswith(".") for p in folder.iterdir())
    assert levels(folder) == pytest.approx([0, 52, 100, 152], abs=3)
    assert summary.source.state == "ended" and states[-1] == "closed"


def test_a_second_capture_adds_images_and_never_replaces_one(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 50)
    capture(options(clip, tmp_path, every=0.5))
    before = {p.name: p.read_bytes() for p in (tmp_path / "mug").iterdir()}
    capture(options(clip, tmp_path, every=0.5, max_images=2))

    after = {p.name: p.read_bytes() for p in (tmp_path / "mug").iterdir()}
    assert len(after) == 6 and all(after[name] == data for name, data in before.items())


def test_max_images_stops_the_capture(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 50)
    summary = capture(options(clip, tmp_path, every=0.2, max_images=3))
    assert summary.saved == 3 and summary.stopped_by == "max" and len(list((tmp_path / "mug").iterdir())) == 3


def test_the_stop_event_ends_a_looping_capture(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 10)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    source = SourceOptions(str(clip), loop=True)  # paced at 25 fps
    summary = capture(CaptureOptions(source, tmp_path, "mug", every=0.1), stop)
    assert summary.stopped_by == "stop" and 3 <= summary.saved <= 7


def test_a_taken_name_gets_a_suffix_and_the_write_is_complete_or_absent(tmp_path):
    first = write_new(tmp_path / "a.jpg", b"one")
    second = write_new(tmp_path / "a.jpg", b"two")
    third = write_new(tmp_path / "a.jpg", b"three")
    assert [p.name for p in (first, second, third)] == ["a.jpg", "a-2.jpg", "a-3.jpg"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"one", b"two", b"three"]
    assert sorted(os.listdir(tmp_path)) == ["a-2.jpg", "a-3.jpg", "a.jpg"]  # no temporary file left
    assert os.stat(first).st_mode & 0o644 == 0o644  # readable like any other file, not mkstemp's 0600


@pytest.mark.parametrize("label", ["", ".", "..", ".hidden", "a/b", "../up"])
def test_a_label_that_is_not_one_folder_name_is_refused(tmp_path, label):
    with pytest.raises(EdgerecError, match="label"):
        CaptureOptions(SourceOptions("0"), tmp_path, label)


@pytest.mark.parametrize("kw,message", [({"every": 0}, "every"), ({"max_images": 0}, "max"),
                                        ({"quality": 101}, "quality")])  # fmt: skip
def test_bad_values_are_clear_errors(tmp_path, kw, message):
    with pytest.raises(EdgerecError, match=message):
        CaptureOptions(SourceOptions("0"), tmp_path, "mug", **kw)


def test_edgerec_capture_prints_progress_and_fills_the_folder(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.avi", 50)
    code = main(["capture", "--source", str(clip), "--as-fast-as-possible", "--out", str(tmp_path / "data"),
                 "--label", "hallway", "--every", "1", "--max", "5"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    files = sorted((tmp_path / "data" / "hallway").iterdir())
    assert len(files) == 2  # 2 s of clip, one image a second
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines] == ["1/5", "2/5"] and lines[1].endswith(".jpg")
    assert "2 images in" in captured.err and "stopped by end" in captured.err

    assert main(["capture", "--source", str(clip), "--out", str(tmp_path), "--label", "../x"]) == 2
    assert "label '../x'" in capsys.readouterr().err


def test_training_reads_what_capture_wrote(tmp_path):
    from training.data import scan_folder

    clip = write_video(tmp_path / "clip.avi", 50)
    for label in ("mug", "cup"):
        capture(CaptureOptions(SourceOptions(str(clip), paced=False), tmp_path / "data", label, every=0.5))
    scan = scan_folder(tmp_path / "data", workers=1)
    assert scan.classes == ("cup", "mug") and len(scan.samples) == 8 and not scan.unreadable and not scan.ignored
    assert {(s.height, s.width) for s in scan.samples} == {(48, 64)}


def test_ctrl_c_stops_edgerec_capture_cleanly(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 10)
    command = [sys.executable, "-m", "edge.app.cli", "capture", "--source", str(clip), "--loop", "--out",
               str(tmp_path / "data"), "--label", "mug", "--every", "0.1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        assert process.stdout.readline().startswith("1  ")  # the first image is saved
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0 and "stopped by stop" in err
    saved = sorted((tmp_path / "data" / "mug").iterdir())
    assert len(saved) == 1 + len(out.splitlines()) and all(cv2.imread(str(p)) is not None for p in saved)
