"""A file sink that cannot write (disk full, folder read-only) degrades and recovers instead of ending the run.

A failed write starts an outage: one warning line naming the file and the reason. While it lasts the sink
tries again at most every `retry_s` seconds (`ready()` is one comparison, so the frame loop pays nothing
per frame), and says nothing more; the first write that works again ends it with one line saying how long
it lasted and how much was lost. Durations come from the monotonic clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

LOG = logging.getLogger("edgerec.sinks")
RETRY_S = 5.0
"""Seconds between attempts while a sink cannot write."""


class Outage:
    """Whether a sink's writes fail now, when to try again, and one log line per change of state."""

    def __init__(self, what: str, retry_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """`what` names the sink and its file in the log lines, e.g. "--events /var/lib/edgerec/events.jsonl";
        `retry_s` None: RETRY_S."""
        self.what, self.retry_s, self.clock = what, RETRY_S if retry_s is None else retry_s, clock
        self.since: float | None = None
        """Monotonic time the outage began; None while writes work."""
        self.outages = 0
        """Outages so far."""
        self._next = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None

    def ready(self) -> bool:
        """Whether to attempt a write now: always while writes work, once per `retry_s` while they fail."""
        return self.since is None or self.clock() >= self._next

    def failed(self, why: str, keeping: str = "") -> None:
        """A write failed because of `why`; `keeping` says what the sink does meanwhile (logged once)."""
        now = self.clock()
        self._next = now + self.retry_s
        if self.since is not None:
            LOG.debug("%s: still cannot write: %s", self.what, why)
            return
        self.since = now
        self.outages += 1
        LOG.warning("%s: cannot write: %s; %sretrying every %g s", self.what, why,
                    f"{keeping}; " if keeping else "", self.retry_s)  # fmt: skip

    def recovered(self, lost: str = "") -> None:
        """A write worked: end the outage, if any, with one line (`lost` says what did not reach the file)."""
        if self.since is None:
            return
        took = self.clock() - self.since
        self.since = None
        LOG.info("%s: writing again after %.1f s%s", self.what, took, f"; {lost}" if lost else "")
