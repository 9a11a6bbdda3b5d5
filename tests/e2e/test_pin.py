"""Dial-out as authentication: a phone joins only after typing its PIN.

The real bridge dials baresip phones over TLS/SRTP.  One phone is already in
the room; another is called with a PIN.  Until it types the PIN it hears only
the bridge's prompts and nobody hears it; after, it is in the conference.  A
phone that types wrong PINs is hung up and the refusal is audited.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.e2e.baresip import read_wav, tone_levels
from tests.e2e.test_phones import Host

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip"),
    pytest.mark.timeout(180),
]

PIN = "739146"


def dial_with_pin(host: Host, uri: str, name: str, pin: str) -> str:
    status, body, _ = host.bridge.request(
        "POST",
        f"/api/rooms/{host.room}/dialout",
        {"uri": uri, "display_name": name, "pin": pin},
        key=host.key,
    )
    assert status == 201 and body["pin_required"] is True, body
    return str(body["leg"])


def test_a_phone_joins_only_after_its_pin(bridge, phones) -> None:
    host = Host(bridge)
    present = phones(1000.0)
    leg_present = host.dial(present.uri, "Already here")
    host.wait_state(leg_present, "connected")

    caller = phones(440.0)
    leg = dial_with_pin(host, caller.uri, "Patient", PIN)
    entry = host.wait_state(leg, "confirming")
    assert entry["in_mix"] is False and entry["pin_required"] is True
    time.sleep(3.0)  # the welcome prompt plays; the room must stay apart
    caller.send_dtmf(PIN + "#")
    host.wait_state(leg, "connected", timeout=20)
    joined_at = time.monotonic()
    time.sleep(4.0)
    assert host.leg(leg)["in_mix"] is True

    host.expel(leg)
    host.expel(leg_present)
    caller.wait_event("CALL_CLOSED")
    present.wait_event("CALL_CLOSED")
    stayed = time.monotonic() - joined_at

    path = caller.recording("dec")
    assert path is not None
    rate, heard = read_wav(path)
    before = heard[int(0.5 * rate) : int(3.0 * rate)]
    after = heard[-int((stayed - 1.5) * rate) :]
    # before the PIN: the prompt (speech), not the room
    assert tone_levels(before, rate, [1000.0], skip=0)[1000.0] < 0.01
    assert before.std() > 0.01
    # after it: the phone already in the room
    assert tone_levels(after, rate, [1000.0], skip=0)[1000.0] > 0.1

    audit = (bridge.state_dir / "audit.log").read_text()
    assert '"event": "pin-accepted"' in audit
    assert PIN not in bridge.log() and PIN not in audit


def test_wrong_pins_hang_up_the_call(bridge, phones) -> None:
    host = Host(bridge)
    caller = phones(440.0)
    leg = dial_with_pin(host, caller.uri, "Wrong number", PIN)
    host.wait_state(leg, "confirming")
    for _ in range(3):
        caller.send_dtmf("0000#")
        time.sleep(4.5)  # the retry prompt plays before the next attempt

    caller.wait_event("CALL_CLOSED", timeout=20)
    entry = host.wait_state(leg, "ended")
    assert entry["ended_reason"] == "PIN not confirmed (wrong PIN)"
    assert entry["pin_attempts"] == 3
    audit = (bridge.state_dir / "audit.log").read_text()
    assert '"event": "pin-refused"' in audit and '"why": "wrong PIN"' in audit
    assert PIN not in bridge.log() and PIN not in audit
