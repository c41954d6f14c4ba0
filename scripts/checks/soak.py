"""A soak: `edgerec run` for N minutes with two cameras, four regions, the web server and MQTT on, a camera
dropped and a broker restarted on a schedule, its resources sampled; exit 1 on any upward trend or fault.

    python scripts/checks/soak.py --minutes 60 [--out DIR] [--every 2]

What it runs (all on loopback, nothing else needed but mosquitto and paho-mqtt, the [dev] extra):
- two MJPEG cameras in this process (tests/mjpeg_server.py), 320x240 at 10 fps, each a real photo of
  tests/data/photos with fresh sensor-like noise in every frame and a smaller photo stepping across it
  (motion in part of the picture): "porch" is never touched; "garage" is dropped for DROP_S every minute
  (at 30 s, 90 s, ...);
- mosquitto on a free port, stopped for BROKER_DOWN_S every minute (at 60 s, 120 s, ...); 10 s after each
  restart a fresh subscriber must see every region's retained state (the broker kept none: no persistence);
- `python -m edge.app.cli run --config DIR/config.toml` (the embedded ImageNet model; porch: "door" on motion,
  "yard" on every frame at most 2 a second; garage: "bay" on every frame at most 2 a second, "bins" on
  motion), with events, web on a free loopback port and MQTT.

Every `--every` seconds it samples the process's RSS, threads, open file descriptors and CPU time
(/proc/PID) and each camera's frame age, health and its regions' latency (/api/status), and writes
DIR/soak.csv and DIR/soak.png (OpenCV drawing: the runtime needs no plotting library). At the end it sends
SIGTERM and expects exit 0 within 15 s.

It fails (exit 1) when: RSS, threads or file descriptors rise over the second half of the run beyond noise
(a Theil-Sen slope, robust to the spikes of a reconnect, times the half's length: more than
max(RSS_RISE_MB, 2 % of RSS) MB, THREADS_RISE threads or FDS_RISE descriptors); the process dies; porch is
ever unhealthy after the first WARMUP_S; garage is unhealthy outside a drop and the RECOVER_S after it; a
post-restart subscriber misses a region's state; the stop takes too long or exits non-zero.

    python scripts/checks/soak.py --retention --minutes 60 [--segment 10] [--retain-mb 4] [--clip FILE]

The retention soak: `edgerec run` on a real clip looped in real time (the demo clip by default), recording in
`--segment` s segments with snapshots and events in the same folder under a `--retain-mb` budget, the web
server on for /metrics. Every `--every` seconds it samples RSS and the folder's bytes, and opens each new
segment with cv2.VideoCapture and reads all its frames. It fails when a segment does not play or reads fewer
frames than it says it holds; when the segments together hold fewer frames than edgerec recorded (a frame
lost at a boundary); when the folder exceeds the budget by more than one segment; when the folder's bytes or
the RSS rise over the second half (as above; bytes: more than one segment's size); when the oldest segment
was not deleted; or when the stop fails. It writes DIR/retention.csv.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from mjpeg_server import MjpegServer  # noqa: E402 -- test support, a plain module

PHOTOS = REPO / "tests" / "data" / "photos"
SIZE, FPS = (320, 240), 10.0
DROP_S, BROKER_DOWN_S = 6.0, 4.0
WARMUP_S, RECOVER_S = 20.0, 15.0
RSS_RISE_MB, THREADS_RISE, FDS_RISE = 3.0, 1.0, 2.0
REGIONS = {"porch": ("door", "yard"), "garage": ("bay", "bins")}


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    threads: int
    fds: int
    cpu_s: float
    porch_age_ms: float
    garage_age_ms: float
    latency_ms: float
    """The largest capture-to-label latency among the regions' newest results."""
    porch_healthy: int
    garage_healthy: int
    porch_frames: int
    garage_frames: int
    fault: str
    """"camera" while garage is dropped, "broker" while mosquitto is down, "" otherwise."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long edgerec runs")
    parser.add_argument("--out", type=Path, help="folder for soak.csv, soak.png, logs (default: a new temp folder)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--replot", action="store_true", help="only draw --out's soak.csv again and judge its trends")
    parser.add_argument("--retention", action="store_true",
                        help="the retention soak: a looped clip recorded in segments under a small budget")
    parser.add_argument("--segment", type=float, default=10.0, help="--retention: seconds per segment")
    parser.add_argument("--retain-mb", type=float, default=4.0, help="--retention: the budget in MB")
    parser.add_argument("--clip", type=Path, default=REPO / "edge" / "assets" / "demo" / "demo.mp4",
                        help="--retention: the clip, looped in real time")
    args = parser.parse_args(argv)
    if args.retention:
        out = args.out or Path(tempfile.mkdtemp(prefix="edgerec-retention-soak-"))
        out.mkdir(parents=True, exist_ok=True)
        return retention_soak(args.minutes * 60, args.every, out, args.clip, args.segment, args.retain_mb)
    if args.replot:
        samples = read_csv(args.out / "soak.csv")
        problems = trends(samples, args.minutes * 60)
        plot(args.out / "soak.png", samples, args.minutes * 60)
        print("\n".join(f"soak: FAIL: {p}" for p in problems) or "soak: trends ok", f"({args.out / 'soak.png'})")
        return 1 if problems else 0
    out = args.out or Path(tempfile.mkdtemp(prefix="edgerec-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(mosquitto, os.X_OK):
        print("soak: needs mosquitto (Debian: apt-get install mosquitto)", file=sys.stderr)
        return 2
    problems, samples, stats = soak(args.minutes * 60, args.every, out, mosquitto)
    problems += trends(samples, args.minutes * 60)
    plot(out / "soak.png", samples, args.minutes * 60)
    report(out, samples, stats, problems)
    return 1 if problems else 0


# --- the run ------------------------------------------------------------------------------------------


def soak(seconds: float, every: float, out: Path, mosquitto: str) -> tuple[list[str], list[Sample], dict]:
    """Start the cameras, the broker and edgerec; sample and inject faults until `seconds` have passed."""
    problems: list[str] = []
    samples: list[Sample] = []
    stats = {"camera_drops": 0, "broker_restarts": 0, "mqtt_checks": 0}
    porch = MjpegServer(FPS, SIZE, images=frames("baboon.jpg", "squirrel_cls.jpg", 2.0)).start()
    garage = MjpegServer(FPS, SIZE, images=frames("coffee.jpg", "chelsea.jpg", 3.0)).start()
    broker = Broker(out, mosquitto)
    broker.start()
    web_port = free_port()
    config = write_config(out / "config.toml", porch.url, garage.url, web_port, broker.port, out)
    log = open(out / "edgerec.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(config)],
                               stdout=log, stderr=log, cwd=out, env=checkout_env())
    faults = schedule(seconds)
    table = open(out / "soak.csv", "w", newline="")  # a row per sample as it is taken: a cut-short run keeps its data
    rows = csv.DictWriter(table, [f.name for f in fields(Sample)])
    rows.writeheader()
    started = time.monotonic()
    try:
        while (now := time.monotonic() - started) < seconds:
            while faults and faults[0][0] <= now:
                _, action = faults.pop(0)
                act(action, garage, broker, stats, problems)
            if process.poll() is not None:
                problems.append(f"edgerec ended by itself after {now:.0f} s (exit {process.returncode}); see "
                                f"{out / 'edgerec.log'}")
                break
            sample = take_sample(process.pid, web_port, now, fault_now(now, seconds))
            if sample is not None:
                samples.append(sample)
                rows.writerow(asdict(sample))
                table.flush()
                problems += health_problems(sample, seconds)
            time.sleep(max(0.0, every - (time.monotonic() - started - now)))
        stats["stop_s"], stats["exit"] = stop(process)
        if stats["exit"] != 0 or stats["stop_s"] > 15:
            problems.append(f"SIGTERM: exit {stats['exit']} after {stats['stop_s']:.1f} s (want 0 within 15 s)")
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        table.close()
        porch.stop()
        garage.stop()
        broker.stop()
    stats["events"] = sum(1 for _ in open(out / "events.jsonl")) if (out / "events.jsonl").exists() else 0
    return problems, samples, stats


def checkout_env() -> dict[str, str]:
    """The environment with this checkout first on PYTHONPATH: edgerec runs in another folder, and must be this
    checkout's, not whichever the venv installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


def frames(background: str, visitor: str, hold_s: float) -> list[np.ndarray]:
    """A still real photo with fresh sensor-like noise in every frame, and a smaller photo (a visitor) that
    steps across it, `hold_s` at each of 6 places, then leaves for as long: motion in part of the picture,
    as a camera sees it (a whole-picture change would count as the lights switching, not as motion)."""
    rng = np.random.default_rng(len(visitor))
    scene = cv2.resize(cv2.imread(str(PHOTOS / background)), SIZE, interpolation=cv2.INTER_AREA).astype(np.int16)
    thing = cv2.resize(cv2.imread(str(PHOTOS / visitor)), (SIZE[0] // 4, SIZE[1] // 3)).astype(np.int16)
    h, w = thing.shape[:2]
    places = [(int(x), SIZE[1] // 3) for x in np.linspace(0, SIZE[0] - w, 6)] + [None] * 6
    images = []
    for place in places:
        picture = scene.copy()
        if place is not None:
            picture[place[1] : place[1] + h, place[0] : place[0] + w] = thing
        for _ in range(int(hold_s * FPS)):
            noise = rng.integers(-3, 4, picture.shape, dtype=np.int16)
            images.append(np.clip(picture + noise, 0, 255).astype(np.uint8))
    return images


def write_config(path: Path, porch: str, garage: str, web_port: int, mqtt_port: int, out: Path) -> Path:
    source = 'read_timeout = 2.0, open_timeout = 2.0'
    path.write_text(f"""\
[model]
threads = 1

[recognition]
infer_fps = 2
switch_frames = 2

[display]
window = false

[events]
path = "{out / 'events.jsonl'}"

[web]
listen = "127.0.0.1:{web_port}"

[mqtt]
enabled = true
host = "127.0.0.1"
port = {mqtt_port}
topic_prefix = "soak"
client_id = "edgerec-soak"

[[cameras]]
name = "porch"
source = {{ uri = "{porch}", {source} }}
[[cameras.regions]]
name = "door"
box = [0.0, 0.0, 0.5, 1.0]
trigger = "motion"
interval = 10
[[cameras.regions]]
name = "yard"
box = [0.5, 0.0, 0.5, 1.0]

[[cameras]]
name = "garage"
source = {{ uri = "{garage}", {source} }}
[[cameras.regions]]
name = "bay"
box = [0.1, 0.1, 0.8, 0.8]
[[cameras.regions]]
name = "bins"
box = [0.0, 0.5, 0.5, 0.5]
trigger = "motion"
interval = 10
""")
    return path


def schedule(seconds: float) -> list[tuple[float, str]]:
    """The faults in time order: garage down at 30 s, 90 s, ...; the broker down at 60 s, 120 s, ...;
    an MQTT check 10 s after each broker restart."""
    actions = []
    for t in np.arange(30.0, seconds - DROP_S - 5, 60.0):
        actions += [(t, "camera-down"), (t + DROP_S, "camera-up")]
    for t in np.arange(60.0, seconds - BROKER_DOWN_S - 15, 60.0):
        actions += [(t, "broker-down"), (t + BROKER_DOWN_S, "broker-up"), (t + BROKER_DOWN_S + 10, "mqtt-check")]
    return sorted(actions)


def fault_now(t: float, seconds: float) -> str:
    """"camera" while garage is dropped, "broker" while mosquitto is down (as scheduled), else ""."""
    for start, action in schedule(seconds):
        if action == "camera-down" and start <= t < start + DROP_S:
            return "camera"
        if action == "broker-down" and start <= t < start + BROKER_DOWN_S:
            return "broker"
    return ""


def act(action: str, garage: MjpegServer, broker: Broker, stats: dict, problems: list[str]) -> None:
    if action == "camera-down":
        garage.stop()
        stats["camera_drops"] += 1
    elif action == "camera-up":
        garage.start()  # the same port: the camera is back where edgerec looks for it
    elif action == "broker-down":
        broker.stop()
        stats["broker_restarts"] += 1
    elif action == "broker-up":
        broker.start()
    elif action == "mqtt-check":
        stats["mqtt_checks"] += 1
        missing = broker.missing_states()
        if missing:
            problems.append(f"after broker restart {stats['broker_restarts']}: no retained state on {missing}")


def take_sample(pid: int, web_port: int, t: float, fault: str) -> Sample | None:
    try:
        rss_kb, threads = proc_status(pid)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        cpu_s = proc_cpu_s(pid)
    except (OSError, ValueError):
        return None  # it just ended: the caller notices
    status = get_json(web_port, "/api/status")
    cameras = status.get("cameras", {}) if status else {}

    def camera(name: str, key: str, default: float) -> float:
        value = cameras.get(name, {}).get(key)
        return default if value is None else value

    latencies = [region["latency_ms"] for c in cameras.values() for region in c.get("regions", [])]
    return Sample(round(t, 1), rss_kb / 1024, threads, fds, cpu_s,
                  round(camera("porch", "last_frame_age_s", -1) * 1000, 1),
                  round(camera("garage", "last_frame_age_s", -1) * 1000, 1),
                  max(latencies, default=-1.0),
                  int(camera("porch", "healthy", False)), int(camera("garage", "healthy", False)),
                  int(camera("porch", "frames", 0)), int(camera("garage", "frames", 0)), fault)  # fmt: skip


def proc_status(pid: int) -> tuple[int, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        values[key] = value.split()
    return int(values["VmRSS"][0]), int(values["Threads"][0])


def proc_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    utime, stime = stat.rpartition(")")[2].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def get_json(port: int, path: str) -> dict | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):
        return None
    finally:
        connection.close()


def health_problems(sample: Sample, seconds: float) -> list[str]:
    """Porch must always be healthy after the warm-up; garage outside its drops and the time to recover."""
    problems = []
    if sample.t_s >= WARMUP_S and not sample.porch_healthy:
        problems.append(f"{sample.t_s:.0f} s: porch (never touched) unhealthy, frame age {sample.porch_age_ms} ms")
    recovering = any(action == "camera-down" and start <= sample.t_s < start + DROP_S + RECOVER_S
                     for start, action in schedule(seconds))
    if sample.t_s >= WARMUP_S and not recovering and not sample.garage_healthy:
        problems.append(f"{sample.t_s:.0f} s: garage unhealthy outside a drop, frame age {sample.garage_age_ms} ms")
    return problems


def stop(process: subprocess.Popen) -> tuple[float, int | None]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    return time.monotonic() - started, code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1 without persistence: a restart forgets every retained message."""

    def __init__(self, out: Path, binary: str) -> None:
        self.binary, self.port = binary, free_port()
        self.config = out / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = out / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start; see {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def missing_states(self, wait_s: float = 3.0) -> list[str]:
        """The region state topics a fresh subscriber does not get as retained messages within `wait_s`."""
        import paho.mqtt.client as paho

        wanted = {f"soak/{camera}/{region}/state" for camera, names in REGIONS.items() for region in names}
        seen: set[str] = set()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"soak-check-{time.monotonic_ns()}")
        client.on_connect = lambda c, *args: c.subscribe("soak/#", qos=1)
        client.on_message = lambda c, u, message: seen.add(message.topic) if message.retain else None
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not wanted <= seen:
            time.sleep(0.1)
        client.disconnect()
        client.loop_stop()
        return sorted(wanted - seen)


# --- the retention soak ---------------------------------------------------------------------------------


@dataclass
class StorageSample:
    t_s: float
    rss_mb: float
    folder_mb: float
    """Every file in the recording folder (snapshots and events included), the segment being written too."""
    segments: int
    kept_mb: float
    """What /metrics says retention keeps."""
    deleted_mb: float
    deleted_files: int


def retention_soak(seconds: float, every: float, out: Path, clip: Path, segment: float, budget_mb: float) -> int:
    folder = out / "rec"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    web_port = free_port()
    command = [sys.executable, "-m", "edge.app.cli", "run", "--source", str(clip), "--loop", "--threads", "1",
               "--out", str(folder / "rec.mp4"), "--segment", f"{segment:g}", "--retain-mb", f"{budget_mb:g}",
               "--snapshots", str(folder / "snaps"), "--events", str(folder / "events.jsonl"), "--no-display",
               "--web", f"127.0.0.1:{web_port}"]
    print("soak:", " ".join(command[2:]))
    log = open(out / "edgerec.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=log, cwd=out, env=checkout_env())
    samples: list[StorageSample] = []
    segments: dict[str, int] = {}  # name -> frames read back; -1: did not play
    problems: list[str] = []
    table = open(out / "retention.csv", "w", newline="")  # a row per sample as it is taken
    rows = csv.DictWriter(table, [f.name for f in fields(StorageSample)])
    rows.writeheader()
    started = time.monotonic()
    try:
        while (now := time.monotonic() - started) < seconds:
            if process.poll() is not None:
                problems.append(f"edgerec ended by itself after {now:.0f} s (exit {process.returncode})")
                break
            check_segments(folder, segments)
            sample = storage_sample(process.pid, web_port, folder, now, len(segments))
            if sample is not None:
                samples.append(sample)
                rows.writerow(asdict(sample))
                table.flush()
            time.sleep(max(0.0, every - (time.monotonic() - started - now)))
        stop_s, code = stop(process)
        if code != 0 or stop_s > 15:
            problems.append(f"SIGTERM: exit {code} after {stop_s:.1f} s (want 0 within 15 s)")
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        table.close()
    check_segments(folder, segments)  # the last one, closed at the stop
    problems += storage_problems(samples, segments, folder, budget_mb, (out / "edgerec.log").read_text(), seconds)
    storage_report(samples, segments, out, problems)
    return 1 if problems else 0


def check_segments(folder: Path, segments: dict[str, int]) -> None:
    """Read back each segment not seen yet: its frames, or -1 when it does not open or reads short twice.

    A hard link keeps the file while it is read (retention may delete its name meanwhile), and the reader's
    timeouts are lifted: OpenCV's FFmpeg backend gives up on a read after 30 s, which a starved process on a
    loaded machine reaches (a 60-minute run here saw one such short read, `Stream timeout triggered after
    31287 ms`, of a segment that nothing else was wrong with)."""
    for path in sorted(folder.glob("rec-*.mp4")):
        if path.name in segments:
            continue
        kept = folder.parent / f"reading-{path.name}"
        try:
            os.link(path, kept)
        except FileNotFoundError:
            continue  # deleted before it was read: its frames then miss from the total, which is reported
        try:
            segments[path.name] = read_back(kept)
            if segments[path.name] < 0:
                segments[path.name] = read_back(kept)  # a stalled reader or a broken file: a second read tells
        finally:
            kept.unlink()


def read_back(path: Path) -> int:
    """The frames cv2.VideoCapture reads from `path`, or -1 when it does not open or reads fewer than it holds."""
    no_timeout = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 3_600_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 3_600_000]
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, no_timeout)
    said = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    read = 0
    while capture.read()[0]:
        read += 1
    capture.release()
    return read if read > 0 and read == said else -1


def storage_sample(pid: int, web_port: int, folder: Path, t: float, segments: int) -> StorageSample | None:
    try:
        rss_kb, _ = proc_status(pid)
    except (OSError, ValueError, KeyError):
        return None
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    metrics = get_metrics(web_port)
    return StorageSample(round(t, 1), rss_kb / 1024, size / 1e6, segments,
                         metrics.get("edgerec_retention_kept_bytes", -1e6) / 1e6,
                         metrics.get("edgerec_retention_deleted_bytes_total", -1e6) / 1e6,
                         int(metrics.get("edgerec_retention_deleted_files_total", -1)))


def get_metrics(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        connection.close()
    return {name: float(value) for line in text.splitlines() if line and not line.startswith("#")
            for name, value in [line.rsplit(" ", 1)]}


def storage_problems(samples: list[StorageSample], segments: dict[str, int], folder: Path, budget_mb: float,
                     log: str, seconds: float) -> list[str]:
    problems = [f"segment {name} does not play (or reads fewer frames than it holds)"
                for name, frames in segments.items() if frames < 0]
    recorded = [int(match[1]) for line in log.splitlines() if (match := re.match(r"(\d+) frames in ", line))]
    if not recorded or sum(max(f, 0) for f in segments.values()) != recorded[-1]:
        problems.append(f"the segments hold {sum(max(f, 0) for f in segments.values())} frames, edgerec recorded "
                        f"{recorded[-1] if recorded else '?'} (a segment deleted before it was read, or a frame lost)")
    if len(segments) < 2:
        problems.append(f"only {len(segments)} segment(s)")
    first = min(segments, default="")
    if first and (folder / first).exists():
        problems.append(f"the oldest segment {first} was not deleted")
    largest = max((s.folder_mb for s in samples), default=0.0)
    segment_mb = max((p.stat().st_size for p in folder.glob("rec-*.mp4")), default=0) / 1e6
    if largest > budget_mb + segment_mb:
        problems.append(f"the folder reached {largest:.2f} MB, over the {budget_mb:g} MB budget plus a segment")
    half = [s for s in samples if s.t_s >= seconds / 2]
    if len(half) >= 10:
        t = np.array([s.t_s for s in half])
        span = t[-1] - t[0]
        rss = np.array([s.rss_mb for s in half])
        for name, y, allowed in (("folder bytes", np.array([s.folder_mb for s in half]), max(segment_mb, 0.5)),
                                 ("RSS", rss, max(RSS_RISE_MB, 0.02 * float(np.median(rss))))):
            rise = theil_sen(t, y) * span
            if rise > allowed:
                problems.append(f"{name} rose {rise:.2f} MB over the second half (allowed {allowed:.2f} MB)")
    else:
        problems.append(f"only {len(half)} samples in the second half: too short to judge a trend")
    return problems


def storage_report(samples: list[StorageSample], segments: dict[str, int], out: Path, problems: list[str]) -> None:
    if samples:
        last = samples[-1]
        half = [s for s in samples if s.t_s >= last.t_s / 2]
        t = np.array([s.t_s for s in half])
        frames = [f for f in segments.values() if f > 0]
        print(f"soak: {last.t_s / 60:.1f} min, {len(samples)} samples; {len(segments)} segments read back, "
              f"{sum(frames)} frames ({min(frames, default=0)}-{max(frames, default=0)} per segment), "
              f"{sum(1 for f in segments.values() if f < 0)} unplayable")
        for name, key in (("folder", "folder_mb"), ("RSS", "rss_mb")):
            values = np.array([getattr(s, key) for s in half])
            print(f"soak: {name}: max {max(getattr(s, key) for s in samples):.2f} MB, second half median "
                  f"{np.median(values):.2f} MB, slope {theil_sen(t, values) * 60:+.3f} MB/min, end "
                  f"{getattr(last, key):.2f} MB")
        print(f"soak: retention (/metrics): kept {last.kept_mb:.2f} MB, deleted {last.deleted_mb:.1f} MB in "
              f"{last.deleted_files} files")
    print(f"soak: {out / 'retention.csv'}, {out / 'edgerec.log'}")
    for problem in problems:
        print(f"soak: FAIL: {problem}")
    print("soak: FAIL" if problems else "soak: ok")


# --- the verdict --------------------------------------------------------------------------------------


def theil_sen(t: np.ndarray, y: np.ndarray) -> float:
    """The median of the slopes between every pair of samples: a trend that a few spikes do not move."""
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    keep = dt > 0
    return float(np.median((y[j] - y[i])[keep] / dt[keep])) if keep.any() else 0.0


def trends(samples: list[Sample], seconds: float) -> list[str]:
    """An upward trend over the second half of the run, beyond what noise explains."""
    half = [s for s in samples if s.t_s >= seconds / 2]
    if len(half) < 10:
        return [f"only {len(half)} samples in the second half: too short to judge a trend"]
    t = np.array([s.t_s for s in half])
    span = t[-1] - t[0]
    problems = []
    rss = np.array([s.rss_mb for s in half])
    for name, y, allowed, unit in (
        ("RSS", rss, max(RSS_RISE_MB, 0.02 * float(np.median(rss))), "MB"),
        ("threads", np.array([s.threads for s in half], float), THREADS_RISE, ""),
        ("file descriptors", np.array([s.fds for s in half], float), FDS_RISE, ""),
    ):
        rise = theil_sen(t, y) * span
        if rise > allowed:
            problems.append(f"{name} rose {rise:.1f}{unit} over the second half ({span / 60:.1f} min; noise allowed: "
                            f"{allowed:.1f}{unit})")
    return problems


def read_csv(path: Path) -> list[Sample]:
    with open(path, newline="") as file:
        return [Sample(**{f.name: (row[f.name] if f.type == "str" else float(row[f.name])) for f in fields(Sample)})
                for row in csv.DictReader(file)]


def report(out: Path, samples: list[Sample], stats: dict, problems: list[str]) -> None:
    if samples:
        last = samples[-1]
        first = next((s for s in samples if s.t_s >= WARMUP_S), samples[0])
        half = [s for s in samples if s.t_s >= last.t_s / 2]
        t = np.array([s.t_s for s in half])
        ages = np.array([s.porch_age_ms for s in samples if s.t_s >= WARMUP_S and s.porch_age_ms >= 0])
        latency = np.array([s.latency_ms for s in samples if s.t_s >= WARMUP_S and s.latency_ms >= 0])
        print(f"soak: {last.t_s / 60:.1f} min, {len(samples)} samples; {stats['camera_drops']} camera drops, "
              f"{stats['broker_restarts']} broker restarts, {stats['mqtt_checks']} MQTT checks, "
              f"{stats['events']} events; frames porch {last.porch_frames}, garage {last.garage_frames}; "
              f"CPU {last.cpu_s:.0f} s ({100 * last.cpu_s / max(last.t_s, 1):.0f} % of a core)")
        for name, key, unit in (("RSS", "rss_mb", "MB"), ("threads", "threads", ""), ("fds", "fds", "")):
            values = np.array([getattr(s, key) for s in half], float)
            print(f"soak: {name}: {getattr(first, key):.1f} after the warm-up, {np.median(values):.1f} median of the "
                  f"second half, {getattr(last, key):.1f} at the end; slope over the second half "
                  f"{theil_sen(t, values) * 60:+.3f}{unit}/min")
        if len(ages) and len(latency):
            print(f"soak: porch frame age p50 {np.percentile(ages, 50):.0f} ms, p95 {np.percentile(ages, 95):.0f} ms, "
                  f"max {ages.max():.0f} ms; region latency p50 {np.percentile(latency, 50):.0f} ms, "
                  f"p95 {np.percentile(latency, 95):.0f} ms")
    if "stop_s" in stats:
        print(f"soak: SIGTERM -> exit {stats['exit']} in {stats['stop_s']:.1f} s")
    print(f"soak: {out / 'soak.csv'}, {out / 'soak.png'}, {out / 'edgerec.log'}")
    for problem in problems:
        print(f"soak: FAIL: {problem}")
    print("soak: FAIL" if problems else "soak: ok")


# --- the plot (OpenCV: no plotting library needed) -------------------------------------------------------

PANELS = (("RSS (MB)", ("rss_mb",)), ("threads (blue), open fds (green)", ("threads", "fds")),
          ("frame age (ms): porch (blue), garage (green)", ("porch_age_ms", "garage_age_ms")),
          ("region latency (ms), max", ("latency_ms",)))
COLOURS = ((200, 80, 20), (30, 140, 30), (20, 20, 200))
WIDTH, PANEL_H, LEFT, PAD = 1000, 170, 70, 28


def plot(path: Path, samples: list[Sample], seconds: float) -> None:
    """Four panels over time; grey bands: garage dropped, blue bands: broker down; the dashed line is the RSS
    trend fitted on the second half."""
    image = np.full((PAD + len(PANELS) * (PANEL_H + PAD) + 20, WIDTH, 3), 255, np.uint8)
    cv2.putText(image, f"edgerec soak, {seconds / 60:.0f} min", (LEFT, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1,
                cv2.LINE_AA)
    samples = [s for s in samples if s.t_s >= 10.0]  # past the start (model loading, connecting)
    t = np.array([s.t_s for s in samples]) if samples else np.zeros(0)
    for index, (title, keys) in enumerate(PANELS):
        top = PAD + index * (PANEL_H + PAD)
        series = [np.array([getattr(s, key) for s in samples], float) for key in keys]
        panel(image, top, title, t, series, seconds, samples)
    cv2.imwrite(str(path), image)


def panel(image: np.ndarray, top: int, title: str, t: np.ndarray, series: list[np.ndarray], seconds: float,
          samples: list[Sample]) -> None:
    x0, x1, y0, y1 = LEFT, WIDTH - 20, top + 18, top + PANEL_H
    valid = [y[y >= 0] for y in series if (y >= 0).any()]
    low = min((float(v.min()) for v in valid), default=0.0)
    high = max((float(v.max()) for v in valid), default=1.0)
    low, high = (low - 1, high + 1) if high - low < 2 else (low - 0.05 * (high - low), high + 0.05 * (high - low))

    def x(seconds_: float) -> int:
        return int(x0 + (x1 - x0) * seconds_ / max(seconds, 1))

    def y(value: float) -> int:
        return int(y1 - (y1 - y0) * (value - low) / (high - low))

    for start, action in schedule(seconds):  # fault bands
        if action in ("camera-down", "broker-down"):
            shade, length = ((225, 225, 225), DROP_S) if action == "camera-down" else ((245, 225, 200), BROKER_DOWN_S)
            cv2.rectangle(image, (x(start), y0), (max(x(start + length), x(start) + 1), y1), shade, -1)
    cv2.rectangle(image, (x0, y0), (x1, y1), (120, 120, 120), 1)
    cv2.putText(image, title, (x0, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    for value, row in ((high, y0 + 10), (low, y1)):
        cv2.putText(image, f"{value:.0f}", (5, row), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
    for minute in range(0, int(seconds // 60) + 1, max(1, int(seconds // 600))):
        cv2.putText(image, f"{minute}", (x(minute * 60) - 4, y1 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 0, 1)
    for colour, values in zip(COLOURS, series):
        points = [(x(ti), y(v)) for ti, v in zip(t, values) if v >= 0]
        if len(points) > 1:
            cv2.polylines(image, [np.array(points, np.int32)], False, colour, 1, cv2.LINE_AA)
    half = t >= seconds / 2
    if "RSS" in title and half.sum() >= 10:  # a run cut short (--replot of its CSV) may have no second half
        slope = theil_sen(t[half], series[0][half])
        cv2.putText(image, f"second half: {slope * 60:+.3f} MB/min (dashed)", (x0 + 220, top + 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
        middle = float(np.median(series[0][half]))
        centre = float(np.median(t[half]))
        ends = [(x(ti), y(middle + slope * (ti - centre))) for ti in (t[half][0], t[half][-1])]
        for k in range(0, 20, 2):  # dashed
            a = (ends[0][0] + (ends[1][0] - ends[0][0]) * k // 20, ends[0][1] + (ends[1][1] - ends[0][1]) * k // 20)
            b = (ends[0][0] + (ends[1][0] - ends[0][0]) * (k + 1) // 20,
                 ends[0][1] + (ends[1][1] - ends[0][1]) * (k + 1) // 20)
            cv2.line(image, a, b, (0, 0, 0), 1, cv2.LINE_AA)


if __name__ == "__main__":
    sys.exit(main())
