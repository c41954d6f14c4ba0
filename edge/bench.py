"""`edgerec bench`: where the milliseconds go for one or more model files, measured side by side.

Rounds are interleaved across models so that a noisy neighbour slows every model alike; compare the
ratios printed in one run, not absolute figures across runs.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.model import Model, default_model_path
from edge.preprocess import fit

FRAME_SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float


@dataclass
class BenchResult:
    model: str
    precision: str
    provider: str
    threads: int
    load_ms: float
    session: Timing | None = None
    session_cpu_1thread: Timing | None = None  # CPU time of a 1-thread session: steady on a busy machine
    frame: dict[str, Timing] = field(default_factory=dict)  # preprocess + session from a camera-size frame
    preprocess: dict[str, Timing] = field(default_factory=dict)
    rss_mb: float = 0.0


def sample_frame(height: int, width: int) -> np.ndarray:
    """A real photo (shipped in the package) scaled to a camera frame size."""
    photo = cv2.imread(str(default_model_path().parent / "samples" / "squirrel_cls.jpg"))
    if photo is None:  # package installed without samples: a textured synthetic frame
        photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)


def bench(paths: Sequence[str | Path | None], device: str = "auto", threads: int | None = None,
          runs: int = 200) -> list[BenchResult]:
    models = [Model.load(p, device, threads) for p in paths]
    results = [BenchResult(str(m.path), m.info.precision, m.provider, m.threads, m.load_ms) for m in models]
    frames = {name: sample_frame(*hw) for name, hw in FRAME_SIZES.items()}
    inputs = [np.ascontiguousarray(fit(frames["640x480"], m.geometry)[None]) for m in models]
    stages: dict[str, list[Callable[[], object]]] = {"session": [
        (lambda m=m, x=x: m.infer(x)) for m, x in zip(models, inputs)]}
    for name, frame in frames.items():
        stages[f"frame {name}"] = [_frame_path(m, frame) for m in models]
        stages[f"preprocess {name}"] = [_preprocess(m, frame) for m in models]
    timings = {stage: time_interleaved(calls, runs) for stage, calls in stages.items()}
    single = [Model.load(p, device, 1) for p in paths]
    cpu = time_interleaved([(lambda m=m, x=x: m.infer(x)) for m, x in zip(single, inputs)], runs, time.thread_time)
    for i, result in enumerate(results):
        result.session = timings["session"][i]
        result.session_cpu_1thread = cpu[i]
        for name in frames:
            result.frame[name] = timings[f"frame {name}"][i]
            result.preprocess[name] = timings[f"preprocess {name}"][i]
        result.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _frame_path(model: Model, frame: np.ndarray) -> Callable[[], object]:
    buffer = np.empty((1, *model.info.input_size, 3), np.uint8)

    def run() -> object:
        fit(frame, model.geometry, out=buffer[0])
        return model.infer(buffer)
    return run


def _preprocess(model: Model, frame: np.ndarray) -> Callable[[], object]:
    buffer = np.empty((*model.info.input_size, 3), np.uint8)
    return lambda: fit(frame, model.geometry, out=buffer)


def time_interleaved(calls: list[Callable[[], object]], runs: int,
                     clock: Callable[[], float] = time.perf_counter) -> list[Timing]:
    """Median/p95 of each call over ``runs`` rounds, one call of each per round.

    With ``clock=time.thread_time`` and single-threaded sessions (which run in the calling thread) this is
    CPU time, which other processes on a busy machine barely disturb.
    """
    samples = [[] for _ in calls]
    for call in calls:  # warm-up
        for _ in range(5):
            call()
    for _ in range(runs):
        for call, sample in zip(calls, samples):
            start = clock()
            call()
            sample.append((clock() - start) * 1000)
    return [Timing(float(np.median(s)), float(np.percentile(s, 95))) for s in samples]
