"""The join page in headless Chromium against the stand-in room server.

Slow (each Chromium takes a second or two to start); skipped where
``/usr/bin/chromium`` is missing. The full-bridge version with a telephone in
the room lives in ``tests/e2e``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import Chromium, dominant_frequency, tone_power
from tests.webrtc.roomserver import ServerProcess

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium"), reason="needs /usr/bin/chromium"
)

ROOMS = {"ward-7": "pw7", "ward-8": "pw8", "ward-9": "pw9"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(ROOMS, {"ward-8": 1000}) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    with Chromium(timeout=20) as running:
        yield running


def wait_until(check: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def legs(server: ServerProcess, room: str) -> list[dict[str, Any]]:
    return list(server.debug(room)["legs"])


def test_two_browsers_hear_and_see_each_other(
    server: ServerProcess, chromium: Chromium
) -> None:
    url = server.url("/rooms/ward-7")
    with chromium.browser(tone_hz=440) as ann, chromium.browser(tone_hz=880) as bob:
        ann.join(url, "Ann", "pw7", video=True)
        bob.join(url, "Bob", "pw7", video=True)
        ann.wait_connected(timeout=20)
        bob.wait_connected(timeout=20)

        # the bridge hears each tone from its own leg
        def heard() -> dict[str, float]:
            return {
                leg["display_name"]: leg["heard_hz"] for leg in legs(server, "ward-7")
            }

        assert wait_until(
            lambda: heard().get("Ann", 0) and heard().get("Bob", 0), 10
        ), heard()
        assert heard()["Ann"] == pytest.approx(440, abs=5)
        assert heard()["Bob"] == pytest.approx(880, abs=5)

        # each hears the other, not itself (N-1 mix)
        time.sleep(2.0)
        ann_pcm = ann.read_audio(1.0)
        bob_pcm = bob.read_audio(1.0)
        assert dominant_frequency(ann_pcm) == pytest.approx(880, abs=5)
        assert dominant_frequency(bob_pcm) == pytest.approx(440, abs=5)
        assert tone_power(ann_pcm, 440) < 0.05
        assert tone_power(bob_pcm, 880) < 0.05

        # video both ways, 640x480
        for tab in (ann, bob):
            stats = wait_until(
                lambda tab=tab: tab.stats()["framesDecoded"] > 10 and tab.stats(), 10
            )
            assert stats, tab.stats()
            assert (stats["frameWidth"], stats["frameHeight"]) == (640, 480)

        roster = legs(server, "ward-7")
        assert {leg["display_name"] for leg in roster} == {"Ann", "Bob"}
        for leg in roster:
            assert leg["kind"] == "browser"
            assert leg["video"] is True and leg["audio"] is True
            assert leg["connection_state"] == "connected"
            assert leg["dtls_srtp_profile"].startswith("SRTP_")
            assert leg["video_frames_received"] > 10


def test_wrong_password_is_refused(server: ServerProcess, chromium: Chromium) -> None:
    with chromium.browser(tone_hz=440) as tab:
        tab.join(server.url("/rooms/ward-9"), "Eve", "guess", video=False)
        assert tab.wait_state("error", "connected", timeout=10) == "error"
        assert tab.status_text() == "room or password not accepted"
        # an unknown room says exactly the same
        tab.join(server.url("/rooms/no-such-room"), "Eve", "pw9", video=False)
        assert tab.wait_state("error", "connected", timeout=10) == "error"
        assert tab.status_text() == "room or password not accepted"
    assert legs(server, "ward-9") == []


def test_microphone_only_tab_hears_and_sees(
    server: ServerProcess, chromium: Chromium
) -> None:
    with chromium.browser(tone_hz=660) as tab:
        tab.join(server.url("/rooms/ward-8"), "Cy", "pw8", video=False)
        tab.wait_connected(timeout=20)
        time.sleep(2.0)
        # the room's test tone at 1 kHz
        assert dominant_frequency(tab.read_audio(1.0)) == pytest.approx(1000, abs=5)
        assert wait_until(lambda: tab.stats()["framesDecoded"] > 5, 10)
        (leg,) = legs(server, "ward-8")
        assert leg["video"] is False and leg["audio"] is True
        assert leg["heard_hz"] == pytest.approx(660, abs=5)

        tab.click("#mute")
        assert wait_until(lambda: legs(server, "ward-8")[0]["audio_muted"], 5)

        tab.click("#leave")
        assert wait_until(lambda: not legs(server, "ward-8"), 5)
        removed = server.debug("ward-8")["removed"]
        assert removed[-1] == {"leg": leg["leg"], "reason": "left"}


def test_closed_tab_is_removed_within_seconds(
    server: ServerProcess, chromium: Chromium
) -> None:
    with chromium.browser(tone_hz=440) as tab:
        tab.join(server.url("/rooms/ward-9"), "Dee", "pw9", video=True)
        tab.wait_connected(timeout=20)
        (leg,) = legs(server, "ward-9")
        closed_at = time.monotonic()
        tab.page.close()
        assert wait_until(lambda: not legs(server, "ward-9"), 10)
        assert time.monotonic() - closed_at < 5
        removed = server.debug("ward-9")["removed"]
        assert removed[-1]["leg"] == leg["leg"]
        assert removed[-1]["reason"] in ("left", "signalling closed")
