"""Stage timing for the per-frame path: a fixed ring per stage, summarised once at the end or on demand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StageStats:
    count: int
    mean_ms: float
    p50_ms: float
    """Median over the last `StageTimer.capacity` samples; likewise p95_ms."""
    p95_ms: float
    max_ms: float


class StageTimer:
    """Count, mean and max of every sample; median and p95 over the last `capacity` (a fixed ring)."""

    capacity = 2048

    def __init__(self) -> None:
        self._ring = np.zeros(self.capacity)
        self.count, self.total, self.max, self.latest = 0, 0.0, 0.0, 0.0

    def add(self, ms: float) -> None:
        self.latest = ms
        self._ring[self.count % self.capacity] = ms
        self.count += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def stats(self) -> StageStats:
        if not self.count:
            return StageStats(0, 0.0, 0.0, 0.0, 0.0)
        recent = self._ring[: min(self.count, self.capacity)]
        p50, p95 = np.percentile(recent, [50, 95])
        return StageStats(self.count, self.total / self.count, float(p50), float(p95), self.max)
