"""libjpeg's own stderr lines (`Corrupt JPEG data: ...`, `Premature end of JPEG file`) stay out of the journal:
a JPEG cut short is named by edgerec before the decoder sees it, a damaged one is decoded with libjpeg's
line at debug level; EDGEREC_DEBUG=1 lets libjpeg speak again (issue 15, item 6)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_tiny_model, run_cli

from edge.core import decode
from edge.core.datasets import image_problem
from edge.core.decode import pass_on, stderr_captured

PHOTO = Path(__file__).parent / "data" / "photos" / "squirrel_cls.jpg"
LIBJPEG = ("Corrupt JPEG data", "Premature end of JPEG file")


def damaged(data: bytes) -> bytes:
    """`data` with 40 bytes of its coded data overwritten: libjpeg decodes it and says `Corrupt JPEG data: 14
    extraneous bytes before marker 0xd9`."""
    noise = np.random.default_rng(1).integers(0, 256, 40, np.uint8).tobytes()
    return data[:30000] + noise + data[30040:]


def encodings() -> list[bytes]:
    image = cv2.imread(str(PHOTO))
    kinds = ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])
    return [PHOTO.read_bytes()] + [cv2.imencode(".jpg", image, params)[1].tobytes() for params in kinds]


@pytest.mark.parametrize("index", range(4))
def test_a_jpeg_cut_anywhere_is_named_before_the_decoder_sees_it_and_a_whole_one_passes(index):
    data = encodings()[index]  # the photo as it is; baseline, progressive, with restart markers
    assert image_problem(data) == "" and image_problem(data + b"trailing bytes") == ""
    for cut in (3, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 2, len(data) - 1):
        assert "cut short" in image_problem(data[:cut]), cut


def test_the_decoders_lines_go_to_the_debug_log_and_anything_else_back_to_stderr(capfd, monkeypatch):
    logged: list[str] = []
    monkeypatch.setattr(decode.log, "debug", lambda message, *args: logged.append(message % args))
    with stderr_captured() as said:
        os.write(2, b"Corrupt JPEG data: 14 extraneous bytes before marker 0xd9\nsomething else\n")
    pass_on(said, "a.jpg")
    assert capfd.readouterr().err == "something else\n"
    assert logged == ["a.jpg: the decoder said: Corrupt JPEG data: 14 extraneous bytes before marker 0xd9"]


@pytest.fixture
def bad_jpegs(tmp_path: Path) -> Path:
    """A class folder with a whole photo, a damaged one (complete, decodable) and one cut short."""
    folder = tmp_path / "data" / "squirrel"
    folder.mkdir(parents=True)
    data = PHOTO.read_bytes()
    (folder / "a_whole.jpg").write_bytes(data)
    (folder / "b_damaged.jpg").write_bytes(damaged(data))
    (folder / "c_cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "data" / "other").mkdir()
    (tmp_path / "data" / "other" / "whole.jpg").write_bytes(data)
    return tmp_path / "data"


def test_classify_keeps_libjpegs_lines_off_stderr_and_debug_brings_them_back(bad_jpegs, monkeypatch):
    monkeypatch.delenv("EDGEREC_DEBUG", raising=False)
    damaged_file = str(bad_jpegs / "squirrel" / "b_damaged.jpg")
    result = run_cli("classify", damaged_file)
    assert result.returncode == 0 and "b_damaged.jpg: " in result.stdout
    assert not [line for line in result.stderr.splitlines() if line.startswith(LIBJPEG)], result.stderr
    monkeypatch.setenv("EDGEREC_DEBUG", "1")
    assert "Corrupt JPEG data" in run_cli("classify", damaged_file).stderr


def test_evaluate_names_the_jpeg_cut_short_and_prints_no_libjpeg_line(bad_jpegs, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEREC_DEBUG", raising=False)
    model = make_tiny_model(tmp_path / "tiny.onnx", labels=["other", "squirrel"])
    result = run_cli("evaluate", str(model), str(bad_jpegs))
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(LIBJPEG)], result.stderr
    assert "c_cut.jpg" in result.stdout + result.stderr and "cut short" in result.stdout + result.stderr


def test_training_calibration_reads_a_jpeg_cut_short_as_nothing_and_quietly(bad_jpegs, capfd):
    from training.calibration import read_frames

    assert list(read_frames(bad_jpegs / "squirrel" / "c_cut.jpg", 1)) == []
    assert "Premature end of JPEG file" not in capfd.readouterr().err


def test_trainings_scan_skips_a_jpeg_cut_short_saying_so(bad_jpegs):
    from training.data import scan_folder

    scan = scan_folder(bad_jpegs, workers=1)
    assert [(u.path.name, "cut short" in u.reason) for u in scan.unreadable] == [("c_cut.jpg", True)]
