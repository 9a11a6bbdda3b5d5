"""Two Chromiums and a dialled-out baresip phone in one room of the real bridge.

Browser A plays 440 Hz, browser B 880 Hz, the phone 1000 Hz.  Each must hear
the other two and never itself: A's tone in B's received audio and in the
phone's recording, the phone's tone in both browsers.  B's camera is on and
A receives its video.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.e2e.baresip import Phone, read_wav, tone_levels
from tests.e2e.browser import Chromium, tone_power
from tests.e2e.test_phones import Host

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists("/usr/bin/chromium") or shutil.which("baresip") is None,
        reason="needs /usr/bin/chromium and baresip",
    ),
    pytest.mark.timeout(240),
]

A_HZ, B_HZ, PHONE_HZ = 440.0, 880.0, 1000.0


def test_browsers_and_a_phone_share_one_conference(bridge, pki) -> None:
    host = Host(bridge)
    password = bridge.demo_secrets()["password"]
    url = f"{bridge.url}/rooms/demo"
    with Phone(pki, PHONE_HZ) as phone, Chromium(timeout=30) as chromium:
        with (
            chromium.browser(tone_hz=A_HZ) as ann,
            chromium.browser(tone_hz=B_HZ) as bob,
        ):
            ann.join(url, "Ann", password, video=False)
            bob.join(url, "Bob", password, video=True)
            ann.wait_connected(timeout=30)
            bob.wait_connected(timeout=30)
            leg = host.dial(phone.uri, "Carol by phone")
            host.wait_state(leg, "connected")
            time.sleep(4.0)

            ann_heard = ann.read_audio(2.0)
            bob_heard = bob.read_audio(2.0)

            # A receives B's camera while it is on
            deadline = time.monotonic() + 15
            while ann.stats()["framesDecoded"] < 10:
                assert time.monotonic() < deadline, ann.stats()
                time.sleep(0.2)

            roster = host.roster()
            kinds = sorted(entry["kind"] for entry in roster["legs"])
            assert kinds == ["browser", "browser", "phone"]
            for entry in roster["legs"]:
                if entry["kind"] == "browser":
                    assert entry["dtls_srtp_profile"].startswith("SRTP_")
                else:
                    assert entry["srtp_suite"].startswith("AES_CM_128")
            video = {entry["display_name"]: entry["video"] for entry in roster["legs"]}
            assert video == {"Ann": False, "Bob": True, "Carol by phone": False}

            host.expel(leg)
            phone.wait_event("CALL_CLOSED")

    # browsers: the other browser and the phone, not themselves
    for heard, own, others in (
        (ann_heard, A_HZ, (B_HZ, PHONE_HZ)),
        (bob_heard, B_HZ, (A_HZ, PHONE_HZ)),
    ):
        for other in others:
            assert tone_power(heard, other) > 0.1, (own, other)
        assert tone_power(heard, own) < 0.01, own

    # the phone: both browsers, not itself
    path = phone.recording("dec")
    assert path is not None
    rate, recorded = read_wav(path)
    levels = tone_levels(recorded, rate, [A_HZ, B_HZ, PHONE_HZ], skip=1.5)
    assert levels[A_HZ] > 0.05 and levels[B_HZ] > 0.05, levels
    # its own tone is not there: at most the broadband splatter that the
    # browsers' concealed packets leave everywhere (about -45 dB), and no
    # peak at its frequency standing above the neighbouring bands
    own = levels[PHONE_HZ]
    assert own < 0.03 * min(levels[A_HZ], levels[B_HZ]), levels
    around = tone_levels(recorded, rate, [PHONE_HZ - 70, PHONE_HZ + 70], skip=1.5)
    assert own < 3 * max(max(around.values()), 1e-5), (levels, around)
