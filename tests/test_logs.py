"""edge.logs: journald gets `<priority>` lines without timestamps; a terminal or a file gets timestamps."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.logs import setup_logging, stream_is_journal, syslog_priority


@pytest.fixture(autouse=True)
def restore_edgerec_logger() -> Iterator[None]:
    logger = logging.getLogger("edgerec")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def log_lines(path: Path, journal_stream: str | None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    with open(path, "w") as stream:
        if journal_stream is None:
            monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        else:
            st = os.fstat(stream.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", journal_stream.format(dev=st.st_dev, ino=st.st_ino))
        logger = setup_logging(stream=stream)
        logging.getLogger("edgerec.capture").info("source up: /dev/video0 640x480")
        logger.warning("source down: no frame for 5 s")
        logger.debug("hidden unless verbose")
    return path.read_text().splitlines()


def test_journal_lines_carry_the_priority_and_no_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = log_lines(tmp_path / "journal", "{dev}:{ino}", monkeypatch)
    assert lines == ["<6>edgerec.capture: source up: /dev/video0 640x480",
                     "<4>edgerec: source down: no frame for 5 s"]


@pytest.mark.parametrize("journal_stream", [None, "{dev}:1", "garbage"])
def test_other_streams_get_timestamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      journal_stream: str | None) -> None:
    lines = log_lines(tmp_path / "file", journal_stream, monkeypatch)
    assert len(lines) == 2
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO edgerec.capture: source up: /dev/video0 640x480", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING edgerec: source down: no frame for 5 s", lines[1])


def test_stream_without_descriptor_is_not_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not stream_is_journal(io.StringIO())


def test_priorities() -> None:
    assert [syslog_priority(level) for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                                                 logging.CRITICAL)] == [7, 6, 4, 3, 2]


def dead_stream_run(tmp_path: Path, **env: str) -> list[str]:
    """stderr of `edgerec run` for 2 s against an HTTP camera nobody answers (a port just closed)."""
    import socket
    import subprocess
    import sys

    from conftest import REPO, make_tiny_model

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCV_", "EDGEREC_DEBUG"))}
    result = subprocess.run(
        [sys.executable, "-m", "edge.app.cli", "run", "--source", f"http://127.0.0.1:{port}/video.mjpg", "--no-display",
         "--duration", "2", "--model", str(make_tiny_model(tmp_path / "tiny.onnx"))],
        capture_output=True, text=True, cwd=REPO, timeout=60, env={**environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_a_camera_away_reads_as_edgerec_lines_only(tmp_path: Path) -> None:
    """OpenCV's and FFmpeg's own lines ([tcp @ 0x...] Connection ... failed, [ WARN:0@...] ... VIDEOIO) on
    every retry are silenced: what is left is edgerec's line per reconnect and its summary."""
    lines = dead_stream_run(tmp_path)
    assert any("edgerec.run: source: reconnecting" in line for line in lines), lines
    assert not [line for line in lines if line.startswith("[") or "VIDEOIO" in line or "tcp @" in line], lines


def test_edgerec_debug_lets_the_libraries_speak(tmp_path: Path) -> None:
    lines = dead_stream_run(tmp_path, EDGEREC_DEBUG="1")
    assert any(line.startswith("[tcp @ ") and "Connection refused" in line for line in lines), lines
