"""Runs the model for the regions that are due this turn: one batch per model file, one session each.

The due regions of every camera that delivered a frame this turn are grouped by model; each group's crops
are fitted into that model's reusable batch buffer (one row per region that uses the model, made once) and
run in at most `max_batch`-sized calls; each region's row of probabilities goes to its smoother. Batching
is a choice, not a given: on a CPU a batch of N costs about N single runs (docs/benchmarks.md,
"Regions"), so `max_batch` is measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edge.live.camera import ModelLike, RegionState
from edge.live.capture import Frame
from edge.live.stages import StageTimer

NAN = float("nan")
NO_ROWS = np.empty((0,), np.float32)
"""Stands for "not computed" (features and novelty of a model asked for probs alone)."""


def _read_only(row: np.ndarray) -> np.ndarray:
    view = row.view()
    view.flags.writeable = False
    return view


class Scheduler:
    """One verb: `run(due)` — fit, infer, smooth every due (region, frame, fps) of a turn."""

    def __init__(self, models: Mapping[str, ModelLike], regions: Sequence[RegionState],
                 timers: Mapping[str, StageTimer], clock: Callable[[], float], now: Callable[[], float],
                 max_batch: int = 8) -> None:
        """`clock` times the stages; `now` is time.monotonic (frame latency); `max_batch` caps one call's batch."""
        self.models, self.timers, self.clock, self.now = models, timers, clock, now
        self.max_batch = max(1, max_batch)
        self.batches = {key: self._buffer(model, sum(r.model_key == key for r in regions))
                        for key, model in models.items()}  # fmt: skip
        self._groups: dict[str, list[tuple[RegionState, Frame, float]]] = {key: [] for key in models}
        self.novelty = {key: any(r.scores_novelty for r in regions if r.model_key == key) for key in models}
        """Per model: whether any of its regions asks for novelty scores (one run then gives probs, features
        and novelty; else `infer` asks for probs alone)."""

    def _buffer(self, model: ModelLike, regions: int) -> np.ndarray:
        """The model's batch: one row per region that uses it, at most max_batch rows."""
        geometry = model.geometry
        return np.zeros((max(1, min(regions, self.max_batch)), geometry.height, geometry.width, 3), np.uint8)

    def run(self, due: Sequence[tuple[RegionState, Frame, float]]) -> None:
        for item in due:
            self._groups[item[0].model_key].append(item)
        for key, group in self._groups.items():
            for start in range(0, len(group), self.max_batch):
                self._run_batch(key, group[start : start + self.max_batch])
            group.clear()

    def _run_batch(self, key: str, items: Sequence[tuple[RegionState, Frame, float]]) -> None:
        clock, batch = self.clock, self.batches[key]
        t0 = clock()
        for slot, (region, frame, _) in zip(batch, items):
            region.fitter.fit(region.crop(frame.image), out=slot)
        t1 = clock()
        rows = batch if len(items) == len(batch) else batch[: len(items)]
        if self.novelty[key]:
            probs, features, novelty = self.models[key].infer_novelty(rows)
        else:
            probs, features, novelty = self.models[key].infer(rows), NO_ROWS, NO_ROWS
        t2 = clock()
        infer_ms = (t2 - t1) * 1000
        now = self.now()
        for i, (region, frame, fps) in enumerate(items):
            region.update(probs[i], frame, fps, (now - frame.captured) * 1000, infer_ms,
                          float(novelty[i]) if novelty is not NO_ROWS else NAN,
                          _read_only(features[i]) if features is not NO_ROWS else None)
        t3 = clock()
        self.timers["preprocess"].add((t1 - t0) * 1000)
        self.timers["infer"].add(infer_ms)
        self.timers["smooth"].add((t3 - t2) * 1000)
