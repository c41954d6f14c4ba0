"""scripts/bench/bench_draw_motion.py: prints a warm and an after-session.run figure per call, and finds the
shipped and the always-masked motion comparison in agreement on a clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import write_clip

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "bench_draw_motion.py"


def test_prints_each_cost_and_the_states_check(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", ["red"] * 10 + ["green"] * 10 + ["blue"] * 10)
    done = subprocess.run([sys.executable, str(SCRIPT), "--runs", "3", "--clip", str(clip)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = [line.rsplit(maxsplit=2) for line in lines[2:8]]
    assert [name.strip() for name, _, _ in rows] == [
        "outline, four strips (the overlay)", "outline, cv2.rectangle thickness 3",
        "motion update, analysed still frame", "the same, comparison always masked (before)",
        "mean over the calm pixels, masked", "mean over the calm pixels, unmasked"]
    assert all(float(warm) > 0 and float(after) > 0 for _, warm, after in rows)
    assert lines[8].startswith("clip.mp4: ") and lines[8].endswith("states differ on 0")
