"""Streaming polyphase resampling of fixed-size frames, many channels at once.

The mixer converts every leg between its own rate (8, 16 or 48 kHz, or any
rate whose ratio to the mixing rate is rational) and the mixing rate.  One
:class:`Resampler` serves every channel that converts between the same two
rates: the caller keeps one row of filter history per channel and passes the
rows it wants converted in this frame, so the work is one vectorised gather and
one multiply-accumulate for all of them.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided
from scipy.signal import firwin

Float32Array = npt.NDArray[np.float32]

#: Taps of the prototype low-pass filter per phase of the slower side.  24 taps
#: with a Kaiser window (beta 8) give about 70 dB of stopband rejection, with
#: the passband edge at 90 % of the lower Nyquist frequency.
TAPS_PER_PHASE = 24
PASSBAND = 0.90
KAISER_BETA = 8.0


class Resampler:
    """Converts frames of ``frame_in`` samples at ``rate_in`` to ``rate_out``.

    Each output frame has exactly ``frame_in * rate_out / rate_in`` samples,
    so a stream of frames stays frame-aligned on both sides.  The filter has
    linear phase; its delay in input samples is :attr:`delay_in`.
    """

    def __init__(self, rate_in: int, rate_out: int, frame_in: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(
                f"sample rates must be positive, got {rate_in}, {rate_out}"
            )
        if (frame_in * rate_out) % rate_in:
            raise ValueError(
                f"a frame of {frame_in} samples at {rate_in} Hz is not a whole "
                f"number of samples at {rate_out} Hz"
            )
        self.rate_in = rate_in
        self.rate_out = rate_out
        self.frame_in = frame_in
        self.frame_out = frame_in * rate_out // rate_in

        common = gcd(rate_in, rate_out)
        up = rate_out // common
        down = rate_in // common

        # prototype low-pass at the up-sampled rate, cut below the lower Nyquist
        fs = rate_in * up
        cutoff = PASSBAND * min(rate_in, rate_out) / 2
        numtaps = TAPS_PER_PHASE * max(up, down)
        numtaps += -numtaps % up
        proto = firwin(numtaps, cutoff, fs=fs, window=("kaiser", KAISER_BETA)) * up
        phases = proto.reshape(-1, up).T  # phases[p, j] = proto[p + j * up]
        self.history = phases.shape[1] - 1
        self.delay_in = (numtaps - 1) / 2 / up

        # integer ratios run as one matrix product over sliding windows; the
        # general rational case gathers each output sample's taps
        self._up, self._down = up, down
        taps = phases.shape[1]
        self._phases_rev: Float32Array = np.ascontiguousarray(
            phases[:, ::-1].T, dtype=np.float32
        )  # taps x up, oldest sample first
        self._proto_rev: Float32Array = np.ascontiguousarray(
            proto[::-1], dtype=np.float32
        )

        # for output sample n: input position n*down/up, filter phase and taps
        t = np.arange(self.frame_out) * down
        base = t // up
        self._coef: Float32Array = phases[t % up].astype(np.float32)
        offsets = np.arange(taps)
        self._index = base[:, None] - offsets[None, :] + self.history

    def new_state(self, channels: int) -> Float32Array:
        """Zeroed filter history for ``channels`` channels."""
        return np.zeros((channels, self.history), dtype=np.float32)

    def process(self, frames: Float32Array, state: Float32Array) -> Float32Array:
        """Resample ``frames`` (channels x frame_in), updating ``state`` in place.

        ``state`` holds the last input samples of each channel; pass the same
        rows again with the next frame.
        """
        if frames.shape[-1] != self.frame_in:
            raise ValueError(
                f"expected frames of {self.frame_in} samples, got {frames.shape[-1]}"
            )
        if self.history == 0:
            extended = frames
        else:
            extended = np.concatenate((state, frames), axis=1)
            state[...] = extended[:, -self.history :]
        channels = frames.shape[0]
        extended = np.ascontiguousarray(extended)
        row, item = extended.strides
        if self._down == 1:
            # output block m holds up samples, all from the same input window
            windows = as_strided(
                extended,
                shape=(channels, self.frame_in, self.history + 1),
                strides=(row, item, item),
                writeable=False,
            )
            blocks = windows @ self._phases_rev  # channels x frame_in x up
            return blocks.reshape(channels, self.frame_out)
        if self._up == 1:
            # one window of the whole filter every ``down`` input samples
            windows = as_strided(
                extended,
                shape=(channels, self.frame_out, self._proto_rev.shape[0]),
                strides=(row, self._down * item, item),
                writeable=False,
            )
            out: Float32Array = windows @ self._proto_rev
            return out
        gathered = extended[:, self._index]  # channels x frame_out x taps
        mixed: Float32Array = (gathered * self._coef).sum(axis=2)
        return mixed
