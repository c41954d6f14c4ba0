"""Temporal smoothing of class probabilities so the shown label does not flicker.

Three steps per frame, in this order:
1. exponential moving average (EMA) of the probabilities, and of the novelty score when the model has one;
2. hysteresis: a new label replaces the shown one only after it has led it by `margin`
   for `frames` consecutive frames;
3. under `min_score` (smoothed), or above the novelty threshold (smoothed, edge.core.novelty), the shown
   label is "unknown".

`settled` says whether more inferences on the same picture would still move the result: a region that
runs on motion keeps running after the motion stopped until its smoother has settled (edge.live.triggers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.core.novelty import UNKNOWN
from edge.errors import EdgerecError

SETTLE_TOLERANCE = 0.05
"""The moving average counts as settled once no class is further than this from the newest probabilities."""


@dataclass(frozen=True)
class SmoothingOptions:
    alpha: float = 0.5
    """EMA weight of the newest frame, in (0, 1]; 1 turns the average off."""
    margin: float = 0.1
    """How far (in smoothed probability) a new label must lead the shown one to count as leading."""
    frames: int = 3
    """How many consecutive frames a new label must lead before it is shown; 1 switches at once."""
    min_score: float = 0.0
    """Under this smoothed score the label shown is "unknown"; 0 never says unknown."""
    unknown: bool = True
    """Say "unknown" when the (smoothed) novelty score is above the threshold, for a model file that carries
    novelty data (docs/unknown.md); False: always one of the labels."""
    unknown_threshold: float | None = None
    """The novelty threshold; None: the one stored in the model file."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise EdgerecError(f"smoothing alpha {self.alpha} is out of range; valid: 0 < alpha <= 1")
        if not 0.0 <= self.margin < 1.0:
            raise EdgerecError(f"smoothing margin {self.margin} is out of range; valid: 0 <= margin < 1")
        if self.frames < 1:
            raise EdgerecError(f"smoothing frames {self.frames} is out of range; valid: an integer >= 1")
        if not 0.0 <= self.min_score <= 1.0:
            raise EdgerecError(f"min score {self.min_score} is out of range; valid: 0 <= min_score <= 1")
        if self.unknown_threshold is not None and not 0.0 <= self.unknown_threshold <= 2.0:
            raise EdgerecError(f"unknown threshold {self.unknown_threshold} is out of range; valid: 0 to 2 (a cosine "
                               "distance), or leave it out for the model file's own")

    def threshold(self, stored: float | None) -> float | None:
        """The novelty threshold in force for a model whose file stores `stored` (None: it has no novelty data);
        None: no unknown by novelty."""
        if not self.unknown or stored is None:
            return None
        return stored if self.unknown_threshold is None else self.unknown_threshold


@dataclass(frozen=True)
class Smoothed:
    label: str
    """The label shown: a class label or "unknown"."""
    index: int
    """Class index of `label`; -1 for "unknown"."""
    score: float
    """Smoothed probability of the shown class (of the held class when "unknown")."""
    changed: bool
    """True when `label` differs from the previous update's (the first update counts as a change)."""
    probs: np.ndarray
    """Read-only view of the smoothed probabilities; overwritten by the next update."""
    novelty: float = float("nan")
    """The smoothed novelty score; NaN without one."""


class Smoother:
    """EMA + hysteresis + minimum score over a stream of probability vectors. One verb: `update`."""

    def __init__(self, labels: Sequence[str], options: SmoothingOptions | None = None,
                 novelty_threshold: float | None = None) -> None:
        """`novelty_threshold`: above it (smoothed) the label is "unknown"; None: novelty never decides."""
        self.labels = list(labels)
        self.options = options or SmoothingOptions()
        self.novelty_threshold = novelty_threshold
        self._novelty = float("nan")
        self._ema = np.zeros(len(self.labels), np.float32)
        self._step = np.zeros_like(self._ema)  # newest probabilities - moving average before the update
        self._scratch = np.empty_like(self._ema)
        self._view = self._ema.view()
        self._view.flags.writeable = False
        self._started = False
        self._held = -1  # class the hysteresis holds
        self._challenger = -1  # class currently leading the held one by the margin
        self._streak = 0  # consecutive frames the challenger has led
        self._shown = -2  # index last shown (-1 unknown, -2 nothing yet)
        self._gap: float | None = 1.0
        """Largest |newest probabilities - moving average| after the last update; None: not asked for yet
        (`settled` works it out from `_step` when asked: only motion-triggered regions ask)."""

    def update(self, probs: np.ndarray, novelty: float = float("nan")) -> Smoothed:
        """Fold one frame's probabilities [C] (and novelty score) into the running state; return what to show."""
        if probs.shape != self._ema.shape:
            n = len(self.labels)
            raise EdgerecError(f"probabilities have shape {probs.shape}; the model has {n} labels")
        first = not self._started
        self._average(probs)
        if first or self.options.alpha == 1.0 or self._novelty != self._novelty:  # NaN: nothing to average yet
            self._novelty = novelty
        else:
            self._novelty += self.options.alpha * (novelty - self._novelty)
        self._hold()
        return self._show()

    @property
    def settled(self) -> bool:
        """True when the average has caught up with the newest probabilities and no new label is on its way:
        another inference on the same picture would not change what is shown."""
        if self._streak != 0:
            return False
        if self._gap is None:  # probs - new average = (1 - alpha) * (probs - old average)
            step = float(np.abs(self._step, out=self._scratch).max())
            self._gap = (1.0 - self.options.alpha) * step
        return self._gap < SETTLE_TOLERANCE

    def _average(self, probs: np.ndarray) -> None:
        alpha = self.options.alpha
        if not self._started or alpha == 1.0:
            self._ema[:] = probs
            self._started, self._gap = True, 0.0
            return
        # ema += alpha * (probs - ema): three passes over the classes, as few as right after session.run
        # (whatever runs there pays for cold caches, docs/benchmarks.md); the gap only when asked
        np.subtract(probs, self._ema, out=self._step)
        np.multiply(self._step, alpha, out=self._scratch)
        self._ema += self._scratch
        self._gap = None

    def _hold(self) -> None:
        best = int(self._ema.argmax())
        if self._held < 0:
            self._held = best
            return
        if best == self._held or self._ema[best] < self._ema[self._held] + self.options.margin:
            self._challenger, self._streak = -1, 0
            return
        self._streak = self._streak + 1 if best == self._challenger else 1
        self._challenger = best
        if self._streak >= self.options.frames:
            self._held, self._challenger, self._streak = best, -1, 0

    def _show(self) -> Smoothed:
        score = float(self._ema[self._held])
        novel = self.novelty_threshold is not None and self._novelty > self.novelty_threshold
        index = self._held if score >= self.options.min_score and not novel else -1
        changed = index != self._shown
        self._shown = index
        label = self.labels[index] if index >= 0 else UNKNOWN
        return Smoothed(label, index, score, changed, self._view, self._novelty)
