"""scripts/bench/fit_after_session.py: times one fit after each kind of preceding work and prints them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "fit_after_session.py"


def test_prints_a_median_for_each_kind_of_preceding_work():
    done = subprocess.run([sys.executable, str(SCRIPT), "--runs", "3", "--frame", "640x480",
                           "--region", "0,0,0.5,0.5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fit of the region (0.0, 0.0, 0.5, 0.5) (320x240) of a 640x480 frame" in done.stdout
    lines = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [" ".join(words[:-2]) for words in lines] == [
        "back to back", "after a 16 MB memory sweep", "after session.run"]
    assert all(float(words[-2]) > 0 and words[-1] == "ms" for words in lines)
