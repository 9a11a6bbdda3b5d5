"""Dial-out as authentication: a phone joins only after its PIN is typed.

The bridge calls a participant's known number; answering is not enough, the
person must also type the PIN the host set for this call, then ``#``.  This
module is the sans-IO state machine for that exchange: digits and the time go
in, prompt audio and an outcome come out.

    prompting/collecting --(right PIN)--> accepted (thank-you, then joins)
                         --(wrong PIN or timeout, attempts left)--> retry
                         --(no attempts left)--> refused (goodbye, hang up)
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]

PIN_PATTERN = re.compile(r"^[0-9]{4,12}$")
ATTEMPTS = 3
#: Seconds after a prompt ends to finish typing before the attempt fails.
DIGIT_TIMEOUT = 15.0
MAX_DIGITS = 16


class InvalidPin(ValueError):
    """A PIN is not 4 to 12 digits."""


def check_pin(pin: str) -> str:
    if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
        raise InvalidPin("a PIN must be 4 to 12 digits")
    return pin


class PinGate:
    """One phone leg's PIN confirmation.

    ``prompt(name)`` gives the audio of a prompt at the leg's rate; ``frame``
    is the number of samples per tick.  Call :meth:`start` when the call is
    answered, :meth:`digit` for every keypad digit and :meth:`next_frame`
    once a tick; :attr:`outcome` becomes "accepted" or "refused" once the
    closing prompt has been played in full, with :attr:`failure` saying why
    a refusal happened ("wrong PIN" or "no PIN typed").
    """

    def __init__(
        self,
        pin: str,
        prompt: Callable[[str], Pcm],
        frame: int,
        attempts: int = ATTEMPTS,
        timeout: float = DIGIT_TIMEOUT,
    ) -> None:
        self._pin = check_pin(pin)
        self._prompt = prompt
        self._frame = frame
        self.attempts_left = attempts
        self._timeout = timeout
        self._typed: list[str] = []
        self._playing: Pcm | None = None
        self._position = 0
        self._deadline: float | None = None
        self._closing: str | None = None
        self.outcome: str | None = None
        self.failure: str | None = None
        self.attempts_made = 0

    def __repr__(self) -> str:  # never show the PIN
        return f"<PinGate attempts_left={self.attempts_left} outcome={self.outcome}>"

    @property
    def deciding(self) -> bool:
        return self.outcome is None

    def start(self, now: float) -> None:
        self._play("welcome")

    def digit(self, digit: str, now: float) -> None:
        """One keypad digit; ``#`` ends an attempt."""
        if self._closing is not None or self.outcome is not None:
            return
        if digit == "#":
            self._attempt(now, timed_out=False)
        elif digit.isdigit():
            if len(self._typed) >= MAX_DIGITS:
                self._attempt(now, timed_out=False)
                return
            self._typed.append(digit)
            # typing interrupts the prompt (barge-in)
            if self._playing is not None and self._closing is None:
                self._playing = None
                self._deadline = now + self._timeout

    def next_frame(self, now: float) -> Pcm:
        """The audio to send this tick (prompt or silence)."""
        frame = np.zeros(self._frame, dtype=np.int16)
        if self._playing is not None:
            chunk = self._playing[self._position : self._position + self._frame]
            frame[: chunk.shape[0]] = chunk
            self._position += self._frame
            if self._position >= self._playing.shape[0]:
                self._playing = None
                if self._closing is not None:
                    self.outcome = self._closing
                else:
                    self._deadline = now + self._timeout
        elif self._deadline is not None and now >= self._deadline:
            self._attempt(now, timed_out=True)
        return frame

    def _attempt(self, now: float, timed_out: bool) -> None:
        typed = "".join(self._typed)
        self._typed.clear()
        self._deadline = None
        self.attempts_made += 1
        if not timed_out and hmac.compare_digest(typed.encode(), self._pin.encode()):
            self._close("accepted")
            return
        self.attempts_left -= 1
        self.failure = "no PIN typed" if timed_out and not typed else "wrong PIN"
        if self.attempts_left <= 0:
            self._close("refused")
        else:
            self._play("retry")

    def _close(self, outcome: str) -> None:
        self._closing = outcome
        if outcome == "accepted":
            self.failure = None
        self._play(outcome)

    def _play(self, name: str) -> None:
        self._playing = self._prompt(name)
        self._position = 0
        self._deadline = None
