"""The mixer's promises, checked with real numbers."""

from __future__ import annotations

import numpy as np
import pytest

from mixer import AudioMixer, UnknownLegError
from tests.mixer.signals import amplitude_at, tone

RATE = 48000
FRAME = 960


def run_ticks(mixer, sources, ticks, start=0):
    """Pushes one frame per leg per tick; returns each leg's concatenated output."""
    outputs = {leg: [] for leg in mixer.leg_ids()}
    now = start * 0.02
    for tick in range(start, start + ticks):
        for leg, source in sources.items():
            mixer.push(leg, source(tick), now)
        for leg, frame in mixer.tick(now).items():
            outputs[leg].append(frame.copy())
        now += 0.02
    return {leg: np.concatenate(frames) for leg, frames in outputs.items()}


def test_n_minus_one_sample_by_sample():
    mixer = AudioMixer()
    rng = np.random.default_rng(1)
    legs = [f"leg{i}" for i in range(5)]
    for leg in legs:
        mixer.add_leg(leg, RATE)
    inputs = {
        leg: rng.integers(-4000, 4000, (40, FRAME)).astype(np.int16) for leg in legs
    }

    outputs = []
    for tick in range(40):
        for leg in legs:
            mixer.push(leg, inputs[leg][tick], tick * 0.02)
        outputs.append({k: v.copy() for k, v in mixer.tick(tick * 0.02).items()})

    # the buffer holds one frame of slack: tick t plays what arrived at t-1
    for tick in range(1, 40):
        for leg in legs:
            expected = sum(
                inputs[other][tick - 1].astype(np.int32)
                for other in legs
                if other != leg
            )
            np.testing.assert_array_equal(outputs[tick][leg], expected)


def test_mixed_rates_hear_others_never_themselves():
    mixer = AudioMixer()
    plan = {
        "phone8": (8000, 440.0),
        "phone16": (16000, 1000.0),
        "web48": (48000, 2000.0),
    }
    for leg, (rate, _) in plan.items():
        mixer.add_leg(leg, rate)
    sources = {
        leg: (lambda tick, r=rate, f=freq: tone(f, r, tick * r // 50, r // 50, 8000))
        for leg, (rate, freq) in plan.items()
    }
    outputs = run_ticks(mixer, sources, 150)

    for leg, (rate, own) in plan.items():
        heard = outputs[leg][rate // 2 :]  # past the first half second
        assert amplitude_at(heard, rate, own) < 8000 * 1e-3, leg
        for other, (_, freq) in plan.items():
            if other != leg:
                assert amplitude_at(heard, rate, freq) == pytest.approx(8000, rel=0.02)


def test_limiter_never_wraps_a_loud_room():
    mixer = AudioMixer()
    legs = [f"loud{i}" for i in range(12)]
    for leg in legs:
        mixer.add_leg(leg, RATE)
    square = np.where(np.arange(FRAME) % 96 < 48, 30000, -30000).astype(np.int16)
    outputs = run_ticks(mixer, {leg: (lambda tick: square) for leg in legs}, 10)

    heard = outputs["loud0"][2 * FRAME :]
    expected_sign = np.tile(np.sign(square), 8)
    # eleven legs at 30000 sum to 330000: bent towards full scale, sign kept
    np.testing.assert_array_equal(np.sign(heard), expected_sign)
    assert np.abs(heard.astype(np.int32)).min() > 32000
    assert heard.max() <= 32767 and heard.min() >= -32767


def test_quiet_audio_passes_the_limiter_unchanged():
    mixer = AudioMixer()
    mixer.add_leg("a", RATE)
    mixer.add_leg("b", RATE)
    ramp = np.linspace(-24000, 24000, FRAME).astype(np.int16)
    outputs = run_ticks(mixer, {"a": lambda tick: ramp}, 4)
    np.testing.assert_array_equal(outputs["b"][FRAME : 2 * FRAME], ramp)


def test_mute_and_gain():
    mixer = AudioMixer()
    for leg in ("speaker", "muted", "listener"):
        mixer.add_leg(leg, RATE)
    mixer.set_muted("muted", True)
    mixer.set_gain("speaker", 0.5)
    sources = {
        "speaker": lambda tick: tone(1000, RATE, tick * FRAME, FRAME, 10000),
        "muted": lambda tick: tone(3000, RATE, tick * FRAME, FRAME, 10000),
    }
    heard = run_ticks(mixer, sources, 50)["listener"][RATE // 4 :]
    assert amplitude_at(heard, RATE, 1000) == pytest.approx(5000, rel=0.02)
    assert amplitude_at(heard, RATE, 3000) < 1.0
    # the muted leg still hears the room
    assert mixer.is_muted("muted")


def test_one_silent_leg_does_not_stall_the_others():
    mixer = AudioMixer()
    for leg in ("a", "b", "gone"):
        mixer.add_leg(leg, RATE)
    sources = {
        "a": lambda tick: tone(700, RATE, tick * FRAME, FRAME, 6000),
        "gone": lambda tick: tone(1500, RATE, tick * FRAME, FRAME, 6000),
    }
    run_ticks(mixer, sources, 20)
    del sources["gone"]  # this leg stops sending: every tick goes on
    heard = run_ticks(mixer, sources, 50, start=20)["b"][FRAME * 5 :]
    assert amplitude_at(heard, RATE, 700) == pytest.approx(6000, rel=0.02)
    assert amplitude_at(heard, RATE, 1500) < 6.0


def test_large_room_mixes_the_talkers_not_the_noise():
    mixer = AudioMixer(max_mixed=8)
    rng = np.random.default_rng(7)
    talkers = {"t0": 500.0, "t1": 1300.0, "t2": 2900.0}
    for leg in list(talkers) + [f"quiet{i}" for i in range(40)]:
        mixer.add_leg(leg, 16000)
    sources = {
        leg: (lambda tick, f=freq: tone(f, 16000, tick * 320, 320, 5000))
        for leg, freq in talkers.items()
    }
    for i in range(40):
        sources[f"quiet{i}"] = lambda tick: rng.normal(0, 20, 320).astype(np.int16)
    outputs = run_ticks(mixer, sources, 100)

    quiet = outputs["quiet3"][8000:]
    for freq in talkers.values():
        assert amplitude_at(quiet, 16000, freq) == pytest.approx(5000, rel=0.03)
    # forty open microphones of noise would add about 126 RMS; unmixed, none
    t = np.arange(quiet.size) / 16000
    basis = np.column_stack(
        [fn(2 * np.pi * f * t) for f in talkers.values() for fn in (np.sin, np.cos)]
    )
    fit, *_ = np.linalg.lstsq(basis, quiet.astype(float), rcond=None)
    assert np.std(quiet - basis @ fit) < 5.0
    talker = outputs["t0"][8000:]
    assert amplitude_at(talker, 16000, 500) < 5.0  # own voice never returned
    assert amplitude_at(talker, 16000, 1300) == pytest.approx(5000, rel=0.03)


def test_active_speaker_holds_the_floor_then_hands_over():
    mixer = AudioMixer()
    for leg in ("alice", "bob", "carol"):
        mixer.add_leg(leg, RATE)
    alice = {"alice": lambda tick: tone(300, RATE, tick * FRAME, FRAME, 4000)}
    run_ticks(mixer, alice, 25)
    assert mixer.active_speaker == "alice"

    # bob, much louder, for 0.2 s: a cough, not a change of speaker
    both = dict(alice, bob=lambda tick: tone(600, RATE, tick * FRAME, FRAME, 20000))
    run_ticks(mixer, both, 10, start=25)
    assert mixer.active_speaker == "alice"
    # for over a second: bob has the floor
    run_ticks(mixer, both, 60, start=35)
    assert mixer.active_speaker == "bob"
    # everyone stops: after the hangover nobody speaks
    run_ticks(mixer, {}, 100, start=95)
    assert mixer.active_speaker is None
    assert mixer.level("bob") == pytest.approx(-100.0)


def test_bad_calls_are_refused_with_clear_errors():
    mixer = AudioMixer()
    mixer.add_leg("a", 8000)
    with pytest.raises(ValueError, match="leg 'a' is already in the mixer"):
        mixer.add_leg("a", 8000)
    with pytest.raises(ValueError, match="leg rate 11025 Hz is not one of"):
        mixer.add_leg("b", 11025)
    with pytest.raises(ValueError, match="audio must be 1-D int16, got 1-D float64"):
        mixer.push("a", np.zeros(160))
    with pytest.raises(UnknownLegError):
        mixer.push("nobody", np.zeros(160, dtype=np.int16))
    with pytest.raises(ValueError, match="gain 9 is outside 0 to 4"):
        mixer.set_gain("a", 9)


def test_legs_come_and_go():
    mixer = AudioMixer()
    for i in range(30):
        mixer.add_leg(f"l{i}", (8000, 16000, 48000)[i % 3])
    for i in range(0, 30, 2):
        mixer.remove_leg(f"l{i}")
    mixer.add_leg("late", 8000)
    out = mixer.tick(0.0)
    assert sorted(out) == sorted([f"l{i}" for i in range(1, 30, 2)] + ["late"])
    assert out["late"].shape == (160,) and out["l1"].shape == (320,)


def test_wire_bytes_and_arrays_mix_alike():
    mixer = AudioMixer()
    for leg in ("bytes", "array", "ear"):
        mixer.add_leg(leg, 16000)
    heard = []
    for tick in range(30):
        a = tone(500, 16000, tick * 320, 320, 4000)
        b = tone(1500, 16000, tick * 320, 320, 4000)
        mixer.push_bytes("bytes", a.astype("<i2").tobytes())
        mixer.push("array", b)
        heard.append(mixer.tick(tick * 0.02)["ear"].copy())
    heard = np.concatenate(heard)[3200:]
    assert amplitude_at(heard, 16000, 500) == pytest.approx(4000, rel=0.02)
    assert amplitude_at(heard, 16000, 1500) == pytest.approx(4000, rel=0.02)
    with pytest.raises(ValueError, match="got 3 bytes"):
        mixer.push_bytes("bytes", b"abc")
    # a frame that wraps around the ring is written in two pieces
    for _ in range(20):
        mixer.push_bytes("bytes", bytes(2 * 333))
        mixer.tick(1.0)
    assert mixer.buffer_stats("bytes").overflows == 0
