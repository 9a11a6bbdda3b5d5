"""Phone legs: a dial-out call, seen from the conference.

A :class:`PhoneLeg` is on the roster from the moment the bridge dials.  It
follows the SIP worker's call events (trying, ringing, answered, ...), joins
the mix when the call is answered and leaves the conference when the call
ends, whoever ended it.  Its audio goes to and from the SIP worker pool at
the pool's rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from sip.events import TERMINAL_KINDS, CallEvent

from .confirm import PinGate

logger = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]

#: Roster states of a phone leg.
STATES = (
    "dialing",
    "trying",
    "ringing",
    "confirming",
    "connected",
    "busy",
    "no-answer",
    "rejected",
    "failed",
    "ended",
    "dropped",
)


class PhoneLeg:
    kind = "phone"

    def __init__(
        self,
        leg_id: str,
        uri: str,
        display_name: str,
        rate: int,
        send_audio: Callable[[str, Pcm], None],
        hangup: Callable[[str], None],
        gate: PinGate | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leg_id = leg_id
        self.uri = uri
        self.display_name = display_name
        self.rate = rate
        self.state = "dialing"
        self.codec: str | None = None
        self.srtp_suite: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.ended_by: str | None = None
        self.answered_at: float | None = None
        self.on_audio: Callable[[str, Pcm | bytes], None] | None = None
        self.on_digit: Callable[[str, str], None] | None = None
        #: called once with "accepted" or "refused" when a PIN gate decides
        self.on_confirmation: Callable[[str, str], None] | None = None
        #: why the bridge ended the call, if it did (shown on the roster)
        self.end_reason: str | None = None
        self.gate = gate
        self._now = now
        self._confirmation_reported = False
        self._send_audio = send_audio
        self._hangup = hangup
        self.frames_in = 0
        self.frames_out = 0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_KINDS

    def handle(self, event: CallEvent) -> None:
        """Follows one call event from the SIP side."""
        if event.kind == "dtmf":
            # digits may be a PIN: kept by the gate only, never listed
            if event.digit is not None:
                if self.gate is not None and self.state == "confirming":
                    self.gate.digit(event.digit, self._now())
                elif self.on_digit is not None:
                    self.on_digit(self.leg_id, event.digit)
            return
        if self.terminal:
            return
        if event.kind == "answered":
            if self.gate is not None:
                self.state = "confirming"
                self.gate.start(self._now())
            else:
                self.state = "connected"
            self.codec = event.codec
            self.srtp_suite = event.srtp_suite
            self.answered_at = time.time()
        elif event.kind in ("trying", "ringing"):
            self.state = event.kind
        else:
            self.state = event.kind
            self.status = event.status
            self.reason = event.reason
            self.ended_by = event.by

    def hangup(self) -> None:
        if not self.terminal:
            self._hangup(self.leg_id)

    def received(self, pcm: Pcm | bytes) -> None:
        """Audio from the phone, at :attr:`rate` (an array, or s16le bytes)."""
        self.frames_in += 1
        if self.on_audio is not None:
            self.on_audio(self.leg_id, pcm)

    def tick_unmixed(self, now: float) -> None:
        """A tick while out of the mix: play the PIN gate's prompts."""
        gate = self.gate
        if gate is None or self.state != "confirming":
            return
        self._send_audio(self.leg_id, gate.next_frame(now))
        if gate.outcome is not None and not self._confirmation_reported:
            self._confirmation_reported = True
            if gate.outcome == "accepted":
                self.state = "connected"
            if self.on_confirmation is not None:
                self.on_confirmation(self.leg_id, gate.outcome)

    def deliver_audio(self, pcm: Pcm) -> None:
        if self.state == "connected":
            self.frames_out += 1
            self._send_audio(self.leg_id, pcm)

    def roster_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "leg": self.leg_id,
            "kind": self.kind,
            "display_name": self.display_name,
            "uri": self.uri,
            "state": self.state,
            "audio": self.state == "connected",
            "video": False,
            "transport": "sip-tls",
            "codec": self.codec,
            "srtp_suite": self.srtp_suite,
            "encrypted": self.srtp_suite is not None,
            "pin_required": self.gate is not None,
        }
        if self.gate is not None:
            info["pin_attempts"] = self.gate.attempts_made
        if self.status is not None:
            info["sip_status"] = self.status
        if self.end_reason:
            info["reason"] = self.end_reason
        elif self.reason:
            info["reason"] = self.reason
        if self.ended_by:
            info["ended_by"] = self.ended_by
        return info
