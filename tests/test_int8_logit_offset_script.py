"""scripts/bench/int8_logit_offset.py: agreement without and with each per-class offset, on both photo sets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import PHOTOS

from edge.core.model import default_model_path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "int8_logit_offset.py"


def test_a_file_against_itself_agrees_everywhere_with_no_offset_and_prints_every_row():
    model = str(default_model_path())
    done = subprocess.run([sys.executable, str(SCRIPT), "--fp32", model, "--int8", model, "--fit", str(PHOTOS),
                           "--held-out", str(PHOTOS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    n = len(list(PHOTOS.glob("*.jpg")))
    assert lines[1] == f"offset, scale: agreement with FP32 on fit ({n} photos), held out ({n} photos)"
    assert lines[2] == f"none: {n}, {n}"
    rows = [re.fullmatch(r"(mean|weighted) x([\d.]+): (\d+), (\d+)", line) for line in lines[3:]]
    assert all(rows) and len(rows) == 6
    assert all(row[3] == row[4] == str(n) for row in rows)  # the same file: every offset is 0
