"""The conference audio mixer: legs in, N-1 mixes out, one tick per frame.

Sans-IO: frames are numpy int16 arrays, time is passed in, nothing here
touches a socket, a thread or a clock.

Each tick (one frame, 20 ms by default):

1. every leg's input buffer yields one frame (silence where a leg has none);
2. levels are measured on every leg, the active speaker is updated and the
   legs to mix are chosen (all of them up to ``max_mixed``; beyond that the
   ones speaking, so a room of hundreds is not a room of hundreds of open
   microphones);
3. the chosen legs are scaled by their gain and resampled to the mixing rate
   and summed;
4. a leg that is mixed gets the sum less its own contribution (N-1); every
   other leg of a rate shares one copy of the full sum;
5. the mixes are resampled to each leg's rate and soft-clipped to int16.

The cost of steps 3 to 5 grows with the number of mixed legs, not with the
size of the room; steps 1 and 2 are vectorised over all legs of a rate.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .jitter import BufferStats, RateGroupBuffer
from .limiter import FULL_SCALE, soft_clip_to_int16
from .resample import Resampler
from .speakers import SILENCE_DB, SPEECH_THRESHOLD_DB, SpeakerTracker, frame_levels

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]

#: Rates a leg may use.  Any rate whose frame is a whole number of samples
#: works; these are the ones SIP and WebRTC legs bring.
SUPPORTED_RATES = (8000, 16000, 24000, 32000, 48000)
MAX_LEGS = 2000
_INT16 = np.dtype(np.int16)
_BIG_ENDIAN = sys.byteorder == "big"


class UnknownLegError(KeyError):
    """A leg id that is not in this mixer."""


@dataclass
class _Leg:
    leg_id: str
    rate: int
    row: int
    slot: int
    buffer: RateGroupBuffer
    muted: bool = False
    gain: float = 1.0


@dataclass
class _RateGroup:
    rate: int
    buffer: RateGroupBuffer
    up: Resampler | None
    down: Resampler | None
    slots: npt.NDArray[np.int64]  # slot of each row, -1 for a free row
    leg_ids: list[str | None] = field(default_factory=list)
    hist_in: Float32Array | None = None
    hist_out: Float32Array | None = None
    hist_shared: Float32Array | None = None
    was_mixed: npt.NDArray[np.bool_] | None = None


class AudioMixer:
    """Mixes any number of legs at any supported rates.

    ``jitter_ms`` is the slack each input buffer starts with, adapting between
    ``min_jitter_ms`` and ``max_jitter_ms``.  ``max_mixed`` caps how many legs
    are summed in one tick.
    """

    def __init__(
        self,
        rate: int = 48000,
        frame_ms: int = 20,
        max_mixed: int = 16,
        jitter_ms: int = 20,
        min_jitter_ms: int = 10,
        max_jitter_ms: int = 120,
    ) -> None:
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"mixing rate {rate} Hz is not one of {SUPPORTED_RATES}")
        if frame_ms not in (10, 20, 30, 40):
            raise ValueError(f"frame length {frame_ms} ms is not 10, 20, 30 or 40")
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame = rate * frame_ms // 1000
        self.jitter_ms = (min_jitter_ms, jitter_ms, max_jitter_ms)
        self._tracker = SpeakerTracker(max_mixed)
        self._legs: dict[str, _Leg] = {}
        self._groups: dict[int, _RateGroup] = {}

        # per-slot state, slots reused as legs come and go
        self._slot_leg: list[str | None] = []
        self._level = np.zeros(0)
        self._last_loud = np.zeros(0)
        self._eligible = np.zeros(0, dtype=bool)
        self._mixed = np.zeros(0, dtype=bool)
        self._gain = np.zeros(0, dtype=np.float32)
        self.ticks = 0

    # legs

    def add_leg(self, leg_id: str, rate: int) -> None:
        """Adds a leg whose frames come and go at ``rate`` Hz."""
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} is already in the mixer")
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"leg rate {rate} Hz is not one of {SUPPORTED_RATES}")
        if len(self._legs) >= MAX_LEGS:
            raise ValueError(f"the mixer holds at most {MAX_LEGS} legs")

        group = self._groups.get(rate) or self._new_group(rate)
        row = group.buffer.add_row()
        self._fit_group(group)
        slot = self._claim_slot(leg_id)
        group.slots[row] = slot
        group.leg_ids[row] = leg_id
        self._eligible[slot] = True
        self._gain[slot] = 1.0
        self._level[slot] = SILENCE_DB
        self._last_loud[slot] = -np.inf
        self._legs[leg_id] = _Leg(leg_id, rate, row, slot, group.buffer)

    def remove_leg(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        group = self._groups[leg.rate]
        group.buffer.remove_row(leg.row)
        group.slots[leg.row] = -1
        group.leg_ids[leg.row] = None
        self._eligible[leg.slot] = False
        self._mixed[leg.slot] = False
        self._slot_leg[leg.slot] = None
        if self._tracker.active_speaker == leg.slot:
            self._tracker.active_speaker = None
        del self._legs[leg_id]

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._legs

    def __len__(self) -> int:
        return len(self._legs)

    def leg_ids(self) -> list[str]:
        return list(self._legs)

    def set_muted(self, leg_id: str, muted: bool) -> None:
        """A muted leg is heard by nobody; it still hears the others."""
        leg = self._leg(leg_id)
        leg.muted = muted
        self._eligible[leg.slot] = not muted

    def is_muted(self, leg_id: str) -> bool:
        return self._leg(leg_id).muted

    def set_gain(self, leg_id: str, gain: float) -> None:
        """Scales what a leg sends (1.0 unchanged, 0 to 4)."""
        if not 0.0 <= gain <= 4.0:
            raise ValueError(f"gain {gain} is outside 0 to 4")
        leg = self._leg(leg_id)
        leg.gain = gain
        self._gain[leg.slot] = gain

    def level(self, leg_id: str) -> float:
        """The leg's smoothed speech level in dBFS (-100 for silence)."""
        return float(self._level[self._leg(leg_id).slot])

    def is_speaking(self, leg_id: str) -> bool:
        return self.level(leg_id) > SPEECH_THRESHOLD_DB

    @property
    def active_speaker(self) -> str | None:
        """The leg holding the floor, or None while nobody speaks."""
        slot = self._tracker.active_speaker
        return None if slot is None else self._slot_leg[slot]

    def buffer_stats(self, leg_id: str) -> BufferStats:
        leg = self._leg(leg_id)
        return self._groups[leg.rate].buffer.row_stats(leg.row)

    def buffered_ms(self, leg_id: str) -> float:
        leg = self._leg(leg_id)
        depth = self._groups[leg.rate].buffer.depth(leg.row)
        return 1000.0 * depth / leg.rate

    # media

    def push(self, leg_id: str, pcm: Int16Array, now: float | None = None) -> None:
        """Queues a leg's audio: mono int16 at the leg's rate, any length."""
        leg = self._legs.get(leg_id)
        if leg is None:
            raise UnknownLegError(leg_id)
        if (pcm.dtype is not _INT16 and pcm.dtype != _INT16) or pcm.ndim != 1:
            raise ValueError(f"audio must be 1-D int16, got {pcm.ndim}-D {pcm.dtype}")
        leg.buffer.push(leg.row, pcm)

    def push_bytes(self, leg_id: str, data: bytes, now: float | None = None) -> None:
        """Queues wire audio: s16le mono bytes at the leg's rate, any length.

        The cheap path for legs whose frames arrive as bytes (the SIP
        workers' pipes): no array is made on the way in.
        """
        leg = self._legs.get(leg_id)
        if leg is None:
            raise UnknownLegError(leg_id)
        if len(data) & 1:
            raise ValueError(
                f"audio must be whole 16-bit samples, got {len(data)} bytes"
            )
        if _BIG_ENDIAN:
            leg.buffer.push(leg.row, np.frombuffer(data, dtype="<i2").astype(np.int16))
            return
        leg.buffer.push_bytes(leg.row, data)

    def tick(self, now: float) -> dict[str, Int16Array]:
        """Mixes one frame; returns every leg's output at its own rate.

        Legs that are not mixed share one array: treat the arrays as read-only.
        """
        self.ticks += 1
        groups = list(self._groups.values())
        if not self._legs:
            for group in groups:
                group.buffer.take()
            return {}

        # 1. one frame from every leg, and its level
        frames: dict[int, Int16Array] = {}
        for group in groups:
            taken = group.buffer.take()
            frames[group.rate] = taken
            rows = np.flatnonzero(group.slots >= 0)
            if rows.size:
                slots = group.slots[rows]
                current = frame_levels(taken)[rows]  # strided: no frame copy
                self._level[slots] = self._tracker.smooth(self._level[slots], current)
                loud = current > SPEECH_THRESHOLD_DB
                self._last_loud[slots[loud]] = now

        # 2. who is mixed, who has the floor
        previously = self._mixed
        self._mixed = self._tracker.select(
            self._level, self._last_loud, self._eligible, previously, now
        )
        self._tracker.update_speaker(self._level, self._last_loud, self._eligible, now)

        # 3. contributions at the mixing rate
        contributions: list[Float32Array] = []
        mixed_rows: dict[int, npt.NDArray[np.intp]] = {}
        offsets: dict[int, int] = {}
        count = 0
        for group in groups:
            valid = group.slots >= 0
            chosen = np.zeros_like(valid)
            chosen[valid] = self._mixed[group.slots[valid]]
            rows = np.flatnonzero(chosen)
            mixed_rows[group.rate] = rows
            offsets[group.rate] = count
            if not rows.size:
                continue
            count += rows.size
            scale = self._gain[group.slots[rows]] / np.float32(FULL_SCALE)
            signal = frames[group.rate][rows].astype(np.float32)
            signal *= scale[:, None]
            if group.up is not None:
                signal = self._resample_in(group, rows, signal)
            contributions.append(signal)

        if contributions:
            stacked = (
                np.concatenate(contributions)
                if len(contributions) > 1
                else contributions[0]
            )
            total = stacked.sum(axis=0)
        else:
            stacked = np.zeros((0, self.frame), dtype=np.float32)
            total = np.zeros(self.frame, dtype=np.float32)

        # 4 and 5. N-1 mixes, back to each leg's rate
        out: dict[str, Int16Array] = {}
        for group in groups:
            rows = mixed_rows[group.rate]
            first = offsets[group.rate]
            mixes = np.empty((rows.size + 1, self.frame), dtype=np.float32)
            mixes[0] = total
            np.subtract(total, stacked[first : first + rows.size], out=mixes[1:])
            if group.down is not None:
                mixes = self._resample_out(group, rows, mixes)
            pcm = soft_clip_to_int16(mixes)

            out.update(dict.fromkeys(self._group_leg_ids(group), pcm[0]))
            for index, row in enumerate(rows):
                leg_id = group.leg_ids[row]
                if leg_id is not None:
                    out[leg_id] = pcm[index + 1]
            if group.was_mixed is not None:
                group.was_mixed[:] = False
                group.was_mixed[rows] = True
        return out

    # internals

    def _leg(self, leg_id: str) -> _Leg:
        try:
            return self._legs[leg_id]
        except KeyError:
            raise UnknownLegError(leg_id) from None

    def _new_group(self, rate: int) -> _RateGroup:
        frame = rate * self.frame_ms // 1000
        low, target, high = (rate * ms // 1000 for ms in self.jitter_ms)
        buffer = RateGroupBuffer(frame, target, low, high)
        same = rate == self.rate
        group = _RateGroup(
            rate=rate,
            buffer=buffer,
            up=None if same else Resampler(rate, self.rate, frame),
            down=None if same else Resampler(self.rate, rate, self.frame),
            slots=np.full(0, -1, dtype=np.int64),
        )
        if group.down is not None:
            group.hist_shared = group.down.new_state(1)
        self._groups[rate] = group
        return group

    def _fit_group(self, group: _RateGroup) -> None:
        # keep per-row arrays as large as the buffer's rows
        capacity = group.buffer.capacity
        old = group.slots.shape[0]
        if old == capacity:
            return
        slots = np.full(capacity, -1, dtype=np.int64)
        slots[:old] = group.slots
        group.slots = slots
        group.leg_ids.extend([None] * (capacity - old))
        was_mixed = np.zeros(capacity, dtype=bool)
        if group.was_mixed is not None:
            was_mixed[:old] = group.was_mixed
        group.was_mixed = was_mixed
        if group.up is not None and group.down is not None:
            hist_in = group.up.new_state(capacity)
            hist_out = group.down.new_state(capacity)
            if group.hist_in is not None and group.hist_out is not None:
                hist_in[:old] = group.hist_in
                hist_out[:old] = group.hist_out
            group.hist_in, group.hist_out = hist_in, hist_out

    def _group_leg_ids(self, group: _RateGroup) -> list[str]:
        return [leg_id for leg_id in group.leg_ids if leg_id is not None]

    def _claim_slot(self, leg_id: str) -> int:
        for slot, holder in enumerate(self._slot_leg):
            if holder is None:
                self._slot_leg[slot] = leg_id
                return slot
        slot = len(self._slot_leg)
        self._slot_leg.append(leg_id)
        if slot >= self._level.shape[0]:
            size = max(16, 2 * self._level.shape[0])
            self._level = np.resize(self._level, size)
            self._last_loud = np.resize(self._last_loud, size)
            self._eligible = np.resize(self._eligible, size)
            self._mixed = np.resize(self._mixed, size)
            self._gain = np.resize(self._gain, size)
            self._eligible[slot:] = False
            self._mixed[slot:] = False
        return slot

    def _resample_in(
        self, group: _RateGroup, rows: npt.NDArray[np.intp], signal: Float32Array
    ) -> Float32Array:
        assert group.up is not None and group.hist_in is not None
        assert group.was_mixed is not None
        # a leg joining the mix starts from a clean filter history
        fresh = rows[~group.was_mixed[rows]]
        group.hist_in[fresh] = 0.0
        state = group.hist_in[rows]
        resampled = group.up.process(signal, state)
        group.hist_in[rows] = state
        return resampled

    def _resample_out(
        self, group: _RateGroup, rows: npt.NDArray[np.intp], mixes: Float32Array
    ) -> Float32Array:
        assert group.down is not None and group.hist_out is not None
        assert group.hist_shared is not None and group.was_mixed is not None
        # a leg leaving the shared mix for its own continues from its history
        fresh = rows[~group.was_mixed[rows]]
        group.hist_out[fresh] = group.hist_shared[0]
        state = np.concatenate((group.hist_shared, group.hist_out[rows]))
        resampled = group.down.process(mixes, state)
        group.hist_shared[0] = state[0]
        group.hist_out[rows] = state[1:]
        return resampled
