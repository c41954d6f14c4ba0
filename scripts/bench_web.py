"""What the web preview costs: JPEG encoding, and the frame loop's time in WebSink.write with and without a viewer.

    python scripts/bench_web.py [--frames 150] [--fps 30] [--web-fps 10]

Feeds a real photo, resized to 1920x1080, to a WebSink at the given frame rate (as a camera would), first with
nobody watching, then with one viewer (another process) reading /stream.mjpg as fast as it can, and prints
milliseconds per write (the frame loop's cost), the encoder's milliseconds per JPEG and the JPEGs made. Also times
cv2.imencode alone at 640x480 and 1920x1080, and the overlay the frame loop draws only while someone watches.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edge.overlay import Overlay
from edge.result import FrameResult, Result, single
from edge.sinks import NullSink
from edge.sinks.web import WebOptions, WebSink

READER = "import sys, urllib.request\nstream = urllib.request.urlopen(sys.argv[1])\nwhile stream.read(65536): pass"
PHOTO = Path(__file__).resolve().parent.parent / "edge" / "assets" / "samples" / "squirrel_cls.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--web-fps", type=float, default=WebOptions.jpeg_fps)
    args = parser.parse_args()
    photo = cv2.imread(str(PHOTO))
    frames = {size: cv2.resize(photo, size, interpolation=cv2.INTER_AREA) for size in ((640, 480), (1920, 1080))}
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; photo {PHOTO.name}")
    for (w, h), frame in frames.items():
        print(f"cv2.imencode quality {WebOptions.jpeg_quality} at {w}x{h}: {encode_ms(frame):.2f} ms (median of 50)")
    big = frames[(1920, 1080)]
    print(f"overlay at 1920x1080: {overlay_ms(big):.3f} ms (median of 50; drawn only while a viewer watches)")
    print(f"write, no viewer, back to back: {tight_us(big):.2f} us (mean of 10000)")
    print(f"paced at {args.fps:g} fps, 1920x1080, --web-fps {args.web_fps:g}:")
    for name in ("null sink", "no viewer", "one viewer"):
        stats = feed(big, args.frames, args.fps, args.web_fps, name)
        encoder = f", encoder {stats['encode_ms']:.2f} ms each" if stats["encodes"] else ""
        print(f"  {name:10s}: write mean {stats['mean']:.3f} ms, median {stats['median']:.3f}, "
              f"p95 {stats['p95']:.3f}, max {stats['max']:.3f}; {stats['encodes']} JPEGs in {stats['seconds']:.1f} s"
              f"{encoder}")


def encode_ms(frame: np.ndarray, runs: int = 50) -> float:
    params = [cv2.IMWRITE_JPEG_QUALITY, WebOptions.jpeg_quality]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        cv2.imencode(".jpg", frame, params)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def overlay_ms(frame: np.ndarray, runs: int = 50) -> float:
    overlay, image, times = Overlay(["fox squirrel"]), frame.copy(), []
    for i in range(runs + 1):
        np.copyto(image, frame)
        started = time.perf_counter()
        overlay.draw(image, result(i))
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:])) * 1000  # the first draw loads the font


def result(index: int) -> FrameResult:
    return single(Result(index, time.monotonic(), "fox squirrel", 0, 0.9, np.ones(1, np.float32), index == 0,
                         True, 30.0, 30.0, 20.0))


def tight_us(frame: np.ndarray, count: int = 10000) -> float:
    sink, same = WebSink(WebOptions("127.0.0.1:0")), result(1)
    try:
        started = time.perf_counter()
        for _ in range(count):
            sink.write(frame, same)
        return (time.perf_counter() - started) / count * 1e6
    finally:
        sink.close()


def feed(frame: np.ndarray, count: int, fps: float, web_fps: float, name: str) -> dict[str, float]:
    """`name`: "null sink" (the baseline: a call after a sleep, caches cold), "no viewer" or "one viewer"."""
    sink = WebSink(WebOptions("127.0.0.1:0", jpeg_fps=web_fps))
    target = NullSink() if name == "null sink" else sink
    viewer = None
    try:
        if name == "one viewer":  # another process, as a browser would be
            viewer = subprocess.Popen([sys.executable, "-c", READER, f"{sink.url}stream.mjpg"])
            while not sink.feed.viewers:
                time.sleep(0.01)
        times, started = [], time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, started + i / fps - time.monotonic()))
            t0 = time.perf_counter()
            target.write(frame, result(i))
            times.append(time.perf_counter() - t0)
        seconds, encodes, encode_s = time.monotonic() - started, sink.feed.encodes, sink.feed.encode_s
    finally:
        if viewer is not None:
            viewer.kill()
            viewer.wait()
        sink.close()
    ms = np.array(times) * 1000
    return {"mean": float(ms.mean()), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max()), "encodes": encodes, "seconds": seconds,
            "encode_ms": 1000 * encode_s / max(encodes, 1)}


if __name__ == "__main__":
    main()
