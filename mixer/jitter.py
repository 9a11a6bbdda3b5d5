"""Input buffers that absorb jitter and clock drift for all legs of one rate.

Every leg of a rate shares one ring of int16 samples, one row per leg, and
one read position: the mixer takes exactly one frame from every row per tick,
so reading all legs is a single slice.  Each row has its own write position.
The distance between the two is the leg's buffered audio.

Per leg the buffer keeps a *slack* (audio still buffered just after the mixer
took its frame) near a target:

* a leg whose clock runs fast piles up slack; once the smallest slack seen
  over a window exceeds the target, the newest samples are dropped;
* a leg whose clock runs slow loses slack; before it runs dry, the last
  samples are repeated (at the end of a window, or at once when the slack
  falls under a quarter frame);
* a leg that runs dry in the middle of a frame (an underrun) has the missing
  part concealed with silence and is primed again with a target's worth of
  silence, and its target grows a little (up to a limit), so a jittery leg
  gets a deeper buffer; after a quiet spell the target shrinks again;
* a leg that sends nothing at all is idle: it contributes silence, cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
Int64Array = npt.NDArray[np.int64]

#: Frames of audio a row can hold; a push beyond that is dropped.
RING_FRAMES = 16
#: Ticks over which the smallest slack is measured before correcting drift.
DRIFT_WINDOW_TICKS = 25
#: Ticks without an underrun before the target shrinks one step.
SHRINK_AFTER_TICKS = 250


@dataclass
class BufferStats:
    """Counters of one leg's input buffer."""

    frames_pushed: int = 0
    underruns: int = 0
    overflows: int = 0
    samples_dropped: int = 0
    samples_repeated: int = 0


class RateGroupBuffer:
    """Jitter and drift buffers of every leg at one sample rate."""

    def __init__(
        self,
        frame: int,
        target: int,
        min_target: int,
        max_target: int,
        capacity: int = 8,
    ) -> None:
        if not 0 < min_target <= target <= max_target:
            raise ValueError("buffer targets must satisfy 0 < min <= target <= max")
        if max_target + 2 * frame > RING_FRAMES * frame:
            raise ValueError(f"max target exceeds the {RING_FRAMES}-frame ring")
        self.frame = frame
        self.ring_len = RING_FRAMES * frame
        self.initial_target = target
        self.min_target = min_target
        self.max_target = max_target
        self.step = max(1, frame // 4)

        self.read = 0
        self.tick_count = 0
        self.ring: Int16Array = np.zeros((0, self.ring_len), dtype=np.int16)
        # write positions live in a list between ticks (cheap to bump one by
        # one) and in an array during a tick (cheap to work on all at once)
        self._writes: list[int] = []
        self._pushed: list[int] = []
        self._lines: list[Int16Array] = []
        self._byte_lines: list[memoryview] = []
        self._limit = self.ring_len - frame
        self.write: Int64Array = np.zeros(0, dtype=np.int64)
        self.target: Int64Array = np.zeros(0, dtype=np.int64)
        self.window_min: Int64Array = np.zeros(0, dtype=np.int64)
        self.last_underrun: Int64Array = np.zeros(0, dtype=np.int64)
        self.active = np.zeros(0, dtype=bool)
        self.had_audio = np.zeros(0, dtype=bool)
        self.stats: list[BufferStats] = []
        self._grow(capacity)

    # rows

    def _grow(self, capacity: int) -> None:
        old = self.active.shape[0]

        def grown(array: npt.NDArray[np.generic], fill: int) -> npt.NDArray[np.generic]:
            shape = (capacity,) + array.shape[1:]
            new = np.full(shape, fill, dtype=array.dtype)
            new[:old] = array
            return new

        self.ring = grown(self.ring, 0)  # type: ignore[assignment]
        self._writes.extend([self.read] * (capacity - old))
        self._pushed.extend([0] * (capacity - old))
        self._lines = list(self.ring)
        self._byte_lines = [memoryview(line).cast("B") for line in self.ring]
        self.target = grown(self.target, 0)  # type: ignore[assignment]
        self.window_min = grown(self.window_min, 0)  # type: ignore[assignment]
        self.last_underrun = grown(self.last_underrun, 0)  # type: ignore[assignment]
        self.active = grown(self.active, 0)
        self.had_audio = grown(self.had_audio, 0)
        self.stats.extend(BufferStats() for _ in range(capacity - old))

    @property
    def capacity(self) -> int:
        return int(self.active.shape[0])

    def add_row(self) -> int:
        """Claims a free row for a new leg and returns its index."""
        free = np.flatnonzero(~self.active)
        if free.size == 0:
            row = self.capacity
            self._grow(max(8, 2 * self.capacity))
        else:
            row = int(free[0])
        self.active[row] = True
        self.target[row] = self.initial_target
        self.last_underrun[row] = self.tick_count
        self.stats[row] = BufferStats()
        self._pushed[row] = 0
        self._prime(row)
        return row

    def remove_row(self, row: int) -> None:
        self.active[row] = False
        self.ring[row] = 0
        self._writes[row] = self.read

    def row_stats(self, row: int) -> BufferStats:
        """The counters of one row (frames pushed counted on the hot path)."""
        stats = self.stats[row]
        stats.frames_pushed = self._pushed[row]
        return stats

    def depth(self, row: int) -> int:
        """Samples buffered for ``row`` and not yet taken by the mixer."""
        return self._writes[row] - self.read

    # writing

    def _zero(self, row: int, start: int, count: int) -> None:
        pos = start % self.ring_len
        first = min(count, self.ring_len - pos)
        self.ring[row, pos : pos + first] = 0
        if count > first:
            self.ring[row, : count - first] = 0

    def _prime(self, row: int) -> None:
        # a target's worth of silence ahead of whatever comes next
        target = int(self.target[row])
        self._zero(row, self.read, target)
        self._writes[row] = self.read + target

    def push(self, row: int, samples: Int16Array) -> None:
        """Appends a leg's samples (int16, its own rate) to its buffer."""
        self.push_bytes(row, np.ascontiguousarray(samples).data.cast("B"))

    def push_bytes(self, row: int, data: bytes | memoryview) -> None:
        """Appends samples given as bytes in the machine's byte order.

        The hot path (every leg, every frame): plain ints and a byte view of
        the row, no numpy scalars, no array made.
        """
        count = len(data) >> 1
        self._pushed[row] += 1

        writes = self._writes
        write = writes[row]
        if write <= self.read:
            # idle until now: start again behind a target of silence
            self._prime(row)
            write = writes[row]
        if write + count - self.read > self._limit:
            stats = self.stats[row]
            stats.overflows += 1
            stats.samples_dropped += count
            return

        line = self._byte_lines[row]
        pos = write % self.ring_len
        end = pos + count
        if end <= self.ring_len:
            line[2 * pos : 2 * end] = data
        else:
            first = 2 * (self.ring_len - pos)
            line[2 * pos :] = data[:first]
            line[: 2 * count - first] = data[first:]
        writes[row] = write + count

    # reading

    def take(self) -> Int16Array:
        """Returns this tick's frame of every row (capacity x frame) as a view.

        Rows without a full frame are concealed with silence.  The view is
        valid until the next :meth:`push` or :meth:`take`.
        """
        frame = self.frame
        pos = self.read % self.ring_len
        frames = self.ring[:, pos : pos + frame]
        self.write = np.array(self._writes, dtype=np.int64)
        depth = self.write - self.read

        # idle rows: nothing buffered; if the row had audio last tick, its
        # stream broke (a late packet), which counts as an underrun
        idle = depth <= 0
        if idle.any():
            frames[idle] = 0
            self.write[idle] = self.read + frame
            for row in np.flatnonzero(idle & self.had_audio & self.active).tolist():
                self._underrun(row)

        # partial frames: the rest concealed, the row primed again
        short = (depth > 0) & (depth < frame) & self.active
        if short.any():
            for row in np.flatnonzero(short).tolist():
                frames[row, depth[row] :] = 0
                self._underrun(row)
                target = int(self.target[row])
                self._zero(row, self.read + frame, target)
                self.write[row] = self.read + frame + target
        self.had_audio = depth > 0

        self.read += frame
        self.tick_count += 1
        self._track_drift()
        self._writes = self.write.tolist()
        return frames

    def _underrun(self, row: int) -> None:
        self.stats[row].underruns += 1
        self.last_underrun[row] = self.tick_count
        self.target[row] = min(self.target[row] + self.step, self.max_target)

    def _track_drift(self) -> None:
        slack = self.write - self.read

        # nearly dry between two checks (a slow clock far off, or a late
        # packet): stretch now rather than conceal a gap at the next tick
        dry = self.active & (slack > 0) & (slack < self.step)
        if dry.any():
            for row in np.flatnonzero(dry):
                self._repeat(int(row), int(self.target[row] - slack[row]))
            slack = self.write - self.read
        if self.tick_count % DRIFT_WINDOW_TICKS == 1:
            self.window_min[:] = slack
        else:
            np.minimum(self.window_min, slack, out=self.window_min)
        if self.tick_count % DRIFT_WINDOW_TICKS:
            return

        live = self.active & (self.write > self.read)
        error = self.window_min - self.target
        limit = self.frame  # corrects up to 4 % of clock error at 20 ms frames

        # fast clock: drop the newest samples, a frame a window; a backlog of
        # more than four frames (a burst after a stall) goes at once
        fast = live & (error > self.step)
        if fast.any():
            excess = error[fast]
            drop = np.where(excess > 4 * self.frame, excess, np.minimum(excess, limit))
            self.write[fast] -= drop
            for row, count in zip(np.flatnonzero(fast), drop, strict=True):
                self.stats[row].samples_dropped += int(count)

        # slow clock: repeat the newest samples before the leg runs dry
        slow = live & (error < -self.step)
        for row in np.flatnonzero(slow):
            self._repeat(int(row), int(min(-error[row], limit)))

        # a quiet spell lets the target shrink back
        calm = self.active & (self.tick_count - self.last_underrun > SHRINK_AFTER_TICKS)
        if calm.any():
            self.target[calm] = np.maximum(
                self.target[calm] - self.step, self.min_target
            )
            self.last_underrun[calm] = self.tick_count

    def _repeat(self, row: int, count: int) -> None:
        # the samples before the write position are still in the ring, even
        # those already played, so up to a frame of them can be repeated
        write = int(self.write[row])
        count = min(count, self.frame)
        if count <= 0:
            return
        src = np.arange(write - count, write) % self.ring_len
        dst = (src + count) % self.ring_len
        self.ring[row, dst] = self.ring[row, src]
        self.write[row] = write + count
        self.stats[row].samples_repeated += count
