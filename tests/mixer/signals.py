"""Signals and spectral checks shared by the mixer tests."""

from __future__ import annotations

import numpy as np


def tone(
    freq: float, rate: int, start: int, count: int, amplitude: float
) -> np.ndarray:
    """int16 samples ``start`` to ``start + count`` of a continuous sine."""
    t = np.arange(start, start + count) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def amplitude_at(signal: np.ndarray, rate: int, freq: float) -> float:
    """Amplitude of the component at ``freq`` (Hann window, peak search +-2 bins)."""
    x = signal.astype(np.float64)
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window)) * 2 / window.sum()
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    near = np.abs(freqs - freq) <= 2 * rate / x.size
    return float(spectrum[near].max())


def strongest_frequency(signal: np.ndarray, rate: int) -> float:
    x = signal.astype(np.float64) * np.hanning(signal.size)
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(signal.size, 1 / rate)[np.argmax(spectrum)])
