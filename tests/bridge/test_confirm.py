"""The PIN gate: prompts out, digits in, an outcome only after its prompt."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.confirm import InvalidPin, PinGate
from bridge.prompts import Prompts

FRAME = 320  # 20 ms at 16 kHz


def fake_prompts(name: str) -> np.ndarray:
    # a distinct constant level per prompt, 3 frames long, to tell them apart
    level = {"welcome": 100, "retry": 200, "accepted": 300, "refused": 400}[name]
    return np.full(3 * FRAME, level, dtype=np.int16)


class Run:
    def __init__(self, gate: PinGate) -> None:
        self.gate = gate
        self.now = 0.0
        self.heard: list[int] = []

    def ticks(self, count: int) -> None:
        for _ in range(count):
            frame = self.gate.next_frame(self.now)
            self.heard.append(int(frame.max()))
            self.now += 0.02

    def type(self, keys: str) -> None:
        for key in keys:
            self.gate.digit(key, self.now)
            self.ticks(1)


def test_right_pin_after_the_welcome_is_accepted():
    run = Run(PinGate("2468", fake_prompts, FRAME))
    run.gate.start(run.now)
    run.ticks(5)
    assert run.heard[:3] == [100, 100, 100] and run.heard[3:] == [0, 0]
    run.type("2468#")
    assert run.gate.outcome is None  # the thank-you prompt plays first
    run.ticks(5)
    assert run.gate.outcome == "accepted"
    assert 300 in run.heard and run.gate.attempts_made == 1


def test_typing_during_the_welcome_interrupts_it():
    run = Run(PinGate("1234", fake_prompts, FRAME))
    run.gate.start(run.now)
    run.ticks(1)
    run.type("1234#")
    run.ticks(4)
    assert run.heard[:2] == [100, 0]  # barge-in cut the welcome short
    assert run.gate.outcome == "accepted"


def test_three_wrong_pins_are_refused():
    run = Run(PinGate("1234", fake_prompts, FRAME))
    run.gate.start(run.now)
    run.ticks(4)
    for _ in range(3):
        run.type("9999#")
        run.ticks(4)
    assert run.gate.outcome == "refused"
    assert run.gate.failure == "wrong PIN"
    assert run.heard.count(200) == 6 and run.heard.count(400) == 3
    run.type("1234#")  # too late: nothing changes
    assert run.gate.outcome == "refused"


def test_silence_times_out_each_attempt():
    run = Run(PinGate("1234", fake_prompts, FRAME, timeout=1.0))
    run.gate.start(run.now)
    run.ticks(3 * 3 + 3 * 50 + 10)
    assert run.gate.outcome == "refused"
    assert run.gate.failure == "no PIN typed"
    assert run.gate.attempts_made == 3


def test_pin_is_validated_and_never_shown():
    with pytest.raises(InvalidPin, match="a PIN must be 4 to 12 digits"):
        PinGate("12a4", fake_prompts, FRAME)
    with pytest.raises(InvalidPin):
        PinGate("123", fake_prompts, FRAME)
    assert "5678" not in repr(PinGate("5678", fake_prompts, FRAME))


def test_prompts_are_spoken_once_and_reused(tmp_path):
    prompts = Prompts(tmp_path / "prompts", 16000)
    welcome = prompts.get("welcome")
    assert welcome.dtype == np.int16 and welcome.shape[0] > 16000  # over a second
    assert np.abs(welcome).max() > 1000  # not silence
    assert prompts.get("welcome") is welcome
    # an operator's own recording replaces the spoken one
    if (tmp_path / "prompts" / "welcome.wav").exists():
        narrow = Prompts(tmp_path / "prompts", 8000).get("welcome")
        assert narrow.shape[0] == pytest.approx(welcome.shape[0] / 2, abs=2)
