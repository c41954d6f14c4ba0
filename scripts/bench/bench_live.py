"""Frame age at inference on a live source: a loopback HTTP MJPEG camera at a given frame rate.

    python scripts/bench/bench_live.py [--fps 15 30] [--seconds 20] [--size 640x480] [--threads N]
                                       [--decode-scale 1 2]

The camera is tests/mjpeg_server.py on 127.0.0.1, in a child process, sending a real photo (edge/assets/samples,
scaled to --size) as JPEG at a steady rate; `edgerec run`'s pipeline (edge.loop.pipeline.run, the INT8 default
model, no display) reads it through the grabber thread that keeps only the newest frame, decoding each JPEG at
1/`--decode-scale` of its size (`SourceOptions.decode_scale`). Frame age is the pipeline's own figure: from the
frame's arrival (decoded by the grabber) to the start of its preprocessing. "CPU" is this process's CPU time
(the grabber's decoding, the frame loop and inference, with ONNX Runtime's threads sleeping between runs as
`edgerec run` lets them on a live camera; the camera's process not counted) per second of the run.

Two checks that the pipeline never works on a stale frame, counted for every frame the model ran on:
"newer at read": a newer frame had already arrived before `read` was called (must be 0: the read hands
over the newest); "newer at infer": a newer one arrived by the time session.run started (during the read
or the preprocessing).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mjpeg_server import MjpegServer  # noqa: E402

from edge.app.bench import sample_frame  # noqa: E402
from edge.core.devices import cpu_description  # noqa: E402
from edge.core.model import Model  # noqa: E402
from edge.live.capture import Frame, SourceOptions, open_source  # noqa: E402
from edge.loop.pipeline import RunOptions, RunSummary, run  # noqa: E402


class Watched:
    """A live source and a model, wrapped to count frames that were not the newest when used."""

    def __init__(self, source, model: Model) -> None:
        self.source, self.model = source, model
        self.live, self.labels, self.geometry = source.live, model.labels, model.geometry
        self.index = -1
        self.newer_at_read = self.newer_at_infer = 0

    @property
    def fps(self) -> float | None:
        return self.source.fps

    @property
    def ended(self) -> bool:
        return self.source.ended

    def read(self, timeout: float) -> Frame | None:
        newest_before = self._newest()  # (asked after the read, a frame arriving just then would count)
        frame = self.source.read(timeout)
        if frame is not None:
            self.index = frame.index
            self.newer_at_read += newest_before > frame.index
        return frame

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.newer_at_infer += self._newest() > self.index
        return self.model.infer(batch)

    def status(self):
        return self.source.status()

    def close(self) -> None:
        self.source.close()

    def _newest(self) -> int:
        return self.source.status().frames - 1


def measure(fps: float, seconds: float, size: tuple[int, int], model: Model,
            decode_scale: int = 1) -> tuple[RunSummary, Watched, float]:
    """Run the pipeline for `seconds` on a loopback MJPEG camera sending a real photo at `fps`; the summary, the
    stale-frame counts and this process's CPU seconds per second of the run."""
    context = multiprocessing.get_context("fork")
    ready, stop = context.Queue(), context.Event()
    camera = context.Process(target=serve, args=(fps, size, ready, stop), daemon=True)
    camera.start()
    try:
        options = RunOptions(SourceOptions(ready.get(timeout=30), read_timeout=2.0, decode_scale=decode_scale),
                             display=False, duration=seconds)
        watched = Watched(open_source(options.source), model)
        cpu, wall = sum(os.times()[:2]), time.perf_counter()
        summary = run(options, threading.Event(), model=watched, source=watched)
        cpu, wall = sum(os.times()[:2]) - cpu, time.perf_counter() - wall
    finally:
        stop.set()
        camera.join(timeout=10)
    return summary, watched, cpu / wall


def serve(fps: float, size: tuple[int, int], ready: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    """The camera's process: serve until `stop`, having put its URL in `ready`."""
    camera = MjpegServer(fps=fps, size=size, images=[sample_frame(size[1], size[0])]).start()
    ready.put(camera.url)
    stop.wait()
    camera.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=float, nargs="+", default=[15.0, 30.0], help="camera frame rates")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--size", default="640x480", help="frame size WxH")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: ORT's choice)")
    parser.add_argument("--decode-scale", type=int, nargs="+", default=[1], choices=(1, 2, 4, 8),
                        help="decode each JPEG at 1/N of its size (a run for each, at each rate)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    model = Model.load(None, "cpu", args.threads, spinning=False)  # as `edgerec run` on a live camera
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; model {model.path.name}, "
          f"{model.threads} inference threads, frames {args.size}, {args.seconds:g} s per rate")
    print(f"CPU: {cpu_description()}")
    print("| camera fps | decode scale | CPU s/s | preprocess p50 ms | interval ms | frames read | model ran | dropped "
          "| frame age p50 / p95 / max ms | p95 <= interval | latency p50 / p95 ms | infer p50 ms | newer at read "
          "| newer at infer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for fps in args.fps:
        for scale in args.decode_scale:
            row(fps, scale, args.seconds, size, model)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def row(fps: float, scale: int, seconds: float, size: tuple[int, int], model: Model) -> None:
    summary, watched, cpu = measure(fps, seconds, size, model, scale)
    age, latency, interval = summary.frame_age, summary.latency, 1000.0 / fps
    print(f"| {fps:g} | {scale} | {cpu:.3f} | {summary.stages['preprocess'].p50_ms:.2f} | {interval:.1f} "
          f"| {summary.frames} | {summary.inferred} | {summary.source.dropped} "
          f"| {age.p50_ms:.1f} / {age.p95_ms:.1f} / {age.max_ms:.1f} | {'yes' if age.p95_ms <= interval else 'NO'} "
          f"| {latency.p50_ms:.1f} / {latency.p95_ms:.1f} | {summary.stages['infer'].p50_ms:.1f} "
          f"| {watched.newer_at_read} | {watched.newer_at_infer} |", flush=True)


if __name__ == "__main__":
    main()
