"""The media clock: one tick every frame for every live conference.

Ticks are scheduled against absolute deadlines, so timer jitter does not add
up to drift.  A tick that starts late still runs; when the reactor was held
up for several frames the clock catches up with back-to-back ticks (at most
``MAX_CATCH_UP``), and beyond that skips ahead, counting what it skipped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

logger = logging.getLogger(__name__)

MAX_CATCH_UP = 5
LATENESS_WINDOW = 500


class MediaClock:
    def __init__(
        self,
        reactor: IReactorTime,
        frame_ms: int,
        conferences: Callable[[], Iterable[Any]],
    ) -> None:
        self._reactor = reactor
        self.frame = frame_ms / 1000.0
        self._conferences = conferences
        self._deadline = 0.0
        self._call: IDelayedCall | None = None
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.busy_seconds = 0.0
        # how late each recent tick started, for the health figures
        self._lateness: deque[float] = deque(maxlen=LATENESS_WINDOW)
        self.late_max = 0.0

    @property
    def running(self) -> bool:
        return self._call is not None

    def start(self) -> None:
        if self._call is not None:
            return
        self._deadline = self._reactor.seconds() + self.frame
        self._call = self._reactor.callLater(self.frame, self._fire)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        now = self._reactor.seconds()
        lateness = max(0.0, now - self._deadline)
        self._lateness.append(lateness)
        self.late_max = max(self.late_max, lateness)
        behind = int((now - self._deadline) / self.frame)
        if behind > MAX_CATCH_UP:
            skipped = behind - MAX_CATCH_UP
            self.skipped_ticks += skipped
            self._deadline += skipped * self.frame
            behind = MAX_CATCH_UP
            logger.warning("media clock fell behind; skipped %d frames", skipped)
        if behind > 0:
            self.late_ticks += behind

        for _ in range(behind + 1):
            self._tick(self._deadline)
            self._deadline += self.frame
        self.busy_seconds += self._reactor.seconds() - now
        delay = max(0.0, self._deadline - self._reactor.seconds())
        self._call = self._reactor.callLater(delay, self._fire)

    def _tick(self, when: float) -> None:
        self.ticks += 1
        for conference in list(self._conferences()):
            try:
                conference.tick(when)
            except Exception:
                logger.exception("conference %s: tick failed", conference.room)

    def stats(self) -> dict[str, Any]:
        recent = sorted(self._lateness)
        p99 = recent[int(0.99 * (len(recent) - 1))] if recent else 0.0
        return {
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "skipped_ticks": self.skipped_ticks,
            "busy_seconds": round(self.busy_seconds, 3),
            "late_ms_p99": round(1000.0 * p99, 2),
            "late_ms_max": round(1000.0 * self.late_max, 2),
        }
