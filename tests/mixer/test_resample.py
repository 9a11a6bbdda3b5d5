"""Resampling keeps tones at their frequency, frame after frame."""

from __future__ import annotations

import numpy as np
import pytest

from mixer import Resampler
from tests.mixer.signals import amplitude_at, strongest_frequency


def stream(resampler: Resampler, signal: np.ndarray, channels: int = 1) -> np.ndarray:
    state = resampler.new_state(channels)
    frames = signal.astype(np.float32).reshape(-1, resampler.frame_in)
    out = [resampler.process(np.tile(frame, (channels, 1)), state) for frame in frames]
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize(
    "rate_in, rate_out, freq",
    [
        (8000, 48000, 1000.0),
        (16000, 48000, 3100.0),
        (48000, 8000, 440.0),
        (48000, 16000, 5000.0),
        (32000, 48000, 2500.0),
        (48000, 24000, 7000.0),
    ],
)
def test_tone_keeps_its_frequency(rate_in, rate_out, freq):
    resampler = Resampler(rate_in, rate_out, rate_in // 50)
    t = np.arange(rate_in) / rate_in  # one second
    out = stream(resampler, 0.5 * np.sin(2 * np.pi * freq * t))[0]
    steady = out[rate_out // 10 :]

    assert resampler.frame_out == rate_out // 50
    assert out.size == rate_out
    assert strongest_frequency(steady, rate_out) == pytest.approx(freq, abs=2)
    assert amplitude_at(steady, rate_out, freq) == pytest.approx(0.5, rel=0.01)
    # everything else (images, aliases, frame seams) at least 60 dB down
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    freqs = np.fft.rfftfreq(steady.size, 1 / rate_out)
    away = np.abs(freqs - freq) > 20
    assert spectrum[away].max() < spectrum.max() * 1e-3


def test_tone_above_the_lower_nyquist_is_removed():
    # 6 kHz cannot exist at 8 kHz: it must vanish, not alias to 2 kHz
    resampler = Resampler(48000, 8000, 960)
    t = np.arange(48000) / 48000
    out = stream(resampler, 0.5 * np.sin(2 * np.pi * 6000 * t))[0][800:]
    assert np.abs(out).max() < 0.5e-3


def test_channels_are_independent_and_identical_to_one_at_a_time():
    resampler = Resampler(16000, 48000, 320)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 3200)).astype(np.float32)
    together_state = resampler.new_state(2)
    alone_state = resampler.new_state(1)
    for frame in range(10):
        part = slice(frame * 320, (frame + 1) * 320)
        both = resampler.process(np.stack([a[part], b[part]]), together_state)
        alone = resampler.process(b[part][None, :], alone_state)
        np.testing.assert_allclose(both[1], alone[0], rtol=1e-5, atol=1e-6)


def test_bad_frame_sizes_are_refused():
    with pytest.raises(ValueError, match="not a whole number of samples"):
        Resampler(44100, 48000, 441 * 2 + 1)
    resampler = Resampler(8000, 48000, 160)
    with pytest.raises(ValueError, match="expected frames of 160 samples, got 100"):
        resampler.process(np.zeros((1, 100), np.float32), resampler.new_state(1))
