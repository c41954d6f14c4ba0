"""What the web preview costs: JPEG encoding, and the frame loop's time in WebSink.write with and without a viewer;
with --abuse, how it holds up under load and slow clients instead.

    python scripts/bench_web.py [--frames 150] [--fps 30] [--web-fps 10]
    python scripts/bench_web.py --abuse [--slow 300] [--seconds 30] [--requests 5000]

Feeds a real photo, resized to 1920x1080, to a WebSink at the given frame rate (as a camera would), first with
nobody watching, then with one viewer (another process) reading /stream.mjpg as fast as it can, and prints
milliseconds per write (the frame loop's cost), the encoder's milliseconds per JPEG and the JPEGs made. Also times
cv2.imencode alone at 640x480 and 1920x1080, and the overlay the frame loop draws only while someone watches.

--abuse (loopback only; needs `ab` and `slowhttptest`, Debian: apache2-utils, slowhttptest): a WebSink fed 30
frames a second in this process; ApacheBench sends `--requests` GET /api/status at 50 at once; then slowhttptest
holds `--slow` slowloris connections (headers never finished, a header line every 5 s) for `--seconds` while
this script probes /healthz twice a second. Prints requests per second and failures, the probes that failed or
took over 1 s, and the server's connections, threads and file descriptors before, during and after. Run it
with PYTHONPATH pointing at an older checkout to measure that one (e.g. e13c18c, before the move to uvicorn).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import threading
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
    parser.add_argument("--abuse", action="store_true", help="load and slow-client test instead")
    parser.add_argument("--slow", type=int, default=300, help="slowloris connections, at most 1000")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long they are held, at most 120")
    parser.add_argument("--requests", type=int, default=5000, help="ApacheBench requests, at most 100000")
    args = parser.parse_args()
    if args.abuse:
        abuse(min(args.slow, 1000), min(args.seconds, 120.0), min(args.requests, 100000))
        return
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


def abuse(slow: int, seconds: float, requests: int) -> None:
    for tool in ("ab", "slowhttptest"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (Debian: apt-get install apache2-utils slowhttptest)")
    sink, stop = WebSink(WebOptions("127.0.0.1:0", stale_after=5.0)), threading.Event()
    feeder = threading.Thread(target=feed_forever, args=(sink, stop), daemon=True)
    feeder.start()
    try:
        time.sleep(0.5)
        print(f"server: {server_kind(sink)}; before: {resources(sink)}")
        print(f"ab -n {requests} -c 50 /api/status: {apache_bench(sink, requests)}; after: {resources(sink)}")
        attack = subprocess.Popen(["slowhttptest", "-H", "-c", str(slow), "-r", str(max(slow // 2, 1)), "-i", "5",
                                   "-l", str(int(seconds)), "-x", "24", "-p", "3", "-u", f"{sink.url}healthz"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        probes, during = probe_while(sink, attack, seconds)
        report = attack.communicate()[0]
        if os.environ.get("BENCH_WEB_RAW"):
            print(report)
        failed = [took for code, took in probes if code != 200 or took > 1.0]
        slowest = max(took for _, took in probes)
        print(f"slowhttptest -H -c {slow}, {seconds:g} s: {len(failed)} of {len(probes)} /healthz probes failed or "
              f"took > 1 s (slowest {slowest:.3f} s); during: {during}")
        print(f"  slowhttptest: {summary(report)}")
        time.sleep(1.0)
        print(f"after: {resources(sink)}")
    finally:
        stop.set()
        feeder.join()
        sink.close()


def feed_forever(sink: WebSink, stop: threading.Event) -> None:
    frame, i = np.zeros((480, 640, 3), np.uint8), 0
    while not stop.wait(1 / 30):
        sink.write(frame, result(i))
        i += 1


def server_kind(sink: WebSink) -> str:
    return "uvicorn + Starlette" if hasattr(sink.server, "guard") else type(sink.server).__mro__[1].__name__


def resources(sink: WebSink) -> str:
    guard = getattr(sink.server, "guard", None)
    connections = f"{len(guard.open)} connections ({len(guard.waiting)} waiting for headers), " if guard else ""
    return f"{connections}{threading.active_count()} threads, {len(os.listdir('/proc/self/fd'))} fds"


def apache_bench(sink: WebSink, requests: int) -> str:
    cpu = time.process_time()
    done = subprocess.run(["ab", "-q", "-n", str(requests), "-c", "50", f"{sink.url}api/status"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    found = {key: re.search(rf"{key}:\s+(\S+)", done.stdout) for key in
             ("Complete requests", "Non-2xx responses", "Requests per second")}
    values = {key: match.group(1) if match else "0" for key, match in found.items()}
    p99 = re.search(r"\s99%\s+(\d+)", done.stdout)
    kinds = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", done.stdout)
    failed = sum(map(int, kinds.groups())) if kinds else 0  # not "Length": status bodies differ in length
    cpu_ms = (time.process_time() - cpu) * 1000 / max(int(values["Complete requests"]), 1)  # server + 30 fps feeder
    trouble = "" if done.returncode == 0 else f" (ab exit {done.returncode}: {done.stderr.strip()[-200:]})"
    return (f"{values['Complete requests']} complete, {failed} failed, {values['Non-2xx responses']} non-2xx, "
            f"{values['Requests per second']} requests/s, 99% within {p99.group(1) if p99 else '?'} ms, "
            f"{cpu_ms:.2f} ms of this process's CPU per request{trouble}")


def probe_while(sink: WebSink, attack: subprocess.Popen, seconds: float) -> tuple[list[tuple[int | None, float]], str]:
    """Probes /healthz twice a second until `attack` ends; also the resources at the attack's midpoint."""
    probes, started, during = [], time.monotonic(), ""
    while attack.poll() is None and time.monotonic() - started < seconds + 30:
        probes.append(probe(sink.port))
        if not during and time.monotonic() - started > min(seconds / 2, 8):
            during = resources(sink)
        time.sleep(0.5)
    return probes, during


def probe(port: int) -> tuple[int | None, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return None, time.perf_counter() - started
    finally:
        connection.close()


def summary(report: str) -> str:
    """slowhttptest's last status block, one line: connected, pending, closed, service available."""
    plain, keys = re.sub(r"\x1b\[[0-9;]*m", "", report), ("closed", "pending", "connected", "service available")
    last = {key: re.findall(rf"{key}:\s+(\S+)", plain) for key in keys}
    return ", ".join(f"{key} {found[-1]}" for key, found in last.items() if found)


if __name__ == "__main__":
    main()
