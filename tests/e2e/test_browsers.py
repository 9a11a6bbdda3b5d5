"""Two headless Chromiums in one room of the real bridge.

Each browser's fake microphone plays its own tone; each must hear the other's
tone and not its own, and see video. The bridge runs as ``carebridge serve`` in
a subprocess (``tests.bridge.harness``), the browsers through
:mod:`tests.e2e.browser`.

FIXME: the brief's third participant, a baresip phone dialled out to, joins
once the host API for dial-out is settled (tests/e2e/baresip.py has the
phone).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bridge.harness import BridgeProcess, write_config
from tests.e2e.browser import Chromium, dominant_frequency, tone_power

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium"), reason="needs /usr/bin/chromium"
)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BridgeProcess]:
    process = BridgeProcess(write_config(tmp_path), log_level="info")
    try:
        yield process
    finally:
        process.close()


def test_two_browsers_in_the_demo_room(bridge: BridgeProcess) -> None:
    password = bridge.demo_secrets()["password"]
    url = f"{bridge.url}/rooms/demo"
    with Chromium(timeout=20) as chromium:
        with chromium.browser(tone_hz=440) as ann, chromium.browser(tone_hz=880) as bob:
            ann.join(url, "Ann", password, video=True)
            bob.join(url, "Bob", password, video=False)
            ann.wait_connected(timeout=20)
            bob.wait_connected(timeout=20)
            time.sleep(3.0)

            ann_pcm = ann.read_audio(1.0)
            bob_pcm = bob.read_audio(1.0)
            assert dominant_frequency(ann_pcm) == pytest.approx(880, abs=5)
            assert dominant_frequency(bob_pcm) == pytest.approx(440, abs=5)
            assert tone_power(ann_pcm, 440) < 0.05
            assert tone_power(bob_pcm, 880) < 0.05

            # Bob (microphone only) sees Ann's camera; Ann sees Bob's tile
            for tab in (ann, bob):
                deadline = time.monotonic() + 10
                while tab.stats()["framesDecoded"] < 10:
                    assert time.monotonic() < deadline, tab.stats()
                    time.sleep(0.2)
                stats = tab.stats()
                assert (stats["frameWidth"], stats["frameHeight"]) == (640, 480)

            # the host sees both, encrypted, with media flowing both ways
            key = bridge.demo_secrets()["host key"]
            roster = bridge.request("GET", "/api/rooms/demo/roster", key=key)[1]
            legs = {leg["display_name"]: leg for leg in roster["legs"]}
            assert set(legs) == {"Ann", "Bob"}
            for leg in legs.values():
                assert leg["kind"] == "browser" and leg["audio"] is True
                assert leg["connection_state"] == "connected"
                assert leg["dtls_srtp_profile"].startswith("SRTP_")
                assert leg["webrtc"]["audio_frames_received"] > 50
                assert leg["webrtc"]["video_frames_sent"] > 10
            assert legs["Ann"]["video"] is True
            assert legs["Ann"]["webrtc"]["video_frames_received"] > 10
            assert legs["Bob"]["video"] is False

            bob.click("#leave")
            ann.wait_state("connected")
