"""Voice prompts played to phones, made once with espeak-ng and kept as WAV.

The first time a prompt is needed it is spoken by ``espeak-ng`` into
``prompts/`` in the state directory, resampled to the phone legs' rate, and
reused from then on; an operator may replace those files with recordings of
their own (mono, 16-bit, any rate).  Without espeak-ng the prompts are tone
patterns, so the flow still works.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import wave
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

logger = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]

TEXTS = {
    "welcome": "Hello. This is the care bridge conference. "
    "Please enter your PIN, then press the hash key.",
    "retry": "That PIN was not accepted. Please try again, then press the hash key.",
    "accepted": "Thank you. You are joining the conference now.",
    "refused": "The PIN was not accepted. Goodbye.",
}
# tone fallbacks: (frequency Hz, seconds) steps, 0 Hz for a pause
TONES = {
    "welcome": [(660, 0.2), (0, 0.1), (880, 0.2), (0, 0.5)],
    "retry": [(440, 0.3), (0, 0.1), (440, 0.3), (0, 0.5)],
    "accepted": [(880, 0.15), (0, 0.05), (1320, 0.25)],
    "refused": [(440, 0.4), (0, 0.1), (330, 0.6)],
}
ESPEAK_TIMEOUT = 20.0


def _read_wav(path: Path, rate: int) -> Pcm:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: prompts must be 16-bit PCM")
        channels = wav.getnchannels()
        source_rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels)[:, 0]
    if source_rate != rate:
        common = gcd(source_rate, rate)
        resampled = resample_poly(
            data.astype(np.float64), rate // common, source_rate // common
        )
        data = np.clip(np.rint(resampled), -32767, 32767)
    return np.ascontiguousarray(data, dtype=np.int16)


def _tones(name: str, rate: int) -> Pcm:
    parts = []
    for freq, seconds in TONES[name]:
        t = np.arange(int(seconds * rate)) / rate
        parts.append(0.3 * 32767 * np.sin(2 * np.pi * freq * t) if freq else 0 * t)
    return np.concatenate(parts).astype(np.int16)


def _speak(text: str, path: Path) -> bool:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return False
    try:
        subprocess.run(
            [espeak, "-v", "en-gb", "-s", "150", "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=ESPEAK_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("espeak-ng could not make a prompt: %s", exc)
        return False
    return True


class Prompts:
    """The prompts at one rate, made or loaded on first use."""

    def __init__(self, directory: Path, rate: int) -> None:
        self.directory = directory
        self.rate = rate
        self._cache: dict[str, Pcm] = {}

    def get(self, name: str) -> Pcm:
        if name not in TEXTS:
            raise KeyError(name)
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        path = self.directory / f"{name}.wav"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if not _speak(TEXTS[name], path):
                logger.warning("no espeak-ng: prompt %r is a tone pattern", name)
                pcm = _tones(name, self.rate)
                self._cache[name] = pcm
                return pcm
        try:
            pcm = _read_wav(path, self.rate)
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            logger.warning("prompt %s unusable (%s): using a tone pattern", path, exc)
            pcm = _tones(name, self.rate)
        self._cache[name] = pcm
        return pcm
