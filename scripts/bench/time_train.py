"""Where `edgerec train` spends its time besides the stages it prints: wall seconds of the calls that cost most
(decoding, the gate's paired predictions, the quantizer, checkpoint writes), summed over the run.

    python scripts/bench/time_train.py /tmp/ps200 --out /tmp/run --quiet
    python scripts/bench/time_train.py /tmp/ps200 --out /tmp/run --quiet --gate-batch 64

Every argument but --gate-batch goes to `edgerec train` as it is; --gate-batch N runs the gate's paired
predictions in batches of N instead of `training.gate.BATCH` (docs/training.md compares 16 and 64). The
call times print after the run's own summary, one line each.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench_watch import cpu_model  # this folder is on the path when the script runs

import training.gate as gate
import training.train as train
from edge.app.cli import main as edgerec

CALLS = ((train, "load_images"), (train, "export_onnx"), (train.Checkpoint, "save"), (gate, "predict"),
         (gate, "predict_exact"), (gate, "quantize_model"), (gate, "cpu_ms"))
"""(owner, name) of the calls timed: what `training.train` and `training.gate` call them as."""


@contextmanager
def timed(calls: tuple[tuple[Any, str], ...], seconds: dict[str, float]) -> Iterator[None]:
    """Replace each call by a wrapper adding its wall seconds to seconds["owner.name"]; restored on exit."""
    saved = [(owner, name, getattr(owner, name)) for owner, name in calls]
    for owner, name, call in saved:
        key = f"{owner.__name__}.{name}"
        setattr(owner, name, _timer(call, key, seconds))
    try:
        yield
    finally:
        for owner, name, call in saved:
            setattr(owner, name, call)


def _timer(call: Callable[..., Any], key: str, seconds: dict[str, float]) -> Callable[..., Any]:
    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
    return wrapper


def split_gate_batch(argv: list[str]) -> tuple[list[str], int | None]:
    """(the arguments for `edgerec train`, the --gate-batch value or None)."""
    if "--gate-batch" not in argv:
        return argv, None
    at = argv.index("--gate-batch")
    return argv[:at] + argv[at + 2:], int(argv[at + 1])


def main(argv: list[str] | None = None) -> int:
    args, batch = split_gate_batch(list(sys.argv[1:] if argv is None else argv))
    if batch is not None:
        paired = gate.paired_batches
        gate.paired_batches = lambda sets, limit, _=gate.BATCH: paired(sets, limit, batch)
    seconds: dict[str, float] = {}
    with timed(CALLS, seconds):
        status = edgerec(["train", *args])
    print(f"\ncalls, wall seconds in all ({cpu_model()}; gate batch {batch or gate.BATCH}):")
    for key, spent in seconds.items():
        print(f"{spent:8.2f}  {key}")
    return status


if __name__ == "__main__":
    sys.exit(main())
