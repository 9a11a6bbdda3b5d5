"""A conference of phone legs: N-1 audio, roster, and expulsion that stops media."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.audit import AuditLog, read
from bridge.conference import Conference, ConferenceFull
from bridge.config import MediaConfig
from bridge.phone import PhoneLeg
from sip.events import CallEvent
from tests.mixer.signals import amplitude_at, tone


class Wire:
    """Collects what the conference sends to each phone (the SIP pool's role)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[np.ndarray]] = {}
        self.hung_up: list[str] = []

    def send(self, leg_id: str, pcm: np.ndarray) -> None:
        self.sent.setdefault(leg_id, []).append(pcm.copy())

    def hangup(self, leg_id: str) -> None:
        self.hung_up.append(leg_id)


def connected_phone(conference, wire, leg_id, rate=16000):
    leg = PhoneLeg(
        leg_id, f"sips:{leg_id}@127.0.0.1", leg_id, rate, wire.send, wire.hangup
    )
    conference.add_leg(leg, rate=rate, mixed=False)
    leg.handle(CallEvent("ringing"))
    leg.handle(
        CallEvent("answered", codec="G722/16000", srtp_suite="AES_CM_128_HMAC_SHA1_80")
    )
    conference.start_mixing(leg_id)
    return leg


@pytest.fixture
def room(tmp_path):
    audit = AuditLog(tmp_path / "audit.log")
    clock = [0.0]
    conference = Conference(
        "ward", MediaConfig(), audit, now=lambda: clock[0], max_participants=4
    )
    yield conference, clock, tmp_path / "audit.log"
    audit.close()


def run(conference, clock, sources, ticks, start):
    for tick in range(start, start + ticks):
        for leg, (freq, rate) in sources.items():
            frame = rate // 50
            leg.received(tone(freq, rate, tick * frame, frame, 6000))
        conference.tick(clock[0])
        clock[0] += 0.02


def test_phones_hear_each_other_and_an_expelled_phone_stops(room):
    conference, clock, audit_path = room
    wire = Wire()
    a = connected_phone(conference, wire, "a")
    b = connected_phone(conference, wire, "b", rate=8000)
    c = connected_phone(conference, wire, "c")
    sources = {a: (440.0, 16000), b: (1000.0, 8000), c: (1800.0, 16000)}
    run(conference, clock, sources, 100, 0)

    heard_by_b = np.concatenate(wire.sent["b"][25:])
    assert amplitude_at(heard_by_b, 8000, 440) == pytest.approx(6000, rel=0.03)
    assert amplitude_at(heard_by_b, 8000, 1800) == pytest.approx(6000, rel=0.03)
    assert amplitude_at(heard_by_b, 8000, 1000) < 6  # never its own voice

    roster = conference.roster()
    entry = next(leg for leg in roster["legs"] if leg["leg"] == "a")
    assert entry["state"] == "connected" and entry["encrypted"] is True
    assert entry["srtp_suite"] == "AES_CM_128_HMAC_SHA1_80" and entry["in_mix"]
    assert roster["participants"] == 3 and roster["recording"] is False

    # expel c: from the next tick on it gets nothing and nobody hears it
    conference.remove_leg("c", "expelled by host")
    sent_to_c = len(wire.sent["c"])
    wire.sent["a"].clear()
    run(conference, clock, sources, 50, 100)  # c keeps sending: it is dropped
    assert len(wire.sent["c"]) == sent_to_c
    heard_by_a = np.concatenate(wire.sent["a"][5:])
    assert amplitude_at(heard_by_a, 16000, 1800) < 6
    assert amplitude_at(heard_by_a, 16000, 1000) == pytest.approx(6000, rel=0.03)

    ended = conference.roster()["ended"]
    assert [leg["leg"] for leg in ended] == ["c"]
    assert ended[0]["ended_reason"] == "expelled by host"
    events = [(entry["event"], entry.get("leg")) for entry in read(audit_path)]
    assert ("joined", "c") in events and ("left", "c") in events


def test_a_ringing_phone_is_listed_but_not_mixed(room):
    conference, clock, _ = room
    wire = Wire()
    ringing = PhoneLeg("r", "sips:r@127.0.0.1", "r", 16000, wire.send, wire.hangup)
    conference.add_leg(ringing, rate=16000, mixed=False)
    ringing.handle(CallEvent("ringing"))
    connected_phone(conference, wire, "x")
    run(conference, clock, {}, 5, 0)
    assert "r" not in wire.sent
    entry = next(leg for leg in conference.roster()["legs"] if leg["leg"] == "r")
    assert entry["state"] == "ringing" and entry["in_mix"] is False


def test_room_size_is_capped(room):
    conference, _, _ = room
    wire = Wire()
    for name in "abcd":
        connected_phone(conference, wire, name)
    with pytest.raises(ConferenceFull, match="room 'ward' is full"):
        connected_phone(conference, wire, "e")
