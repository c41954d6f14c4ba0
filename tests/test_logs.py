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
