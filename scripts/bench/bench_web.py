"""What the web preview costs: JPEG encoding, and the frame loop's time in WebSink.write with and without a viewer;
with --abuse, how it holds up under load and slow clients instead.

    python scripts/bench/bench_web.py [--frames 150] [--fps 30] [--web-fps 10]
    python scripts/bench/bench_web.py --abuse [--requests 5000] [--viewers 100] [--slow 300] [--seconds 30] \\
        [--rounds 10]
                                        [--passes 1]

Feeds a real photo, resized to 1920x1080, to a WebSink at the given frame rate (as a camera would), first with
nobody watching, then with one viewer (another process) reading /stream.mjpg as fast as it can, and prints
milliseconds per write (the frame loop's cost), the encoder's milliseconds per JPEG and the JPEGs made. Also times
cv2.imencode alone at 640x480 and 1920x1080, and the overlay the frame loop draws only while someone watches.

--abuse (loopback only; needs `ab` and `slowhttptest`, Debian: apache2-utils, slowhttptest): a WebSink fed 30
frames a second in this process, abused in five phases one after another, while this script probes /healthz
twice a second:
1. ApacheBench sends `--requests` GET /api/status, 50 at once;
2. `--viewers` clients ask for /stream.mjpg at once, `--rounds` times: the allowed ones (WebOptions.max_clients)
   watch for 2 s, the others must get 503 at once;
3. slowhttptest holds `--slow` slowloris connections (headers never finished, a header line every 5 s) for
   `--seconds`;
4. malformed and oversized requests (MALFORMED: garbage, bad versions and methods, bad Content-Length, a 1 GB
   body announced, a 100 KB URL, 4000 header lines, ...), `--rounds` times: each must get a 4xx or a close;
5. path traversal attempts (TRAVERSAL, encoded every which way), `--rounds` times: none may answer 200 or show
   a file.
Phases 2, 4 and 5 run their clients in another process, so that the server's figures are its own. For each
phase it prints what was sent and what failed, the /healthz probes that failed or took over 1 s, and the
server's connections, threads, file descriptors and RSS before, at their peak during, and 2 s after;
--passes N runs the five phases N times (does RSS settle or keep growing?). Run it
with PYTHONPATH pointing at an older checkout to measure that one (e.g. e13c18c, before the move to uvicorn).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.live.overlay import Overlay
from edge.live.result import FrameResult, Result, single
from edge.sinks import NullSink
from edge.web.options import WebOptions
from edge.web.sink import WebSink

READER = "import sys, urllib.request\nstream = urllib.request.urlopen(sys.argv[1])\nwhile stream.read(65536): pass"
PHOTO = Path(__file__).resolve().parents[2] / "edge" / "assets" / "samples" / "squirrel_cls.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--web-fps", type=float, default=WebOptions.jpeg_fps)
    parser.add_argument("--abuse", action="store_true", help="load and slow-client test instead")
    parser.add_argument("--slow", type=int, default=300, help="slowloris connections, at most 1000")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long they are held, at most 120")
    parser.add_argument("--requests", type=int, default=5000, help="ApacheBench requests, at most 100000")
    parser.add_argument("--viewers", type=int, default=100, help="MJPEG viewers asking at once, at most 500")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of viewers, malformed and traversal requests")
    parser.add_argument("--passes", type=int, default=1, help="--abuse: all five phases this many times, at most 10")
    parser.add_argument("--attack", choices=("viewers", "malformed", "traversal"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)  # --attack's target, on 127.0.0.1
    args = parser.parse_args()
    if args.attack:  # the clients of one --abuse phase, in their own process
        clients = {"viewers": lambda: viewer_flood(args.port, args.viewers, args.rounds),
                   "malformed": lambda: malformed(args.port, args.rounds),
                   "traversal": lambda: traversal(args.port, args.rounds)}
        print(clients[args.attack]())
        return
    if args.abuse:
        abuse(min(args.slow, 1000), min(args.seconds, 120.0), min(args.requests, 100000), min(args.viewers, 500),
              max(1, min(args.rounds, 100)), max(1, min(args.passes, 10)))
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


def abuse(slow: int, seconds: float, requests: int, viewers: int, rounds: int, passes: int) -> None:
    for tool in ("ab", "slowhttptest"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (Debian: apt-get install apache2-utils slowhttptest)")
    sink, stop = WebSink(WebOptions("127.0.0.1:0", stale_after=5.0)), threading.Event()
    feeder = threading.Thread(target=feed_forever, args=(sink, stop), daemon=True)
    feeder.start()
    try:
        time.sleep(0.5)
        print(f"server: {server_kind(sink)}; MJPEG viewers allowed: {sink.options.max_clients}; "
              f"baseline: {show(resources(sink))}")
        phases = (
            (f"ab -n {requests} -c 50 /api/status", lambda: apache_bench(sink, requests)),
            (f"{viewers} MJPEG viewers at once, {rounds} rounds", lambda: attack(sink, "viewers", viewers, rounds)),
            (f"slowhttptest -H -c {slow}, {seconds:g} s", lambda: slowloris(sink, slow, seconds)),
            (f"malformed and oversized requests, {rounds} rounds", lambda: attack(sink, "malformed", 0, rounds)),
            (f"path traversal attempts, {rounds} rounds", lambda: attack(sink, "traversal", 0, rounds)),
        )
        for number in range(passes):
            if passes > 1:
                print(f"--- pass {number + 1} of {passes}")
            for name, action in phases:
                phase(sink, name, action)
    finally:
        stop.set()
        feeder.join()
        sink.close()


def phase(sink: WebSink, name: str, action: Callable[[], str]) -> None:
    """Runs `action` while /healthz is probed twice a second; prints what it did, the probes that failed or
    took over 1 s, and the server's resources before, at their peak during, and 2 s after."""
    before, peak, box = resources(sink), resources(sink), []
    worker = threading.Thread(target=lambda: box.append(action()))
    worker.start()
    probes = []
    while worker.is_alive():
        probes.append(probe(sink.port))
        now = resources(sink)
        now["threads"] -= 1  # the worker running `action`
        if now["fds"] > peak["fds"] or now["rss_mb"] > peak["rss_mb"] or now["threads"] > peak["threads"]:
            peak = {key: max(peak[key], now[key]) for key in now}
        worker.join(0.5)
    time.sleep(2.0)
    after = resources(sink)
    missed = [str(code) if code != 200 else "slow" for code, took in probes if code != 200 or took > 1.0]
    why = f" ({', '.join(f'{n} {kind}' for kind, n in sorted(Counter(missed).items()))})" if missed else ""
    slowest = max((took for _, took in probes), default=0.0)
    print(f"{name}: {box[0] if box else 'did not finish'}")
    print(f"  /healthz during it: {len(missed)} of {len(probes)} probes failed or took > 1 s{why} (slowest "
          f"{slowest:.3f} s)")
    print(f"  before: {show(before)}; peak: {show(peak)}; after: {show(after)}")


def slowloris(sink: WebSink, slow: int, seconds: float) -> str:
    attack = subprocess.run(["slowhttptest", "-H", "-c", str(slow), "-r", str(max(slow // 2, 1)), "-i", "5",
                             "-l", str(int(seconds)), "-x", "24", "-p", "3", "-u", f"{sink.url}healthz"],
                            capture_output=True, text=True, timeout=seconds + 120)  # fmt: skip
    if os.environ.get("BENCH_WEB_RAW"):
        print(attack.stdout)
    return f"slowhttptest's last report: {summary(attack.stdout)}"


def attack(sink: WebSink, kind: str, count: int, rounds: int) -> str:
    """Runs `kind`'s clients in another process, so that their sockets and threads are not counted as the
    server's; returns the line it prints."""
    done = subprocess.run([sys.executable, __file__, "--attack", kind, "--port", str(sink.port), "--viewers",
                           str(count), "--rounds", str(rounds)], capture_output=True, text=True, timeout=600)
    return done.stdout.strip() or f"exit {done.returncode}: {done.stderr.strip()[-300:]}"


# --- the attacking clients (run in their own process by `attack`) ------------------------------------------


def viewer_flood(port: int, count: int, rounds: int) -> str:
    """`count` viewers ask for /stream.mjpg at once; the allowed ones read for 2 s, the rest must get 503 at once."""
    codes: dict[str, int] = {}
    slowest_503 = 0.0
    for _ in range(rounds):
        sockets = []
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sockets.append((connection, time.perf_counter()))
        watching = []
        for connection, sent in sockets:
            code = status_of(connection)
            took = time.perf_counter() - sent
            codes[code] = codes.get(code, 0) + 1
            if code == "503":
                slowest_503 = max(slowest_503, took)
                connection.close()
            else:
                watching.append(connection)
        deadline, received = time.monotonic() + 2.0, 0
        while time.monotonic() < deadline and watching:
            for connection in watching:
                connection.settimeout(0.05)
                try:
                    received += len(connection.recv(65536))
                except OSError:
                    pass
        for connection in watching:
            connection.close()
    sent = count * rounds
    failed = sent - codes.get("200", 0) - codes.get("503", 0)
    answers = ", ".join(f"{n} {code}" for code, n in sorted(codes.items()))
    return (f"{sent} requests sent, {failed} failed (not 200 or 503); answers: {answers}; the slowest 503 came "
            f"{slowest_503 * 1000:.0f} ms after its request (the requests of a round queue behind each other)")


def status_of(connection: socket.socket) -> str:
    """The status code of the answer on `connection` ("closed" or "timeout" without one)."""
    connection.settimeout(5)
    head = b""
    try:
        while b"\r\n" not in head:
            data = connection.recv(1024)
            if not data:
                return "closed"
            head += data
    except TimeoutError:
        return "timeout"
    except OSError:
        return "reset" if not head else "closed"
    parts = head.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if len(parts) > 1 else "garbage"


MALFORMED = (
    ("garbage", b"GARBAGE\r\n\r\n"),
    ("no version", b"GET /\r\n\r\n"),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\n\r\n"),
    ("unknown version", b"GET / HTTP/7.0\r\nHost: x\r\n\r\n"),
    ("bad method", b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n"),
    ("non-ASCII header", b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\nX-\xc3\x28: 1\r\n\r\n"),
    ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n"),
    ("negative Content-Length", b"POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ("text Content-Length", b"POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
    ("two Content-Lengths", b"POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    ("bad chunked body", b"POST /api/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("1 GB body announced, 64 KB sent",
     b"POST /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 65536),
    ("100 KB URL", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("4000 header lines", b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 4000 + b"\r\n"),
    ("one 64 KB header", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 65536 + b"\r\n\r\n"),
)
TRAVERSAL = (
    b"/../../../../etc/passwd", b"/..%2f..%2f..%2fetc%2fpasswd", b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/%252e%252e/%252e%252e/etc/passwd", b"/..\\..\\..\\etc\\passwd", b"/....//....//etc/passwd",
    b"/static/../../edge/app/cli.py", b"/stream.mjpg/../../etc/passwd", b"/api/status/../../../etc/passwd",
    b"//etc/passwd", b"/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", b"/etc/passwd%00.jpg",
    b"/./././healthz/../../etc/shadow", b"/proc/self/environ", b"/../pyproject.toml",
    b"/%2e%2e%5c%2e%2e%5cetc%5cpasswd",
)
SECRETS = (b"root:", b"PYTHONPATH", b"[project]", b"import ")


def malformed(port: int, rounds: int) -> str:
    """Every request of MALFORMED, `rounds` times: each must get an answer (a 4xx, or a 200 where the parser
    took it as valid) or be closed within 5 s; a 5xx, no answer in 5 s or garbage is a failure."""
    codes: dict[str, int] = {}
    failed, accepted = 0, set()
    for _ in range(rounds):
        for name, request in MALFORMED:
            code = send_raw(port, request)[0]
            codes[code] = codes.get(code, 0) + 1
            if code.startswith("2"):
                accepted.add(name)
            elif not (code.startswith("4") or code in ("closed", "reset")):
                failed += 1
    answers = ", ".join(f"{n} {code}" for code, n in sorted(codes.items()))
    return (f"{rounds * len(MALFORMED)} requests sent ({len(MALFORMED)} kinds), {failed} failed (a 5xx, no answer "
            f"in 5 s, or garbage); answers: {answers}"
            f"{'; taken as valid: ' + ', '.join(sorted(accepted)) if accepted else ''}")


def traversal(port: int, rounds: int) -> str:
    """Every path of TRAVERSAL, `rounds` times: none may answer 200 or show a file's contents."""
    codes: dict[str, int] = {}
    leaks = set()
    for _ in range(rounds):
        for path in TRAVERSAL:
            code, answer = send_raw(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            codes[code] = codes.get(code, 0) + 1
            if code.startswith("2") or any(secret in answer for secret in SECRETS):
                leaks.add(path.decode("latin-1"))
    sent = rounds * len(TRAVERSAL)
    answers = ", ".join(f"{n} {code}" for code, n in sorted(codes.items()))
    return (f"{sent} requests sent ({len(TRAVERSAL)} paths), {len(leaks)} paths answered 200 or showed a file"
            f"{': ' + ', '.join(sorted(leaks)) if leaks else ''}; answers: {answers}")


def send_raw(port: int, request: bytes) -> tuple[str, bytes]:
    """Sends `request` in 4 KB pieces and reads until the server closes or 5 s pass: (status, answer)."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    answer = b""
    try:
        for start in range(0, len(request), 4096):
            connection.sendall(request[start : start + 4096])
        while data := connection.recv(65536):
            answer += data
            connection.settimeout(0.5)  # answered: a kept-alive connection need not be waited out
    except TimeoutError:
        return ("timeout" if not answer else status_code(answer)), answer
    except OSError:  # reset: the server closed with our bytes unread
        pass
    finally:
        connection.close()
    return (status_code(answer) if answer else "closed"), answer


def status_code(answer: bytes) -> str:
    parts = answer.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if answer.startswith(b"HTTP/") and len(parts) > 1 else "garbage"


def feed_forever(sink: WebSink, stop: threading.Event) -> None:
    """30 frames a second, a noise picture shifted one column each time: every frame differs, as a camera's do
    (the same picture for 30 s would be a frozen camera, and /healthz would answer 503)."""
    noise, i = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8), 0
    while not stop.wait(1 / 30):
        sink.write(np.roll(noise, i, axis=1), result(i))
        i += 1


def server_kind(sink: WebSink) -> str:
    return "uvicorn + Starlette" if hasattr(sink.server, "guard") else type(sink.server).__mro__[1].__name__


def resources(sink: WebSink) -> dict[str, float]:
    """This process's (the server's) threads, open file descriptors and RSS; its open and header-waiting
    connections."""
    guard = getattr(sink.server, "guard", None)
    rss_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))  # fmt: skip
    return {"connections": len(guard.open) if guard else -1, "waiting": len(guard.waiting) if guard else -1,
            "threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd")), "rss_mb": rss_kb / 1024}


def show(found: dict[str, float]) -> str:
    connections = (f"{found['connections']:.0f} connections ({found['waiting']:.0f} waiting for headers), "
                   if found["connections"] >= 0 else "")
    return f"{connections}{found['threads']:.0f} threads, {found['fds']:.0f} fds, RSS {found['rss_mb']:.1f} MB"


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
