"""Phones dialled out by the real bridge: they hear each other, never themselves.

The bridge runs as ``carebridge serve`` (tests.bridge.harness) with dial-out
over TLS and mandatory SRTP; Debian's baresip plays the telephones
(tests.e2e.baresip), each with a tone file as its microphone and a recording
of what it hears.  Everything goes through the host API, as an operator's
script would.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

import pytest

from tests.bridge.harness import BridgeProcess, wait_for
from tests.e2e.baresip import read_wav, tone_levels

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip"),
    pytest.mark.timeout(180),
]


class Host:
    """The room's host, through the HTTPS API."""

    def __init__(self, bridge: BridgeProcess, room: str = "demo") -> None:
        self.bridge = bridge
        self.room = room
        self.key = bridge.demo_secrets()["host key"]

    def dial(self, uri: str, name: str) -> str:
        status, body, _ = self.bridge.request(
            "POST",
            f"/api/rooms/{self.room}/dialout",
            {"uri": uri, "display_name": name},
            key=self.key,
        )
        assert status == 201, body
        return str(body["leg"])

    def roster(self) -> dict[str, Any]:
        status, body, _ = self.bridge.request(
            "GET", f"/api/rooms/{self.room}/roster", key=self.key
        )
        assert status == 200, body
        return dict(body)

    def leg(self, leg_id: str) -> dict[str, Any] | None:
        roster = self.roster()
        for entry in roster["legs"] + roster["ended"]:
            if entry["leg"] == leg_id:
                return dict(entry)
        return None

    def wait_state(
        self, leg_id: str, *states: str, timeout: float = 20
    ) -> dict[str, Any]:
        def reached() -> bool:
            entry = self.leg(leg_id)
            return entry is not None and entry["state"] in states

        assert wait_for(reached, timeout), (self.leg(leg_id), self.bridge.log()[-3000:])
        entry = self.leg(leg_id)
        assert entry is not None
        return entry

    def expel(self, leg_id: str) -> None:
        status, body, _ = self.bridge.request(
            "DELETE", f"/api/rooms/{self.room}/legs/{leg_id}", key=self.key
        )
        assert status == 200, body


def test_two_phones_hear_each_other_not_themselves(bridge, phones) -> None:
    host = Host(bridge)
    phone_a, phone_b = phones(440.0), phones(1000.0)
    leg_a = host.dial(phone_a.uri, "Ann on the ward phone")
    leg_b = host.dial(phone_b.uri, "Bob at home")

    for leg in (leg_a, leg_b):
        entry = host.wait_state(leg, "connected")
        assert entry["kind"] == "phone" and entry["transport"] == "sip-tls"
        assert entry["codec"].startswith("G722")
        assert entry["srtp_suite"].startswith("AES_CM_128_HMAC_SHA1")
        assert entry["encrypted"] is True
    time.sleep(5.0)
    roster = host.roster()
    assert {entry["leg"] for entry in roster["legs"] if entry["in_mix"]} == {
        leg_a,
        leg_b,
    }

    # the host ends both calls; the phones see them closed
    host.expel(leg_a)
    host.expel(leg_b)
    phone_a.wait_event("CALL_CLOSED")
    phone_b.wait_event("CALL_CLOSED")

    for phone, own, other in ((phone_a, 440.0, 1000.0), (phone_b, 1000.0, 440.0)):
        path = phone.recording("dec")
        assert path is not None
        rate, heard = read_wav(path)
        assert len(heard) > 3 * rate
        levels = tone_levels(heard, rate, [own, other], skip=1.5)
        assert levels[other] > 0.1, levels  # the other phone, at about its level
        assert levels[own] < 0.01 * levels[other], levels  # never its own echo

    ended = {entry["leg"]: entry for entry in host.roster()["ended"]}
    assert ended[leg_a]["ended_reason"] == "expelled by host"
    log = bridge.log()
    assert "expelled" in log


def test_a_phone_without_srtp_is_not_connected(bridge, phones) -> None:
    host = Host(bridge)
    plain = phones(700.0, mediaenc=None)
    leg = host.dial(plain.uri, "No SRTP")
    entry = host.wait_state(leg, "failed", "rejected")
    assert entry["encrypted"] is False
    assert entry["sip_status"] == 488
    assert "SRTP" in entry["reason"]
    assert leg not in {item["leg"] for item in host.roster()["legs"]}


def test_a_killed_worker_drops_only_its_legs(bridge, phones) -> None:
    host = Host(bridge)
    phone = phones(500.0)
    leg = host.dial(phone.uri, "Carol")
    host.wait_state(leg, "connected")

    workers = bridge.request("GET", "/api/health")[1]["sip_workers"]
    serving = [worker for worker in workers if leg in worker["legs"]]
    assert len(serving) == 1
    os.kill(serving[0]["pid"], signal.SIGKILL)

    entry = host.wait_state(leg, "dropped")
    assert entry["ended_reason"] == "dropped"
    # the bridge goes on and a new worker serves the next call
    assert bridge.request("GET", "/api/health")[0] == 200
    again = phones(600.0)
    second = host.dial(again.uri, "Carol again")
    host.wait_state(second, "connected")
    workers = bridge.request("GET", "/api/health")[1]["sip_workers"]
    assert any(second in worker["legs"] for worker in workers)
    host.expel(second)
    again.wait_event("CALL_CLOSED")
