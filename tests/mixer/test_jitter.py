"""Input buffers: bounded delay under clock drift, concealment under jitter."""

from __future__ import annotations

import numpy as np
import pytest

from mixer import AudioMixer
from tests.mixer.signals import amplitude_at, tone

RATE = 16000
FRAME = 320


def drifting_leg(mixer: AudioMixer, ratio: float, seconds: int):
    """Feeds a leg whose clock runs at ``ratio`` of ours; returns depths and output."""
    mixer.add_leg("drift", RATE)
    mixer.add_leg("ear", RATE)
    sent = 0.0
    position = 0
    depths, heard = [], []
    for tick in range(seconds * 50):
        sent += FRAME * ratio
        count = int(sent) - position
        mixer.push("drift", tone(440, RATE, position, count, 5000), tick * 0.02)
        position += count
        heard.append(mixer.tick(tick * 0.02)["ear"].copy())
        depths.append(mixer.buffered_ms("drift"))
    return np.array(depths), np.concatenate(heard)


@pytest.mark.parametrize("ratio", [1.005, 0.995, 1.02, 0.98])
def test_drift_keeps_delay_bounded_and_never_starves(ratio):
    mixer = AudioMixer()
    depths, heard = drifting_leg(mixer, ratio, 120)
    stats = mixer.buffer_stats("drift")

    # after two minutes the buffer is where it was after ten seconds
    assert depths[-500:].max() <= depths[:500].max() + 10
    assert depths.max() < 70
    assert depths[50:].min() > 0
    assert stats.underruns == 0
    assert stats.overflows == 0
    if ratio > 1:
        assert stats.samples_dropped > 0.8 * (ratio - 1) * RATE * 120
    else:
        assert stats.samples_repeated > 0.8 * (1 - ratio) * RATE * 120
    # the tone comes through at its pitch and level, half a second at a time
    # (at 2 % the frequent cuts and repeats smear the spectrum: not checked)
    if abs(ratio - 1) > 0.01:
        return
    pieces = heard[RATE:].reshape(-1, RATE // 2)
    levels = [amplitude_at(piece, RATE, 440) for piece in pieces]
    assert np.median(levels) == pytest.approx(5000, rel=0.05)


def test_jitter_raises_the_target_and_conceals_what_is_missing():
    mixer = AudioMixer()
    mixer.add_leg("jittery", RATE)
    mixer.add_leg("ear", RATE)
    rng = np.random.default_rng(5)
    position, held = 0, []
    heard = []
    for tick in range(1500):
        held.append(tone(1000, RATE, position, FRAME, 5000))
        position += FRAME
        # frames bunch up and arrive together up to 60 ms late
        if len(held) == 3 or rng.random() < 0.35:
            for frame in held:
                mixer.push("jittery", frame, tick * 0.02)
            held = []
        heard.append(mixer.tick(tick * 0.02)["ear"].copy())
    stats = mixer.buffer_stats("jittery")

    assert stats.underruns > 0  # early on, before the buffer deepened
    late = np.concatenate(heard[-500:])
    assert amplitude_at(late, RATE, 1000) == pytest.approx(5000, rel=0.05)
    # the deeper buffer stops the underruns: few or none in the last ten seconds
    underruns_before = stats.underruns
    for tick in range(1500, 2000):
        held.append(tone(1000, RATE, position, FRAME, 5000))
        position += FRAME
        if len(held) == 3 or rng.random() < 0.35:
            for frame in held:
                mixer.push("jittery", frame, tick * 0.02)
            held = []
        mixer.tick(tick * 0.02)
    assert stats.underruns - underruns_before <= 2
    assert mixer.buffered_ms("jittery") <= 120 + 80


def test_a_burst_beyond_the_ring_is_dropped_and_counted():
    mixer = AudioMixer()
    mixer.add_leg("flood", RATE)
    for _ in range(40):
        mixer.push("flood", np.ones(FRAME, np.int16))
    stats = mixer.buffer_stats("flood")
    assert stats.overflows > 0
    assert mixer.buffered_ms("flood") <= 16 * 20


def test_a_burst_after_a_stall_does_not_leave_a_standing_delay():
    mixer = AudioMixer()
    mixer.add_leg("bursty", RATE)
    position = 0
    for tick in range(100):
        frames = 1
        if tick == 50:
            frames = 12  # 240 ms of audio arrives at once after a stall
        for _ in range(frames):
            mixer.push("bursty", tone(300, RATE, position, FRAME, 3000), tick * 0.02)
            position += FRAME
        mixer.tick(tick * 0.02)
        if tick == 51:
            assert mixer.buffered_ms("bursty") > 200
    # within a second the backlog is trimmed back to the target slack
    assert mixer.buffered_ms("bursty") <= 40
