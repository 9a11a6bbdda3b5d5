"""Sans-IO media core: audio mixing, buffering, resampling, levels, video tiles.

Nothing here imports Twisted, pjsua2 or aiortc: numpy arrays and a time go
in, numpy arrays come out.
"""

from .audio import SUPPORTED_RATES, AudioMixer, UnknownLegError
from .jitter import BufferStats
from .resample import Resampler

__all__ = [
    "SUPPORTED_RATES",
    "AudioMixer",
    "BufferStats",
    "Resampler",
    "UnknownLegError",
]
