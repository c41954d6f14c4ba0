"""`edgerec bench`: where the milliseconds go for one or more model files, measured side by side.

Rounds are interleaved across models so that a noisy neighbour slows every model alike; compare the
ratios printed in one run, not absolute figures across runs.

`edgerec bench --pipeline` (`bench_pipeline`) times one model's session.run alone against the whole
per-frame path of `edgerec run` (edge.loop.pipeline.FrameLoop) in the same interleaved rounds.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.core.devices import cpu_description, int8_sums, int8_sums_saturate
from edge.core.model import Model, default_model_path
from edge.core.novelty import DEFAULT_CAP, build_novelty
from edge.core.preprocess import fit
from edge.live.capture import DECODE_SCALES, SourceOptions, StillSource
from edge.live.regions import RegionOptions
from edge.live.result import FrameResult
from edge.loop.pipeline import RUN_MODEL, RunOptions, build_loop, one_blas_thread, using_opencv_threads
from edge.sinks import NullSink

FRAME_SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}
CAMERA_JPEG_QUALITY = 85  # an MJPEG camera's frames, for --decode-scale (bench_decode.py uses the same)


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
    cpu: str = field(default_factory=cpu_description)
    """The CPU the figures were measured on (edge.core.devices.cpu_description): INT8 speed depends on it."""
    int8_sums: str = "32-bit"
    """How INT8 products were summed: "32-bit", or "16-bit saturating" (--fast-int8 on x86 without VNNI)."""


def sample_frame(height: int, width: int) -> np.ndarray:
    """A real photo (shipped in the package) scaled to a camera frame size."""
    photo = cv2.imread(str(default_model_path().parent / "samples" / "squirrel_cls.jpg"))
    if photo is None:  # package installed without samples: a textured synthetic frame
        photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)


def decoded_frame(height: int, width: int, decode_scale: int) -> np.ndarray:
    """sample_frame as an MJPEG camera's frame (JPEG quality CAMERA_JPEG_QUALITY) decoded at 1/`decode_scale` of
    its size, as `SourceOptions.decode_scale` has the grabber do; the frame itself for 1."""
    frame = sample_frame(height, width)
    if decode_scale == 1:
        return frame
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, CAMERA_JPEG_QUALITY])[1]
    return cv2.imdecode(jpeg, DECODE_SCALES[decode_scale])


def bench(paths: Sequence[str | Path | None], device: str = "auto", threads: int | None = None,
          runs: int = 200, fast_int8: bool = False) -> list[BenchResult]:
    models = [Model.load(p, device, threads, int32_sums=not fast_int8) for p in paths]
    results = [BenchResult(str(m.path), m.info.precision, m.provider, m.threads, m.load_ms,
                           int8_sums=int8_sums(not fast_int8)) for m in models]
    frames = {name: sample_frame(*hw) for name, hw in FRAME_SIZES.items()}
    inputs = [np.ascontiguousarray(fit(frames["640x480"], m.geometry)[None]) for m in models]
    stages: dict[str, list[Callable[[], object]]] = {"session": [
        (lambda m=m, x=x: m.infer(x)) for m, x in zip(models, inputs)]}
    for name, frame in frames.items():
        stages[f"frame {name}"] = [_frame_path(m, frame) for m in models]
        stages[f"preprocess {name}"] = [_preprocess(m, frame) for m in models]
    timings = {stage: time_interleaved(calls, runs) for stage, calls in stages.items()}
    single = [Model.load(p, device, 1, int32_sums=not fast_int8) for p in paths]
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
    return [summary(s) for s in samples_interleaved(calls, runs, clock)]


def samples_interleaved(calls: list[Callable[[], object]], runs: int,
                        clock: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Each call's milliseconds in each of ``runs`` rounds (one call of each per round), after a warm-up."""
    samples: list[list[float]] = [[] for _ in calls]
    for call in calls:  # warm-up
        for _ in range(5):
            call()
    for _ in range(runs):
        for call, sample in zip(calls, samples):
            start = clock()
            call()
            sample.append((clock() - start) * 1000)
    return samples


def summary(samples: list[float]) -> Timing:
    return Timing(float(np.median(samples)), float(np.percentile(samples, 95)))


def median_interval(values: np.ndarray) -> tuple[float, float]:
    """A distribution-free 95% interval of the median: the order statistics n/2 -+ 0.98 sqrt(n)."""
    ordered, n = np.sort(values), len(values)
    half = 0.98 * np.sqrt(n)
    return float(ordered[max(0, int(np.floor(n / 2 - half)))]), float(ordered[min(n - 1, int(np.ceil(n / 2 + half)))])


# --- edgerec bench --pipeline: the whole per-frame path against session.run alone ---------------------

PATH_STAGES = ("preprocess", "infer", "smooth", "overlay", "sinks", "frame", "beyond-model")
SINKS = ("null", "pixels")
TARGET_PCT = {"640x480": 10.0, "1920x1080": 25.0}  # issue 5: per-frame cost beyond session.run, % of it
QUARTERS = ((0.25, 0.25, 0.5, 0.5), (0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5))
PLACES = {"whole": (), "1 quarter": QUARTERS[:1], "3 quarters": QUARTERS}
"""Regions timed on 1080p frames: none (the whole frame), one or three boxes of a quarter of the frame each."""
REGION_TARGET_PCT = 15.0  # issue 12: per region, beyond session.run, % of it


@dataclass(frozen=True)
class PathTiming:
    """One frame size and sink, one clock: medians over the same interleaved rounds."""

    frame_size: str
    sink: str
    places: str
    """"whole" (no region), "1 quarter" or "3 quarters" (PLACES)."""
    """"null": nothing shows pixels, so no overlay is drawn; "pixels": a sink that shows pixels, so the
    overlay is drawn for it (the sink's own work, a window's imshow or an encoder, is not counted)."""
    session: Timing
    """session.run alone on a fitted batch, in the same rounds."""
    stages: dict[str, Timing]
    """The pipeline's own stage timers: preprocess, infer (session.run in the path), smooth, overlay,
    sinks, frame (arrival to last sink) and beyond-model (frame minus infer, per frame)."""
    beyond_pct: float
    """Median beyond-model per region as a percentage of the median session.run alone (batch 1)."""
    target_pct: float
    infer_per_region_pct: float = 100.0
    """session.run in the path per region, as a percentage of session.run alone: below 100 when a batch of
    several regions costs less than as many single runs."""


@dataclass
class PipelineBenchResult:
    model: str
    precision: str
    provider: str
    runs: int
    opencv_threads: int
    spinning: bool
    """ONNX Runtime's session.intra_op.allow_spinning (its default is on)."""
    wall_threads: int
    wall: list[PathTiming] = field(default_factory=list)
    """time.perf_counter with the session at `wall_threads` threads: what a frame takes on this machine now."""
    cpu_1thread: list[PathTiming] = field(default_factory=list)
    """time.thread_time with a one-thread session (it runs in the calling thread): CPU time, steady on a
    busy machine."""
    novelty: NoveltyTiming | None = None
    """What saying `unknown` adds per region (None: the model has no features output)."""
    decode_scale: int = 1
    """The camera frames were JPEG decoded at 1/decode_scale of their size (SourceOptions.decode_scale); the frame
    size of each row is the camera's, the targets too."""
    cpu: str = field(default_factory=cpu_description)
    """The CPU the figures were measured on."""
    int8_sums: str = "32-bit"
    """How INT8 products were summed (BenchResult.int8_sums)."""


@dataclass
class NoveltyTiming:
    references: int
    dim: int
    source: str
    """"the model file's" or "synthetic" (random unit vectors, as many as the reference cap)."""
    in_graph: bool
    """Whether the score ran inside session.run (edge.core.novelty_graph) or in NumPy after it."""
    probs_ms: Timing
    """session.run asked for probs alone, one thread, CPU time."""
    features_ms: Timing
    """session.run asked for probs and features, in the same rounds."""
    novelty_ms: Timing
    """Model.infer_novelty: probs, features and the novelty score, in the same rounds."""
    added_ms: float
    """What saying `unknown` adds per region to a run that asks for probs alone: the median over rounds of
    (infer_novelty - infer) in the same round."""
    added_interval: tuple[float, float]
    """95% interval of that median (order statistics)."""


class PixelSink:
    """Stands for a sink that shows pixels (window, recording): the overlay is drawn for it; it does nothing."""

    wants_overlay = True

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        pass

    def close(self) -> None:
        pass


def bench_pipeline(path: str | Path | None = None, device: str = "auto", threads: int | None = None,
                   runs: int = 200, opencv_threads: int = 1, spinning: bool = True,
                   decode_scale: int = 1, fast_int8: bool = False) -> PipelineBenchResult:
    """Time session.run alone and the whole per-frame path side by side, in interleaved rounds.

    The camera is a still of a real photo scaled to each frame size, looping as fast as possible. Two
    clocks in the same rounds: wall time with a `threads`-thread session (None: ONNX Runtime's choice)
    and CPU time with a one-thread session.
    """
    wall_model = load_model(path, device, threads, spinning, fast_int8)
    cpu_model = load_model(path, device, 1, spinning, fast_int8)
    result = PipelineBenchResult(str(wall_model.path), wall_model.info.precision, wall_model.provider, runs,
                                 opencv_threads, spinning, wall_model.threads, decode_scale=decode_scale,
                                 int8_sums=int8_sums(not fast_int8))
    with using_opencv_threads(opencv_threads):
        benches = [PathBench(model, size, sink, clock, places, decode_scale)
                   for model, clock in ((wall_model, time.perf_counter), (cpu_model, time.thread_time))
                   for size in FRAME_SIZES for places in (PLACES if size == "1920x1080" else ("whole",))
                   for sink in SINKS]  # fmt: skip
        for _ in range(5):  # warm-up: buffers, kernels, caches
            for bench_ in benches:
                bench_.round()
        for bench_ in benches:
            bench_.clear()
        for _ in range(runs):
            for bench_ in benches:
                bench_.round()
    for bench_ in benches:
        (result.wall if bench_.clock is time.perf_counter else result.cpu_1thread).append(bench_.timing())
    if cpu_model.has_features:
        with one_blas_thread():  # as in the run
            result.novelty = bench_novelty(cpu_model.path, device, spinning, runs)
    return result


def bench_novelty(path: Path, device: str, spinning: bool, runs: int) -> NoveltyTiming:
    """session.run asked for probs alone, for probs and features, and for probs, features and the novelty score
    (as the loop asks when a region says `unknown`), one thread, CPU time, interleaved. A file without novelty
    data is scored against synthetic references, as many as teach stores at most, so the row says what a taught
    model would cost."""
    model, source = load_model(path, device, 1, spinning), "the model file's"
    if model.novelty is None:
        dim = model.info.features.dim
        rng = np.random.default_rng(0)
        synthetic = build_novelty(rng.standard_normal((DEFAULT_CAP, dim)).astype(np.float32),
                                  np.arange(DEFAULT_CAP) % 5)
        model, source = Model.load(path, device, 1, spinning=spinning, novelty=synthetic), "synthetic"
    assert model.novelty is not None
    batch = np.empty((1, *model.info.input_size, 3), np.uint8)
    fit(sample_frame(480, 640), model.geometry, out=batch[0])
    probs, features, novelty = samples_interleaved([lambda: model.infer(batch), lambda: model.features(batch),
                                                    lambda: model.infer_novelty(batch)], runs, time.thread_time)
    added = np.array(novelty) - np.array(probs)  # each round's pair: a machine's slow spells cancel out
    refs = model.novelty.info.references
    return NoveltyTiming(len(refs), refs.shape[1], source, model.novelty_in_graph, summary(probs), summary(features),
                         summary(novelty), float(np.median(added)), median_interval(added))


def load_model(path: str | Path | None, device: str, threads: int | None, spinning: bool,
               fast_int8: bool = False) -> Model:
    """Model.load, with ONNX Runtime's pool threads sleeping between runs when not `spinning`."""
    return Model.load(path, device, threads, spinning=spinning, int32_sums=not fast_int8)


class PathBench:
    """One frame size and sink on one model and clock: a FrameLoop on a looping still, plus session alone.

    Each `round()` times session.run alone, then one frame through the loop; `timing()` summarises."""

    def __init__(self, model: Model, size: str, sink: str, clock: Callable[[], float], places: str = "whole",
                 decode_scale: int = 1) -> None:
        self.model, self.size, self.sink, self.clock, self.places = model, size, sink, clock, places
        image = decoded_frame(*FRAME_SIZES[size], decode_scale)
        source_options = SourceOptions(f"still {size}", paced=False, loop=True)
        source = StillSource(image, source_options)
        regions = tuple(RegionOptions(f"q{i}", box) for i, box in enumerate(PLACES[places]))
        self.regions = max(1, len(regions))
        options = RunOptions(source_options, display=False, regions=regions)
        sinks = [NullSink() if sink == "null" else PixelSink()]
        self.loop = build_loop(options, {RUN_MODEL: model}, [source], sinks, threading.Event(), clock=clock)
        self.batch = np.ascontiguousarray(fit(image, model.geometry)[None])
        self.clear()

    def clear(self) -> None:
        self.samples: dict[str, list[float]] = {name: [] for name in ("session", *PATH_STAGES)}

    def round(self) -> None:
        start = self.clock()
        self.model.infer(self.batch)
        self.samples["session"].append((self.clock() - start) * 1000)
        if not self.loop.step(1.0):
            raise RuntimeError("the looping still source gave no frame")
        timers = self.loop.timers
        for name in PATH_STAGES:
            if name != "overlay" or self.sink != "null":
                self.samples[name].append(timers[name].latest)

    def timing(self) -> PathTiming:
        stats = {name: _timing(s) for name, s in self.samples.items() if s}
        session = stats.pop("session")
        pct = 100.0 * stats["beyond-model"].median_ms / self.regions / session.median_ms
        target = TARGET_PCT[self.size] if self.places == "whole" else REGION_TARGET_PCT
        infer_pct = 100.0 * stats["infer"].median_ms / self.regions / session.median_ms
        return PathTiming(self.size, self.sink, self.places, session, stats, pct, target, infer_pct)


def _timing(samples: Sequence[float]) -> Timing:
    return Timing(float(np.median(samples)), float(np.percentile(samples, 95)))


def cpu_note(sums: str) -> str:
    """What the CPU line adds where the INT8 arithmetic is a choice (x86 without VNNI), else nothing."""
    if not int8_sums_saturate():
        return ""
    return f"; INT8 in {sums} sums" + (" (--fast-int8)" if sums != "32-bit" else " (--fast-int8: the faster "
                                                                               "saturating kernels)")


def pipeline_table(result: PipelineBenchResult) -> list[str]:
    """`edgerec bench --pipeline` as text: one row per clock, frame size, regions and sink, medians in ms."""
    lines = [
        f"CPU: {result.cpu}{cpu_note(result.int8_sums)}",
        f"{Path(result.model).name} ({result.precision}, {result.provider}), {result.runs} interleaved rounds, "
        f"OpenCV {result.opencv_threads} thread(s), ORT spinning {'on' if result.spinning else 'off'}"
        + (f"; camera frames JPEG-decoded at 1/{result.decode_scale} size (--decode-scale): the path sees "
           + ", ".join(f"{w // result.decode_scale}x{h // result.decode_scale}" for h, w in FRAME_SIZES.values())
           if result.decode_scale > 1 else ""),
        f"{'clock':17s} {'frame':9s} {'regions':10s} {'sink':6s} {'session':>7s} {'preproc':>7s} {'smooth':>6s} "
        f"{'overlay':>7s} {'sinks':>5s} {'frame':>6s} {'beyond':>6s} {'beyond/session':>14s} {'target':>6s} "
        f"{'infer/session':>13s}",
    ]
    for clock, rows in ((f"wall, {result.wall_threads} thr", result.wall), ("cpu, 1 thr", result.cpu_1thread)):
        for row in rows:
            ms = {name: timing.median_ms for name, timing in row.stages.items()}
            overlay = f"{ms['overlay']:7.2f}" if "overlay" in ms else f"{'-':>7s}"
            lines.append(
                f"{clock:17s} {row.frame_size:9s} {row.places:10s} {row.sink:6s} {row.session.median_ms:7.2f} "
                f"{ms['preprocess']:7.2f} {ms['smooth']:6.2f} {overlay} {ms['sinks']:5.2f} {ms['frame']:6.2f} "
                f"{ms['beyond-model']:6.2f} {row.beyond_pct:13.1f}% {'<=':>3s}{row.target_pct:.0f}% "
                f"{row.infer_per_region_pct:12.0f}%"
            )
    novelty = result.novelty
    if novelty is not None:
        where = "in the graph" if novelty.in_graph else "in NumPy after the run"
        lines.append(f"unknown (cpu, 1 thr): session.run {novelty.probs_ms.median_ms:.3f} ms for probs, "
                     f"{novelty.features_ms.median_ms:.3f} with features, {novelty.novelty_ms.median_ms:.3f} with "
                     f"the novelty score {where} ({novelty.references} {novelty.source} references x "
                     f"{novelty.dim}): {novelty.added_ms:+.3f} ms per region (95% {novelty.added_interval[0]:+.3f} to "
                     f"{novelty.added_interval[1]:+.3f}; target <= 0.2)")
    lines.append("session = session.run alone (batch 1); frame = arrival to last sink (motion + preprocess + "
                 "session.run + smooth + overlay + sinks); beyond = frame - session.run in the path; beyond/session "
                 "and infer/session per region (several regions run as one batch); median ms; cpu = "
                 "time.thread_time of a one-thread session, steady on a busy machine")
    return lines
