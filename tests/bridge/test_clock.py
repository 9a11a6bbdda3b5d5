"""The media clock against Twisted's task.Clock: on time, catching up, skipping."""

from __future__ import annotations

import pytest
from twisted.internet import task

from bridge.clock import MAX_CATCH_UP, MediaClock


class Room:
    room = "r"

    def __init__(self) -> None:
        self.times: list[float] = []

    def tick(self, now: float) -> None:
        self.times.append(now)


def test_ticks_every_frame_at_absolute_deadlines():
    reactor, room = task.Clock(), Room()
    clock = MediaClock(reactor, 20, lambda: [room])
    clock.start()
    for _ in range(50):
        reactor.advance(0.0203)  # timers fire a little late, every time
    assert len(room.times) == 50
    # deadlines do not drift with the timer's lateness
    assert room.times[-1] == pytest.approx(50 * 0.02, abs=1e-9)
    assert clock.stats()["late_ticks"] == 0


def test_a_stall_is_caught_up_then_skipped():
    reactor, room = task.Clock(), Room()
    clock = MediaClock(reactor, 20, lambda: [room])
    clock.start()
    reactor.advance(0.02)
    reactor.advance(0.065)  # a 65 ms stall: three frames due at once
    assert len(room.times) == 4 and clock.late_ticks == 2
    reactor.advance(1.0)  # a second-long stall: catch up a few, skip the rest
    stats = clock.stats()
    assert stats["skipped_ticks"] > 0
    assert len(room.times) == 4 + MAX_CATCH_UP + 1
    assert stats["late_ms_max"] >= 900
    clock.stop()
    reactor.advance(1.0)
    assert len(room.times) == 4 + MAX_CATCH_UP + 1


def test_one_failing_room_does_not_stop_the_others():
    reactor, good = task.Clock(), Room()

    class Broken(Room):
        def tick(self, now: float) -> None:
            raise RuntimeError("boom")

    clock = MediaClock(reactor, 20, lambda: [Broken(), good])
    clock.start()
    for _ in range(5):
        reactor.advance(0.02)
    assert len(good.times) == 5
