"""Issue 15: `source = "demo"` under the systemd unit failed at once with "--out edgerec-demo.mp4: OpenCV
cannot write this video type here": the headless demo wrote into the working folder, /, read-only under
ProtectSystem=strict. Under a service nothing is written that the config did not ask for, and anywhere an
output that cannot be written is named with its folder's problem, never blamed on the video type.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_parser

from edge.app.run_args import demo_defaults, options_from_args
from edge.errors import EdgerecError
from edge.live.result import Result
from edge.sinks import EventsSink, SnapshotSink, VideoFileSink
from edge.sinks.service import under_service_manager

UNWRITABLE = Path("/sys")  # sysfs takes no new files, even from root: EACCES, or EROFS where mounted read-only
UNWRITABLE_WHY = r"folder /sys is (not writable by .* \(permission denied\)|read-only \(a read-only file system\))"


def headless_env(**service: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "INVOCATION_ID", "NOTIFY_SOCKET", "JOURNAL_STREAM")}
    return {**env, "PYTHONPATH": str(REPO), **service}  # fmt: skip


@pytest.mark.parametrize("variable", ["INVOCATION_ID", "NOTIFY_SOCKET"])
def test_under_systemd_the_headless_demo_writes_no_file(monkeypatch, variable):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv(variable, "@edgerec-test" if variable == "NOTIFY_SOCKET" else "0123abcd")
    assert under_service_manager()
    demo = options_from_args(run_parser().parse_args(["--source", "demo"]))
    options, note = demo_defaults(demo, window=False)
    assert options.display is False and not (options.out or options.events or options.snapshots)
    assert "service" in note and "writes no file" in note and "journal" in note
    assert not under_service_manager({})


def test_edgerec_run_demo_under_systemd_labels_on_stdout_and_leaves_the_working_folder_alone(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edge.app.cli", "run", "--source", "demo", "--as-fast-as-possible",
                           "--max-frames", "50", "--threads", "1"], capture_output=True, text=True, cwd=tmp_path,
                          env=headless_env(INVOCATION_ID="0123abcd"), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fox squirrel" in done.stdout  # label changes, for the journal
    assert list(tmp_path.iterdir()) == []


def read_only_folder_command(folder: Path, *command: str) -> list[str]:
    """`command` run in `folder` with a read-only tmpfs mounted on it, in a private user and mount namespace
    (as root or not); skips the test where this system refuses such namespaces."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) to mount a read-only folder")
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "ro", "none", str(folder)],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs in a user namespace here: {probe.stderr.strip()}")
    script = 'mount -t tmpfs -o ro none "$0" && cd "$0" && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, str(folder), *command]


@pytest.mark.parametrize("service", [True, False])
def test_the_demo_in_a_read_only_working_folder(tmp_path, service):
    """The issue's case: the working folder is read-only. Under systemd the demo runs; elsewhere the error
    names the folder and why, not the video type."""
    command = read_only_folder_command(tmp_path, sys.executable, "-m", "edge.app.cli", "run", "--source", "demo",
                                       "--as-fast-as-possible", "--max-frames", "20", "--threads", "1")  # fmt: skip
    env = headless_env(INVOCATION_ID="0123abcd") if service else headless_env()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    if service:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2
        assert done.stderr.splitlines()[-1] == (f"edgerec: error: --out edgerec-demo.mp4: cannot write it: "
                                                f"folder {tmp_path} is read-only (a read-only file system)")


def frame_and_change() -> tuple[np.ndarray, Result]:
    probs = np.array([0.9, 0.1], np.float32)
    return np.zeros((48, 64, 3), np.uint8), Result(0, time.monotonic(), "cat", 0, 0.9, probs, True, True, 20.0, 30.0)


def test_a_video_in_an_unwritable_folder_is_refused_naming_the_folder():
    with pytest.raises(EdgerecError, match=rf"^--out /sys/out.mp4: cannot write it: {UNWRITABLE_WHY}$"):
        sink = VideoFileSink(UNWRITABLE / "out.mp4", fps=lambda: 25)  # e13c18c: accepted, then blamed the type
        sink.write(*frame_and_change())


def test_an_events_file_in_an_unwritable_folder_is_refused_naming_the_folder():
    with pytest.raises(EdgerecError, match=rf"^--events /sys/events.jsonl: cannot write it: {UNWRITABLE_WHY}$"):
        EventsSink(UNWRITABLE / "events.jsonl")


def test_a_snapshots_folder_that_takes_no_files_is_refused_at_once():
    with pytest.raises(EdgerecError, match=rf"^--snapshots /sys: cannot write there: {UNWRITABLE_WHY}$"):
        SnapshotSink(UNWRITABLE)  # e13c18c: accepted, then failed at the first label change


def test_a_file_in_the_way_of_the_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(EdgerecError, match=f"^--out {tmp_path}/file/out.mp4: cannot write it: {tmp_path}/file is "
                                           "not a folder$"):  # fmt: skip
        VideoFileSink(tmp_path / "file" / "out.mp4", fps=lambda: 25)
