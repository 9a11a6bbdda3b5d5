"""Speech levels, the set of legs that are mixed, and the active speaker."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Level (dBFS) under which a leg counts as silent.
SPEECH_THRESHOLD_DB = -45.0
#: Floor reported for digital silence.
SILENCE_DB = -100.0
#: Per-tick decay of the level meter (fast attack, slow release).
RELEASE_DB_PER_TICK = 1.5


def frame_levels(frames: npt.NDArray[np.int16], points: int = 160) -> FloatArray:
    """RMS level in dBFS of every row of ``frames``.

    Only ``points`` evenly spaced samples of each row are read: enough for a
    level meter and a fixed cost whatever the rate.
    """
    stride = max(1, frames.shape[1] // points)
    sample = frames[:, ::stride].astype(np.float32)
    power = np.einsum("ij,ij->i", sample, sample) / (sample.shape[1] * 32768.0**2)
    with np.errstate(divide="ignore"):
        levels: FloatArray = 10.0 * np.log10(power.astype(np.float64))
    return np.maximum(levels, SILENCE_DB)


class SpeakerTracker:
    """Smoothed levels, the active speaker, and which legs to mix.

    Works on flat arrays indexed by a leg's slot.  Times are in seconds and
    passed in by the caller.
    """

    def __init__(
        self,
        max_mixed: int,
        hangover: float = 0.6,
        switch_margin_db: float = 6.0,
        switch_after: float = 0.4,
    ) -> None:
        if max_mixed < 1:
            raise ValueError("max_mixed must be at least 1")
        self.max_mixed = max_mixed
        self.hangover = hangover
        self.switch_margin_db = switch_margin_db
        self.switch_after = switch_after
        self.active_speaker: int | None = None
        self._challenger: int | None = None
        self._challenger_since = 0.0

    def smooth(self, previous: FloatArray, current: FloatArray) -> FloatArray:
        """Level meter ballistics: rises at once, falls slowly."""
        return np.maximum(current, previous - RELEASE_DB_PER_TICK)

    def select(
        self,
        levels: FloatArray,
        last_loud: FloatArray,
        eligible: BoolArray,
        previously: BoolArray,
        now: float,
    ) -> BoolArray:
        """Chooses the slots whose audio enters the mix this tick.

        While no more than ``max_mixed`` legs are eligible, all of them are
        mixed (plain N-1 mixing).  Beyond that, legs that spoke within the
        hangover compete: those already mixed keep their place, the loudest
        newcomers fill what is left, and silent legs are not mixed at all.
        """
        if np.count_nonzero(eligible) <= self.max_mixed:
            return eligible.copy()
        speaking = eligible & (now - last_loud <= self.hangover)
        if np.count_nonzero(speaking) <= self.max_mixed:
            return speaking
        score = np.where(speaking, levels + previously * 1000.0, -np.inf)
        top = np.argpartition(score, -self.max_mixed)[-self.max_mixed :]
        chosen = np.zeros_like(eligible)
        chosen[top] = True
        return chosen & speaking

    def update_speaker(
        self, levels: FloatArray, last_loud: FloatArray, eligible: BoolArray, now: float
    ) -> int | None:
        """Updates and returns the active speaker's slot (None if nobody speaks).

        The speaker keeps the floor while they spoke within the hangover; a
        louder voice takes it only after being louder by the margin for
        ``switch_after`` seconds, so the choice does not flicker.
        """
        current = self.active_speaker
        if current is not None and not eligible[current]:
            current = None
        loud = eligible & (levels > SPEECH_THRESHOLD_DB)
        candidate = (
            int(np.argmax(np.where(loud, levels, -np.inf))) if loud.any() else None
        )

        if current is None or now - last_loud[current] > self.hangover:
            current = candidate
            self._challenger = None
        elif candidate is not None and candidate != current:
            if levels[candidate] > levels[current] + self.switch_margin_db:
                if self._challenger != candidate:
                    self._challenger = candidate
                    self._challenger_since = now
                elif now - self._challenger_since >= self.switch_after:
                    current = candidate
                    self._challenger = None
            else:
                self._challenger = None
        else:
            self._challenger = None

        self.active_speaker = current
        return current
