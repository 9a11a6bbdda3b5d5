"""Soft clipping of mixed audio and conversion back to int16."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Below this magnitude (of full scale) samples pass unchanged.
KNEE = 0.75
_HEADROOM = 1.0 - KNEE
#: int16 full scale: samples are divided by it on the way in and multiplied
#: on the way out, so audio under the knee round-trips exactly.
FULL_SCALE = 32768.0


def soft_clip_to_int16(mix: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Maps float samples (full scale 1.0) to int16 without ever wrapping.

    Samples under the knee pass unchanged; above it they are bent smoothly
    (tanh) towards full scale, which they approach but never reach, so a sum
    of loud legs saturates gently instead of wrapping or clipping hard.
    """
    scaled = mix * np.float32(FULL_SCALE)
    magnitude = np.abs(scaled)
    knee = KNEE * FULL_SCALE
    headroom = _HEADROOM * FULL_SCALE
    over = magnitude > knee
    if over.any():
        bent = knee + headroom * np.tanh((magnitude[over] - knee) / headroom)
        scaled[over] = np.copysign(bent, scaled[over])
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32767.0, 32767.0, out=scaled)
    return scaled.astype(np.int16)
