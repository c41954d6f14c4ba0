"""`edgerec run` flags -> RunOptions, and the lines the CLI prints while it runs.

The CLI wires it as:
    run = commands.add_parser("run", ...); add_model_arguments(run); add_run_arguments(run)
    options = options_from_args(args)   # then edge.loop.pipeline.run(options, stop, on_change=..., ...)

Settings come from `--config FILE` (edge.app.config), or its defaults; each flag the user gave replaces one
key of it (FLAG_KEYS). Flags therefore default to None, which means "not given".
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.app.config import Config, load_config, run_options, with_overrides
from edge.app.config_write import TomlConfig
from edge.errors import EdgerecError
from edge.live.capture import SOURCE_HELP, SourceOptions, SourceStatus
from edge.live.regions import KEEPALIVE_S, TRIGGERS, parse_region
from edge.live.result import Result
from edge.loop.options import RunOptions, RunSummary
from edge.sinks.events import wall_clock
from edge.sinks.mqtt import PASSWORD_ENV, parse_broker
from edge.sinks.service import under_service_manager
from edge.sinks.window import opencv_gui, window_possible
from edge.web.options import TOKEN_ENV

LOG = logging.getLogger("edgerec.run")
FLAG_KEYS = {  # flag (argparse dest) -> the config key it overrides
    "source": "source.uri", "width": "source.width", "height": "source.height", "fps": "source.fps",
    "mjpg": "source.mjpg", "decode_scale": "source.decode_scale", "paced": "source.paced", "loop": "source.loop",
    "read_timeout": "source.read_timeout", "open_timeout": "source.open_timeout",
    "model": "model.path", "device": "model.device", "threads": "model.threads", "spinning": "model.spinning",
    "fast_int8": "model.fast_int8",
    "infer_fps": "recognition.infer_fps", "trigger": "recognition.trigger", "interval": "recognition.interval",
    "ema": "recognition.ema", "switch_margin": "recognition.switch_margin",
    "switch_frames": "recognition.switch_frames", "min_score": "recognition.min_score",
    "unknown": "recognition.unknown", "unknown_threshold": "recognition.unknown_threshold",
    "top_k": "overlay.top_k", "stats": "overlay.stats",
    "display": "display.window", "out": "recording.path", "segment": "recording.segment",
    "events": "events.path", "snapshots": "snapshots.dir",
    "retain_mb": "retention.max_mb", "retain_days": "retention.max_days",
    "web": "web.listen", "web_token": "web.token", "web_fps": "web.jpeg_fps", "web_max_clients": "web.max_clients",
    "web_tls": "web.tls", "web_cert": "web.tls_cert", "web_key": "web.tls_key",
    "mqtt_topic_prefix": "mqtt.topic_prefix", "mqtt_username": "mqtt.username",
}  # fmt: skip
SOURCE_KEYS = {dest: key for dest, key in FLAG_KEYS.items() if key.startswith("source.")}
DEMO_VIDEO = "edgerec-demo.mp4"

EXAMPLES = f"""\
examples:
  edgerec run --source demo                                demo clip: a window, else {DEMO_VIDEO} here
  edgerec run --source demo --out demo.mp4 --events - --no-display     headless: video + events
  edgerec run --source 0                                   webcam
  edgerec run --source clip.mp4 --out a.mp4 --events e.jsonl --no-display
  edgerec run --source rtsp://cam.local/s1 --infer-fps 5 --events - --no-display
  edgerec run --source /dev/video0 --width 1280 --height 720 --fps 30 --top-k 3
  edgerec run --source 0 --web 127.0.0.1:8080 --no-display       preview at http://127.0.0.1:8080/
  edgerec run --source 0 --region door=0.25,0.1,0.3,0.6 --trigger motion --interval 10 --events -
                                                           watch one place; run the model when it moves
  edgerec run --config garage.toml                         several cameras and regions ([[cameras]])"""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every `edgerec run` flag except --model/--device/--threads/--fast-int8 (the CLI's add_model_arguments)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"{SOURCE_HELP}\n\n{EXAMPLES}"
    defaults = Config()
    parser.add_argument("--config", "-c", type=Path, metavar="FILE",
                        help="read the settings from this TOML file (`edgerec config --defaults` prints every "
                             "setting); the flags given here override it")
    parser.set_defaults(device=None)  # add_model_arguments' default would hide whether --device was given
    add_source_arguments(parser)

    recognise = parser.add_argument_group("places and triggers")
    recognise.add_argument("--region", action="append", metavar="NAME=X,Y,W,H",
                           help="watch this rectangle of the frame (fractions of its width and height), e.g. "
                                "door=0.25,0.1,0.3,0.6; repeat for more regions; default: the whole frame")
    recognise.add_argument("--trigger", choices=TRIGGERS,
                           help="when the model runs: every frame; on motion in the region (plus once at start "
                                f"and every --interval s, default {KEEPALIVE_S:g}); or every --interval s "
                                "(default: frame)")
    recognise.add_argument("--interval", type=float, metavar="S",
                           help="seconds between runs: the keep-alive of --trigger motion, the period of "
                                "--trigger interval")
    recognise.add_argument("--infer-fps", type=float, metavar="FPS",
                           help="run the model at most this often per region (default: no cap); display and "
                                "recording keep the source's frame rate")
    smoothing = defaults.recognition
    recognise.add_argument("--ema", type=float, metavar="ALPHA",
                           help="weight of the newest frame in the moving average of probabilities, "
                                f"1 = no averaging (default: {smoothing.ema:g})")
    recognise.add_argument("--switch-margin", type=float, metavar="P",
                           help=f"a new label must lead the shown one by this probability... "
                                f"(default: {smoothing.switch_margin:g})")
    recognise.add_argument("--switch-frames", type=int, metavar="K",
                           help=f"...for K frames in a row before it is shown (default: {smoothing.switch_frames})")
    recognise.add_argument("--min-score", type=float, metavar="P",
                           help=f'show "unknown" below this smoothed score (default: {smoothing.min_score:g}, never)')
    recognise.add_argument("--unknown", action=argparse.BooleanOptionalAction, default=None,
                           help='show "unknown" for what is unlike every photo the model was taught, when its file '
                                "carries novelty data (edgerec teach/train; docs/unknown.md); --no-unknown: always "
                                "one of the labels (default: on)")
    recognise.add_argument("--unknown-threshold", type=float, metavar="S",
                           help="novelty score above which a region is unknown (default: the model file's own)")

    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--display", action=argparse.BooleanOptionalAction, default=None,
                         help="show a window (q or Esc quits); default: when OpenCV has a GUI and a display")
    outputs.add_argument("--out", metavar="VIDEO", help="write the annotated frames to a video (.mp4, .avi, .mkv)")
    outputs.add_argument("--segment", type=float, metavar="S",
                         help="record --out in files of S seconds each, named from its stem and their start time "
                              "(rec.mp4 -> rec-20261207-011500.mp4); default: one file")
    outputs.add_argument("--events", metavar="FILE",
                         help="append one JSON line per label change (time, frame, label, score, latency_ms); "
                              "- for standard output")
    outputs.add_argument("--snapshots", metavar="DIR", help="save a JPEG of the frame at each label change")
    outputs.add_argument("--top-k", type=int, metavar="K",
                         help="draw bars for the K most probable labels (default: none)")
    outputs.add_argument("--no-stats", dest="stats", action="store_false", default=None,
                         help="do not draw frames per second and latency (drawn by default, updated twice a second)")

    retention = parser.add_argument_group("retention (recording segments, snapshots, rotated events files)")
    retention.add_argument("--retain-mb", type=float, metavar="MB",
                           help="keep them within MB megabytes, deleting the oldest first (default: no limit)")
    retention.add_argument("--retain-days", type=float, metavar="DAYS",
                           help="delete them once older than DAYS days (default: no limit)")

    add_web_arguments(parser.add_argument_group("web preview"), defaults)
    add_mqtt_arguments(parser.add_argument_group("MQTT"), defaults)

    parser.add_argument("--spinning", choices=("auto", "on", "off"), type=str.lower,
                        help="ONNX Runtime's threads spin between runs: auto (default) spins only when frames "
                             "queue (a file --as-fast-as-possible); on a paced camera spinning burns a core")

    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    limits.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")


def add_web_arguments(web: argparse._ArgumentGroup, defaults: Config) -> None:
    web.add_argument("--web", metavar="HOST:PORT",
                     help="serve a live preview page, /stream.mjpg, /api/status, /healthz and /metrics, e.g. "
                          "127.0.0.1:8080; any address but loopback needs a token")
    web.add_argument("--web-token", metavar="TOKEN",
                     help=f"token every web route asks for (header Authorization: Bearer TOKEN or ?token=TOKEN); "
                          f"default: ${TOKEN_ENV}, which keeps it out of the process list")
    web.add_argument("--web-fps", type=float, metavar="FPS",
                     help="JPEGs per second at most for the preview, made only while someone watches "
                          f"(default: {defaults.web.jpeg_fps:g})")
    web.add_argument("--web-max-clients", type=int, metavar="N",
                     help=f"preview viewers at once; more get 503 (default: {defaults.web.max_clients})")
    web.add_argument("--web-tls", choices=("auto", "off"),
                     help="auto: serve HTTPS only, with a self-signed certificate made once in the state directory "
                          "(its SHA-256 fingerprint is logged, to pin); off: plain HTTP (default: "
                          f"{defaults.web.tls})")
    web.add_argument("--web-cert", type=Path, metavar="FILE",
                     help="serve HTTPS only, with your own certificate (PEM); needs --web-key")
    web.add_argument("--web-key", type=Path, metavar="FILE", help="the private key (PEM) of --web-cert")


def add_mqtt_arguments(mqtt: argparse._ArgumentGroup, defaults: Config) -> None:
    mqtt.add_argument("--mqtt", metavar="HOST[:PORT]",
                      help="publish label changes and availability to this MQTT broker, with Home Assistant "
                           "discovery (needs the [mqtt] extra)")
    mqtt.add_argument("--mqtt-topic-prefix", metavar="PREFIX",
                      help=f"topics PREFIX/state and PREFIX/availability (default: {defaults.mqtt.topic_prefix})")
    mqtt.add_argument("--mqtt-username", metavar="USER",
                      help=f"broker user name; the password comes from ${PASSWORD_ENV} or the config")


def add_source_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--source and the flags that shape how it is read, defaulting to None ("not given"); for `edgerec run`
    (where --config may name the source instead) and `edgerec capture` (`required`)."""
    defaults = Config()
    source = parser.add_argument_group("source")
    source.add_argument("--source", "-s", metavar="URI", required=required,
                        help="camera index or /dev/videoN, video file, image or folder of images, rtsp:// or "
                             "http(s):// URL, gst:PIPELINE, picamera2, or demo (examples below)"
                             + ("" if required else "; needed unless --config is given"))
    source.add_argument("--width", type=int, help="camera: requested frame width")
    source.add_argument("--height", type=int, help="camera: requested frame height")
    source.add_argument("--fps", type=float,
                        help="camera: requested frame rate; video file or folder: playback rate")
    source.add_argument("--no-mjpg", dest="mjpg", action="store_false", default=None,
                        help="V4L2 camera: do not ask for MJPG (the default asks: full frame rate over USB 2)")
    source.add_argument("--decode-scale", type=int, choices=(1, 2, 4, 8), metavar="N",
                        help="V4L2 camera (MJPG) or network stream sending MJPEG: decode each frame at 1/N of its "
                             "width and height (1, 2, 4 or 8; default 1), for a camera with more pixels than the "
                             "model needs: a 1080p stream at N=2 took 14-22%% less CPU on a Zen 4 "
                             "(docs/benchmarks.md); windows, recordings and the web page get the smaller frames "
                             "too")
    source.add_argument("--loop", action="store_true", default=None,
                        help="video file or folder: start again at the end")
    source.add_argument("--as-fast-as-possible", dest="paced", action="store_false", default=None,
                        help="video file or folder: do not pace at the frame rate (batch work)")
    source.add_argument("--read-timeout", type=float, metavar="S",
                        help="live source: seconds without a frame before reconnecting "
                             f"(default: {defaults.source.read_timeout:g})")
    source.add_argument("--open-timeout", type=float, metavar="S",
                        help=f"network stream: seconds to wait for a connection "
                             f"(default: {defaults.source.open_timeout:g})")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """RunOptions from `--config` (or the defaults) with the flags the user gave on top.

    A bad value raises EdgerecError naming the file and key, or the flag.
    """
    config = load_config(args.config) if getattr(args, "config", None) else None
    if config is None and args.source is None:
        raise EdgerecError("edgerec run needs --source URI or --config FILE")
    given = {key: str(value) if isinstance(value, Path) else value
             for dest, key in FLAG_KEYS.items() if (value := getattr(args, dest)) is not None}  # fmt: skip
    if given.get("model.spinning") in ("on", "off"):
        given["model.spinning"] = given["model.spinning"] == "on"
    names = {key: "--" + dest.replace("_", "-") for dest, key in FLAG_KEYS.items()}
    if getattr(args, "mqtt", None) is not None:
        host, port = parse_broker(args.mqtt)
        given |= {"mqtt.enabled": True, "mqtt.host": host, "mqtt.port": port}
    if getattr(args, "region", None):
        regions = [parse_region(text) for text in args.region]
        given["regions"] = [{"name": name, "box": list(box)} for name, box in regions]
    config = with_overrides(config or Config(), given, names)
    store = TomlConfig(str(args.config)) if getattr(args, "config", None) else None
    return dataclasses.replace(run_options(config), max_frames=args.max_frames, duration=args.duration,
                               config=store)


def source_options_from_args(args: argparse.Namespace) -> SourceOptions:
    """SourceOptions from the flags of add_source_arguments, the config's defaults for those not given."""
    given = {key: value for dest, key in SOURCE_KEYS.items() if (value := getattr(args, dest)) is not None}
    names = {key: "--" + dest.replace("_", "-") for dest, key in SOURCE_KEYS.items()}
    return run_options(with_overrides(Config(), given, names)).source


def demo_defaults(options: RunOptions, window: bool | None = None,
                  service: bool | None = None) -> tuple[RunOptions, str]:
    """`--source demo` with no output asked for: a window where one can open; else, under a service manager,
    no output but the label lines (a service writes nothing its config did not ask for, and its working
    folder is / , read-only under ProtectSystem=strict); else the annotated video DEMO_VIDEO in the current
    folder. Returns the options and a line saying so ("" when unchanged).

    `window`: whether a window can open (None: ask OpenCV and the environment). `service`: whether systemd
    started us (None: edge.sinks.service.under_service_manager).
    """
    asked = options.display is not None or options.out or options.events or options.snapshots
    if options.source.uri != "demo" or asked:
        return options, ""
    if window if window is not None else window_possible():
        return dataclasses.replace(options, display=True), "showing the demo in a window (q or Esc quits)"
    if service if service is not None else under_service_manager():
        return (dataclasses.replace(options, display=False),
                "running as a service: the demo writes no file; its label changes go to standard output (the journal)")
    why = "this OpenCV has no GUI (opencv-python-headless)" if not opencv_gui() else "there is no display"
    return (dataclasses.replace(options, display=False, out=DEMO_VIDEO),
            f"{why}, so the annotated video goes to {DEMO_VIDEO}")


def describe_change(result: Result) -> str:
    """One line per label change, e.g. `12:00:01.234  frame 42  tabby cat 87%  (35 ms)`, with the camera and
    region when it is not the whole frame: `12:00:01.234  frame 42  camera/door  open 87%  (35 ms)`."""
    when = wall_clock(result.captured).strftime("%H:%M:%S.%f")[:-3]
    where = "" if result.whole_frame else f"{result.camera}/{result.region}  "
    return (f"{when}  frame {result.frame_index}  {where}{result.label} {result.score:.0%}  "
            f"({result.latency_ms:.0f} ms)")


def describe_state(status: SourceStatus) -> str:
    """One line per source state change, e.g. `source: reconnecting (http://...: ...; retrying in 2 s)`, or
    `camera garage: reconnecting (...)` with several cameras."""
    where = f"camera {status.camera}" if status.camera else "source"
    return f"{where}: {status.state}" + (f" ({status.error})" if status.error else "")


REMIND_S = 600.0  # while a camera stays away, one reminder line this often


class StateLog:
    """One journal line per source state change, per camera: a warning when it starts reconnecting, information
    when it streams again (how long it was away, how many attempts). The retries in between, each with its
    backoff, go to the debug level, with one reminder every REMIND_S while the camera stays away."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._away: dict[str, list[float]] = {}  # camera -> [since, last line, attempts]
        self._lock = threading.Lock()  # each camera's grabber thread calls in

    def __call__(self, status: SourceStatus) -> None:
        with self._lock:
            level, line = self._line(status, self._clock())
        LOG.log(level, line)

    def _line(self, status: SourceStatus, now: float) -> tuple[int, str]:
        line = describe_state(status)
        away = self._away.get(status.camera)
        if status.state == "reconnecting":
            if away is None:
                self._away[status.camera] = [now, now, 1.0]
                return logging.WARNING, line
            away[2] += 1
            if now - away[1] < REMIND_S:
                return logging.DEBUG, line
            away[1] = now
            return logging.WARNING, f"{line}; still away after {away[2]:.0f} attempts in {now - away[0]:.0f} s"
        if away is not None:
            del self._away[status.camera]
            if status.state == "streaming":
                return logging.INFO, f"{line} again after {now - away[0]:.1f} s away ({away[2]:.0f} attempts)"
        return logging.INFO, line


def describe_summary(summary: RunSummary) -> list[str]:
    """A few lines for the end of a run: counts, rates, and where the milliseconds went."""
    lines = [
        f"{summary.frames} frames in {summary.elapsed_s:.1f} s ({summary.fps:.1f} fps), model on "
        f"{summary.inferred}, {summary.label_changes} label changes, stopped by {summary.stopped_by}",
    ]
    several = len(summary.cameras) > 1
    for name, camera in summary.cameras.items() or {"": None}.items():
        source = camera.source if camera else summary.source
        lines.append(f"{'source' if not several else f'camera {name}'}: {source.frames} frames, {source.dropped} "
                     f"dropped (newer frame waiting), {source.reconnects} reconnects, {source.skipped} skipped")
        named = {region: r for region, r in (camera.regions.items() if camera else ()) if region != "frame"}
        for region, r in named.items():
            lines.append(f"  region {region}: {r.label or '-'}, model ran {r.inferences} times ({r.trigger}), "
                         f"{r.label_changes} label changes")
    lines.append("ms per frame    mean    p50    p95")
    for name, stats in summary.stages.items():
        lines.append(f"  {name:11s} {stats.mean_ms:7.2f} {stats.p50_ms:6.2f} {stats.p95_ms:6.2f}")
    for name, stats in (("frame age", summary.frame_age), ("latency", summary.latency)):
        lines.append(f"  {name:11s} {stats.mean_ms:7.2f} {stats.p50_ms:6.2f} {stats.p95_ms:6.2f}")
    return lines
