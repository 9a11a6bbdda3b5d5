"""What the SIP side tells the bridge about a call leg."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = frozenset(
    {
        "trying",
        "ringing",
        "answered",
        "busy",
        "no-answer",
        "rejected",
        "ended",
        "failed",
        "dropped",
        "dtmf",
    }
)

#: after one of these the leg is gone and its capacity is free again
TERMINAL_KINDS = frozenset(
    {"busy", "no-answer", "rejected", "ended", "failed", "dropped"}
)

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class EventError(ValueError):
    """A call event from a worker does not make sense."""


@dataclass(frozen=True)
class CallEvent:
    """One step in a call leg's life.

    ``status``/``reason`` carry the SIP final response where there is one;
    ``codec`` and ``srtp_suite`` come with "answered"; ``digit`` with "dtmf";
    ``by`` ("remote" or "bridge") with "ended".
    """

    kind: str
    status: int | None = None
    reason: str | None = None
    codec: str | None = None
    srtp_suite: str | None = None
    digit: str | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EventError(f"unknown call event kind {self.kind!r}")
        if self.kind == "dtmf" and self.digit not in DTMF_DIGITS:
            raise EventError(f"dtmf event with bad digit {self.digit!r}")
        if self.by not in (None, "remote", "bridge"):
            raise EventError(f"call ended by unknown party {self.by!r}")

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def to_wire(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CallEvent:
        try:
            return cls(**data)
        except TypeError:
            raise EventError("call event has unknown fields") from None


def classify_end(
    *,
    answered: bool,
    status: int,
    reason: str,
    by_bridge: bool,
    no_answer: bool,
    timeout: float,
) -> CallEvent:
    """Map pjsua's last status of a disconnected call to the bridge's event."""
    if answered:
        return CallEvent(
            "ended", status=status or None, by="bridge" if by_bridge else "remote"
        )
    if no_answer:
        return CallEvent(
            "no-answer", status=status or None, reason=f"no answer in {timeout:g}s"
        )
    if by_bridge:
        return CallEvent("ended", status=status or None, reason=reason, by="bridge")
    if status in (486, 600):
        return CallEvent("busy", status=status, reason=reason)
    if status == 488:
        return CallEvent(
            "failed",
            status=status,
            reason="peer refused the offer (SRTP is mandatory; codecs "
            f"G722/PCMU/PCMA): {reason}",
        )
    if 300 <= status < 700 and not _local_failure(status, reason):
        return CallEvent("rejected", status=status, reason=reason)
    return CallEvent("failed", status=status or None, reason=_failure_text(reason))


# pjsua reports transport trouble as 408/503 with a pj error text, not the
# standard reason phrase a peer would send
_STANDARD_PHRASES = {408: "Request Timeout", 503: "Service Unavailable"}


def _local_failure(status: int, reason: str) -> bool:
    phrase = _STANDARD_PHRASES.get(status)
    return phrase is not None and reason.strip().lower() != phrase.lower()


def _failure_text(reason: str) -> str:
    lowered = reason.lower()
    if "ssl" in lowered or "tls" in lowered or "certificate" in lowered:
        return f"TLS handshake failed: {reason}"
    return reason or "call failed"
