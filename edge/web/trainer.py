"""Teaching from the web page: the state directory, training in a worker process, accepted model versions.

    STATE/teach/<camera>/<region>/data/<label>/*.jpg     crops (edge.learn.collect), the layout `edgerec teach` reads
    STATE/teach/<camera>/<region>/candidate.onnx (.json) the newest training's file, until accepted
    STATE/teach/<camera>/<region>/models/vN.onnx (.json) accepted versions, never overwritten

STATE is [web] state_dir, else $STATE_DIRECTORY (systemd's StateDirectory=edgerec: /var/lib/edgerec), else
~/.local/state/edgerec. Training runs edge.learn.head in a process of its own (spawned, niced, one inference
thread), never on the frame loop's thread or the web server's event loop; one training at a time.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import EdgerecError
from edge.files import atomic_path
from edge.learn.collect import check_name

VERSION_FILE = re.compile(r"v([1-9][0-9]{0,5})\.onnx")
WORKER_NICE = 10
"""The training process yields the CPU to the frame loop."""


def state_dir(configured: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where crops and models go: `configured`, else $STATE_DIRECTORY (its first entry), else ~/.local/state."""
    environ = os.environ if environ is None else environ
    if configured:
        return Path(configured)
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    return Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edgerec"


@dataclass(frozen=True)
class Place:
    """A camera's region, and its folders under the state directory."""

    camera: str
    region: str
    root: Path

    @classmethod
    def of(cls, state: Path, camera: str, region: str) -> Place:
        return cls(camera, region, state / "teach" / check_name(camera, "camera") / check_name(region, "region"))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def candidate(self) -> Path:
        return self.root / "candidate.onnx"

    @property
    def models(self) -> Path:
        return self.root / "models"


# --- training in a worker process ---


class Trainer:
    """One training at a time, in a spawned process that reports progress and its result on a queue."""

    def __init__(self) -> None:
        self.place: Place | None = None
        self.state: dict[str, Any] = {"state": "idle"}
        self._process: multiprocessing.process.BaseProcess | None = None
        self._queue: Any = None

    def start(self, place: Place, base: str | None) -> None:
        self._drain()
        if self.state["state"] == "running":
            raise Busy(f"a training of {self.place.camera}/{self.place.region} is running; one at a time")
        if not place.data.is_dir():
            raise EdgerecError(f"{place.camera}/{place.region}: no crops collected yet; collect a label first "
                               "(one label makes an anomaly model: that label or unknown)")
        place.root.mkdir(parents=True, exist_ok=True)
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._queue = context.Queue()
        self._process = context.Process(target=train_worker, args=(str(place.data), str(place.candidate), base,
                                                                   self._queue), name="edgerec-teach", daemon=True)
        self.place = place
        self.state = {"state": "running", "camera": place.camera, "region": place.region, "done": 0, "total": 0,
                      "started": time.time()}
        self._process.start()

    def status(self) -> dict[str, Any]:
        self._drain()
        return dict(self.state)

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)

    def _drain(self) -> None:
        if self._queue is None:
            return
        alive = self._process is not None and self._process.is_alive()  # before reading: a process that has
        while True:  # ended has flushed all it sent, so what it sent is read below
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                self.state.update(done=payload[0], total=payload[1])
            elif kind == "done":  # wall_s: from the request to the file written, the worker's start included
                self.state = {**self.state, "state": "done", "result": payload,
                              "wall_s": round(payload["created"] - self.state["started"], 2)}
            else:
                self.state = {**self.state, "state": "failed", "error": payload}
        if self.state["state"] == "running" and not alive:
            code = self._process.exitcode if self._process is not None else None
            self.state = {**self.state, "state": "failed", "error": f"the training process ended with code {code}"}


class Busy(EdgerecError):
    """A training is already running."""


def train_worker(data: str, out: str, base: str | None, messages: Any) -> None:
    """In the worker process: teach, sending ("progress", (done, total)), then ("done", result) or ("error", line)."""
    from edge.learn.head import TeachOptions, teach

    with contextlib.suppress(OSError):  # a sandbox that forbids it: train at the service's priority
        os.nice(WORKER_NICE)
    sent = [0]

    def progress(done: int, total: int) -> None:  # at most ~50 messages: the pipe never fills while nobody polls
        if done == total or done - sent[0] >= max(1, total // 50):
            sent[0] = done
            messages.put(("progress", (done, total)))

    try:
        report = teach(TeachOptions(Path(data), Path(out), base=Path(base) if base else None, views=("flip",),
                                    threads=1, on_progress=progress))
        low, high = report.val_interval
        result = {"labels": list(report.classes), "train_counts": list(report.train_counts),
                  "val_counts": list(report.val_counts), "val_top1": report.val_top1, "val_low95": low,
                  "val_high95": high, "val_n": report.val_n, "train_top1": report.head.train_top1,
                  "seconds": round(report.seconds["total"], 2), "cpu_s": round(report.seconds["cpu"], 2),
                  "base": str(report.base), "created": time.time(),
                  "unknown_threshold": None if report.novelty is None else report.novelty.threshold,
                  "val_known_kept": None if report.val_novelty is None
                  else float((report.val_novelty <= report.novelty.threshold).mean())}
        with atomic_path(Path(out).with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(result))
        messages.put(("done", result))
    except EdgerecError as error:
        messages.put(("error", str(error)))
    except Exception as error:  # the page shows it; the service keeps running
        messages.put(("error", f"{type(error).__name__}: {error}"))


# --- accepted versions ---


def versions(place: Place) -> list[dict[str, Any]]:
    """Every accepted version of `place`, oldest first, with its training result."""
    if not place.models.is_dir():
        return []
    found = []
    for path in place.models.iterdir():
        match = VERSION_FILE.fullmatch(path.name)
        if match:
            summary = path.with_suffix(".json")
            result = json.loads(summary.read_text()) if summary.is_file() else {}
            found.append({"version": int(match.group(1)), "path": str(path), **result})
    return sorted(found, key=lambda v: v["version"])


def keep_candidate(place: Place) -> Path:
    """The candidate becomes the next version vN.onnx (never overwriting one); its path."""
    if not place.candidate.is_file():
        raise EdgerecError(f"{place.camera}/{place.region}: nothing to accept; train first")
    place.models.mkdir(parents=True, exist_ok=True)
    number = max((v["version"] for v in versions(place)), default=0) + 1
    while True:
        target = place.models / f"v{number}.onnx"
        try:
            os.link(place.candidate, target)  # fails if the version exists: it is never overwritten
            break
        except FileExistsError:
            number += 1
    summary = place.candidate.with_suffix(".json")
    if summary.is_file():
        os.replace(summary, target.with_suffix(".json"))
    place.candidate.unlink()
    return target


def version_path(place: Place, version: int | None) -> str:
    """The model file of `version` ("" for None: the base model)."""
    if version is None:
        return ""
    path = place.models / f"v{version}.onnx"
    if not path.is_file():
        raise EdgerecError(f"{place.camera}/{place.region}: no version v{version}; valid: "
                           + (", ".join(f"v{v['version']}" for v in versions(place)) or "none yet"))
    return str(path)
