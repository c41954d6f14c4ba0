"""scripts/bench/bench_decode.py: times full and reduced JPEG decodes and the fit after each, and says how far
each fitted input is from INTER_AREA on the full decode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "bench_decode.py"


def test_prints_one_row_per_decode_size_and_with_labels_the_model_on_each():
    done = subprocess.run([sys.executable, str(SCRIPT), "--size", "640x360", "--runs", "2", "--labels"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    timing, labels = done.stdout.split("default model")
    rows = [line.split("|")[1:-1] for line in timing.splitlines() if line.startswith("| ") and "ms" not in line]
    assert [(r[0].split()[0], r[1].strip()) for r in rows] == [("full", "640x360"), ("1/2", "320x180"),
                                                              ("1/4", "160x90")]
    full_diff, half_diff = float(rows[0][5]), float(rows[1][5])
    assert 0 <= full_diff < half_diff  # the reduced decode's input is further from INTER_AREA's
    found = [line.split("|")[1:-1] for line in labels.splitlines() if line.startswith("| ") and "/" in line]
    assert [r[0].split()[0] for r in found] == ["full", "1/2", "1/4", "INTER_AREA,"]
    assert all(r[1].strip().endswith("/1") for r in found)  # one frame: the sample


def test_a_quality_out_of_range_is_refused_in_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quality", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--quality must be 1-100, got 0" in done.stderr
