"""scripts/bench/time_train.py: its timers add up and are taken off again, and --gate-batch is split off (no
training run here)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch", reason="the [train] extra")

FOLDER = Path(__file__).resolve().parent.parent / "scripts" / "bench"
sys.path.insert(0, str(FOLDER))
spec = importlib.util.spec_from_file_location("time_train", FOLDER / "time_train.py")
tt = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = tt
spec.loader.exec_module(tt)


def test_timers_sum_each_call_and_are_removed_afterwards():
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    owner = SimpleNamespace(__name__="owner", nap=nap)
    seconds: dict[str, float] = {}
    with tt.timed(((owner, "nap"),), seconds):
        assert owner.nap(0.02) == 0.02 and owner.nap(0.03) == 0.03
        assert owner.nap is not nap
    assert owner.nap is nap
    assert 0.05 <= seconds["owner.nap"] < 0.5


def test_gate_batch_is_taken_off_the_train_arguments():
    assert tt.split_gate_batch(["d", "--out", "o", "--gate-batch", "64", "--quiet"]) == (
        ["d", "--out", "o", "--quiet"], 64)
    assert tt.split_gate_batch(["d", "--out", "o"]) == (["d", "--out", "o"], None)
