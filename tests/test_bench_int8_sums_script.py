"""scripts/bench/bench_int8_sums.py: times the embedded INT8 model with and without ONNX Runtime's 32-bit-sum
setting and says what changed; where the kernels do not saturate, nothing may."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from edge.core.devices import int8_sums_saturate

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "bench_int8_sums.py"


def test_prints_both_sessions_the_ratio_and_the_difference():
    done = subprocess.run([sys.executable, str(SCRIPT), "--runs", "2", "--batch", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    saturates = "yes" if int8_sums_saturate() else "no"
    assert lines[0].startswith("CPU: ") and lines[0].endswith(f"kernels saturate here: {saturates}")
    assert "efficientnet_lite0_imagenet_int8.onnx (int8): 3 images a run, 1 thread(s), 2 interleaved rounds" in lines[1]
    assert [line.split()[0] for line in lines[2:4]] == ["this", "session.x64quantprecision"]
    match = re.fullmatch(r"setting / kernels: [\d.]+x; largest output difference (\S+); top-1 the same on (\d)/3 "
                         r"images", lines[4])
    assert match, lines[4]
    if not int8_sums_saturate():  # VNNI, ARM: the setting changes nothing but the time
        assert float(match[1]) == 0.0 and match[2] == "3"
