"""The review queue: crops the camera met that are worth labelling, kept on the device for the web page.

Which: a region's inferred result whose label is "unknown", the first result after its label changed (the first
result of all counts as a change) and those of the next `after_change_s` seconds, or one whose score is below
`low_score`. How many: one per region every `min_gap_s` at most (the first after a change whenever it comes),
`per_hour` per region in any hour, `max_mb` in all (the oldest go first), and none that is a near-duplicate of
the last `compare` kept in its region (the cosine distance of the result's `features` below `duplicate`;
without features, of a 16x16 colour thumbnail of the crop).

    ROOT/<camera>/<region>/<ms>-<n>.jpg    the crop (the region's raw pixels, never the overlay)
    ROOT/<camera>/<region>/<ms>-<n>.json   its result: label, score, novelty, reason, time, camera, region, ...

The page lists a region's items, and assigns one to a label (the crop moves into the region's teach crops,
edge.learn.collect's DATA/<label>/ layout, where the page's train and accept take it) or discards it.

The frame loop calls `write` as a raw sink (it gets the camera's pixels before any overlay is drawn): per
inferred region a few comparisons, and a copy of the crop only when one is offered. The duplicate check, the
hourly cap, the JPEG encoding, the disk writes and the byte cap happen on the queue's own thread.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.learn.collect import CROP_FILE, JPEG_QUALITY, check_crop_file, check_name
from edge.live.regions import pixel_rect
from edge.live.result import FrameResult, Result

UNKNOWN = "unknown"
"""The label of a result the model does not know (below its min score, or novel)."""
REASONS = ("unknown", "label change", "low score")
HOUR_S = 3600.0
THUMB = 16
"""Side of the colour thumbnail compared when a result has no features."""
QUEUE = 8
"""Crops waiting for the queue's thread; more are dropped (counted as "busy")."""


@dataclass(frozen=True)
class ReviewOptions:
    """Which crops the live loop keeps for review, and how many ([review] in the config)."""

    enabled: bool = True
    """Keep crops for review while the web page runs."""
    low_score: float = 0.6
    """A result whose score is below this is kept ("low score"); 0: none for their score."""
    after_change_s: float = 5.0
    """After a region's label changed, its results of this many seconds are kept ("label change"; the first at
    once, then one every min_gap_s); 0: only the first."""
    per_hour: int = 20
    """At most this many crops per region in any hour."""
    max_mb: float = 50.0
    """At most this many megabytes of crops in all; the oldest are dropped first."""
    duplicate: float = 0.1
    """A crop whose cosine distance to one of the last `compare` kept in its region is below this is a
    near-duplicate, and dropped (features where the model has them, else a 16x16 colour thumbnail); 0: keep all."""
    compare: int = 20
    """How many of a region's newest kept crops a new one is compared with."""
    min_gap_s: float = 2.0
    """At most one crop per region this often (seconds); the frame loop copies no more than that."""

    def __post_init__(self) -> None:
        checks = (("low_score", 0 <= self.low_score <= 1, "0-1"),
                  ("after_change_s", 0 <= self.after_change_s <= HOUR_S, "0-3600"),
                  ("per_hour", 1 <= self.per_hour <= 3600, "1-3600"),
                  ("max_mb", 0 < self.max_mb <= 100_000, "a number > 0, at most 100000"),
                  ("duplicate", 0 <= self.duplicate <= 2, "0-2 (a cosine distance)"),
                  ("compare", 1 <= self.compare <= 1000, "1-1000"),
                  ("min_gap_s", 0 <= self.min_gap_s <= HOUR_S, "0-3600"))  # fmt: skip
        for name, fine, valid in checks:
            if not fine:
                raise EdgerecError(f"review {name} {getattr(self, name)}; valid: {valid}")

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)


def reason_for(result: Result, changing: bool, low_score: float) -> str | None:
    """Why `result` is worth labelling (one of REASONS), or None. `changing`: its region's label changed on it or
    less than after_change_s before."""
    if result.label == UNKNOWN:
        return "unknown"
    if changing:
        return "label change"
    if result.score < low_score:
        return "low score"
    return None


class _Watch:
    """A region as the frame loop follows it (made once per region, then reused)."""

    __slots__ = ("changed_until", "next_at", "full_until")

    def __init__(self) -> None:
        self.changed_until = -math.inf  # the end of the "label change" window
        self.next_at = -math.inf  # min_gap_s after the last crop offered
        self.full_until = -math.inf  # set by the queue's thread while the region has its hour's crops


@dataclass
class _Offer:
    watch: _Watch
    camera: str
    region: str
    crop: np.ndarray
    features: np.ndarray | None
    record: dict[str, Any]
    time: float


@dataclass
class _Kept:
    """What the queue's thread remembers of a region: when its crops were kept, and their vectors."""

    times: deque[float] = field(default_factory=deque)
    vectors: deque[np.ndarray] = field(default_factory=deque)


class ReviewQueue:
    """A raw sink (`write`, `close`) that keeps crops worth labelling, and what the routes call (items, crop_path,
    assign, discard, status)."""

    wants_overlay = False

    def __init__(self, root: Path, options: ReviewOptions | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`root`: where the items go (STATE/review); `clock`: seconds since the epoch (a fake one in tests)."""
        self.root, self.options, self.clock = root, options or ReviewOptions(), clock
        self.kept = 0
        self.dropped = {"duplicate": 0, "hourly": 0, "bytes": 0, "busy": 0, "error": 0}
        self.error = ""
        self._watch: dict[str, dict[str, _Watch]] = {}
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._index: dict[Path, int] = {}  # every item's crop -> its bytes (crop and record), oldest first
        self._bytes = 0
        self._counter = 0
        self._lock = threading.Lock()  # the index and the files, between the routes and the queue's thread
        self._queue: queue.Queue[_Offer | None] = queue.Queue(maxsize=QUEUE)
        self._closed = False
        self._scan()
        self._thread = threading.Thread(target=self._keep_loop, name="edgerec-review", daemon=True)
        self._thread.start()

    def folder(self, camera: str, region: str) -> Path:
        return self.root / check_name(camera, "camera") / check_name(region, "region")

    # --- the frame loop (this must stay cheap) ---

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """Offer the crop of each inferred region worth labelling (at most one per region every min_gap_s)."""
        if self._closed or not self.options.enabled:
            return
        watched = self._watch.get(result.camera)
        if watched is None:
            watched = self._watch[result.camera] = {}
        now = None
        for region in result.regions:
            if not region.inferred:
                continue  # carried over: the same result as before, on another frame
            watch = watched.get(region.region)
            if watch is None:
                watch = watched[region.region] = _Watch()
            now = self.clock() if now is None else now
            if region.changed:
                watch.changed_until = now + self.options.after_change_s
            reason = reason_for(region, now <= watch.changed_until, self.options.low_score)
            if reason is None or now < watch.full_until or (now < watch.next_at and not region.changed):
                continue
            watch.next_at = now + self.options.min_gap_s
            self._offer(frame, result, region, watch, reason, now)

    def _offer(self, frame: np.ndarray, result: FrameResult, region: Result, watch: _Watch, reason: str,
               now: float) -> None:
        rows, cols = pixel_rect(region.box, frame.shape[0], frame.shape[1])
        crop = frame[rows, cols].copy()  # the only copies, and only when a crop is offered
        features = None if region.features is None else np.array(region.features, np.float32)
        record = {"camera": result.camera, "region": region.region, "label": region.label, "index": region.index,
                  "score": round(float(region.score), 4), "novelty": finite(region.novelty), "reason": reason,
                  "time": round(now, 3), "frame_index": region.frame_index, "trigger": region.trigger,
                  "box": list(region.box)}  # fmt: skip
        try:
            self._queue.put_nowait(_Offer(watch, result.camera, region.region, crop, features, record, now))
        except queue.Full:
            self.dropped["busy"] += 1

    def settle(self) -> None:
        """Wait until every crop offered so far is kept or dropped (tests, and before a listing that must show it)."""
        self._queue.join()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    # --- the queue's thread ---

    def _keep_loop(self) -> None:
        while (offer := self._queue.get()) is not None:
            try:
                self._keep(offer)
            except OSError as error:
                self.dropped["error"] += 1
                self.error = f"cannot write under {self.root}: {error.strerror or error}"
            finally:
                self._queue.task_done()

    def _keep(self, offer: _Offer) -> None:
        kept = self._kept.setdefault((offer.camera, offer.region), _Kept())
        while kept.times and kept.times[0] <= offer.time - HOUR_S:
            kept.times.popleft()
        if len(kept.times) >= self.options.per_hour:
            offer.watch.full_until = kept.times[0] + HOUR_S
            self.dropped["hourly"] += 1
            return
        vector = unit(offer.features) if offer.features is not None else thumbnail(offer.crop)
        if self.options.duplicate > 0 and nearest_distance(vector, kept.vectors) < self.options.duplicate:
            self.dropped["duplicate"] += 1
            return
        ok, jpeg = cv2.imencode(".jpg", offer.crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError("the JPEG encoder failed")
        record = json.dumps(offer.record).encode()
        self._counter += 1
        crop = self.folder(offer.camera, offer.region) / f"{int(offer.time * 1000)}-{self._counter}.jpg"
        with self._lock:
            crop.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(crop, jpeg.tobytes())
            write_bytes_atomic(crop.with_suffix(".json"), record)
            self._index[crop] = jpeg.nbytes + len(record)
            self._bytes += jpeg.nbytes + len(record)
            self._trim()
        kept.times.append(offer.time)
        kept.vectors.append(vector)
        while len(kept.vectors) > self.options.compare:
            kept.vectors.popleft()
        self.kept += 1
        self.error = ""

    def _trim(self) -> None:
        """Under the lock: drop the oldest items while they take more than max_bytes."""
        while self._bytes > self.options.max_bytes and self._index:
            oldest = next(iter(self._index))
            self._forget(oldest)
            remove(oldest)
            self.dropped["bytes"] += 1

    def _forget(self, crop: Path) -> None:
        self._bytes -= self._index.pop(crop, 0)
        crop.with_suffix(".json").unlink(missing_ok=True)

    def _scan(self) -> None:
        """What an earlier run kept: the byte count, the order to drop in, each region's crops of the last hour."""
        found = []
        for record in self.root.glob("*/*/*.json"):
            crop = record.with_suffix(".jpg")
            if CROP_FILE.fullmatch(crop.name) and crop.is_file():
                found.append((order(crop.name), crop, crop.stat().st_size + record.stat().st_size))
        now = self.clock()
        for (stamp, _), crop, size in sorted(found):
            self._index[crop] = size
            self._bytes += size
            if stamp / 1000 > now - HOUR_S:
                self._kept.setdefault((crop.parent.parent.name, crop.parent.name), _Kept()).times.append(stamp / 1000)
            self._counter = max(self._counter, order(crop.name)[1])

    # --- the routes ---

    def items(self, camera: str, region: str) -> list[dict[str, Any]]:
        """The region's items, newest first: each its result with "file" (the crop's name)."""
        folder = self.folder(camera, region)
        with self._lock:
            crops = sorted((crop for crop in self._index if crop.parent == folder), key=lambda c: order(c.name),
                           reverse=True)
        found = []
        for crop in crops:
            try:
                found.append({**json.loads(crop.with_suffix(".json").read_bytes()), "file": crop.name})
            except (OSError, ValueError):  # assigned or discarded meanwhile, or not ours
                continue
        return found

    def crop_path(self, camera: str, region: str, name: str) -> Path:
        return self.folder(camera, region) / check_crop_file(name)

    def discard(self, camera: str, region: str, name: str) -> None:
        crop = self.crop_path(camera, region, name)
        with self._lock:
            if crop not in self._index:
                raise EdgerecError(f"no review item {camera}/{region}/{name}")
            self._forget(crop)
            remove(crop)

    def assign(self, camera: str, region: str, name: str, label: str, data: Path) -> Path:
        """Move the item's crop into `data`/<label>/ (the region's teach crops); its new path."""
        check_name(label, "label")
        if label == UNKNOWN:
            raise EdgerecError(f"label {UNKNOWN!r} is reserved (what the model answers for what it was not "
                               "taught); valid: any other name")
        crop = self.crop_path(camera, region, name)
        with self._lock:
            if crop not in self._index:
                raise EdgerecError(f"no review item {camera}/{region}/{name}")
            target = free_name(data / label, crop.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(crop, target)
            self._forget(crop)
        return target

    def status(self) -> dict[str, Any]:
        """Items per camera and region, bytes, and how many were kept and dropped (and why) since the start."""
        with self._lock:
            crops, total = list(self._index), self._bytes
        items: dict[str, dict[str, int]] = {}
        for crop in crops:
            regions = items.setdefault(crop.parent.parent.name, {})
            regions[crop.parent.name] = regions.get(crop.parent.name, 0) + 1
        return {"enabled": self.options.enabled, "items": items, "bytes": total,
                "max_bytes": self.options.max_bytes, "kept": self.kept, "dropped": dict(self.dropped),
                "error": self.error}  # fmt: skip


def finite(value: float) -> float | None:
    """A number for JSON (NaN and infinities have no JSON form): rounded, or None."""
    return round(float(value), 4) if math.isfinite(value) else None


def unit(vector: np.ndarray) -> np.ndarray:
    flat = vector.astype(np.float32).ravel()
    norm = float(np.linalg.norm(flat))
    return flat / norm if norm > 0 else flat


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """A THUMB x THUMB colour version of `crop`, as a unit vector (the stand-in for features; in colour, so that
    two plain crops of different colours are not the same direction)."""
    return unit(cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA))


def nearest_distance(vector: np.ndarray, others: deque[np.ndarray]) -> float:
    """The smallest cosine distance from `vector` to `others` of the same length (inf when there is none)."""
    same = [other for other in others if other.shape == vector.shape]
    if not same:
        return math.inf
    return float(1.0 - np.max(np.stack(same) @ vector))


def order(name: str) -> tuple[int, int]:
    stamp, _, counter = name[:-4].partition("-")
    return int(stamp), int(counter)


def free_name(folder: Path, name: str) -> Path:
    """`folder`/`name`, or the first `<ms>-<n+k>.jpg` there that does not exist yet."""
    stamp, counter = order(name)
    target = folder / name
    while target.exists():
        counter += 1
        target = folder / f"{stamp}-{counter}.jpg"
    return target


def remove(crop: Path) -> None:
    crop.unlink(missing_ok=True)
    try:
        crop.parent.rmdir()
    except OSError:  # not empty
        pass
