"""The join page in headless Chromium against the real bridge.

What the page itself does: a refused join shown to the person, microphone-only
joins, the mute and leave buttons, and a tab closed without leaving. Two
browsers hearing and seeing each other are in ``tests/e2e/test_browsers.py``.

Slow (each Chromium takes a second or two to start); skipped where
``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bridge.harness import BridgeProcess
from tests.e2e.browser import Chromium

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium"), reason="needs /usr/bin/chromium"
)

REFUSED = "room or password not accepted"


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


def roster(bridge: BridgeProcess) -> dict[str, Any]:
    key = bridge.demo_secrets()["host key"]
    status, body, _ = bridge.request("GET", "/api/rooms/demo/roster", key=key)
    assert status == 200, body
    return dict(body)


def legs(bridge: BridgeProcess) -> list[dict[str, Any]]:
    return list(roster(bridge)["legs"])


def ended(bridge: BridgeProcess, leg_id: str) -> dict[str, Any]:
    (entry,) = [e for e in roster(bridge)["ended"] if e["leg"] == leg_id]
    return dict(entry)


def test_wrong_password_and_unknown_room_are_refused_alike(
    bridge: BridgeProcess, chromium: Chromium
) -> None:
    password = bridge.demo_secrets()["password"]
    with chromium.browser(tone_hz=440) as tab:
        tab.join(f"{bridge.url}/rooms/demo", "Eve", "a guess", video=False)
        assert tab.wait_state("error", "connected", timeout=10) == "error"
        assert tab.status_text() == REFUSED
        # an unknown room says exactly the same, even with a real password
        tab.join(f"{bridge.url}/rooms/no-such-room", "Eve", password, video=False)
        assert tab.wait_state("error", "connected", timeout=10) == "error"
        assert tab.status_text() == REFUSED
    assert legs(bridge) == []


def test_microphone_only_tab_mutes_and_leaves(
    bridge: BridgeProcess, chromium: Chromium
) -> None:
    password = bridge.demo_secrets()["password"]
    with chromium.browser(tone_hz=660) as tab:
        tab.join(f"{bridge.url}/rooms/demo", "Cy", password, video=False)
        tab.wait_connected(timeout=20)
        (leg,) = wait_until(
            lambda: [
                leg
                for leg in legs(bridge)
                if leg["webrtc"]["audio_frames_received"] > 50
            ],
            10,
        )
        assert leg["display_name"] == "Cy" and leg["kind"] == "browser"
        assert leg["audio"] is True and leg["video"] is False
        assert leg["dtls_srtp_profile"].startswith("SRTP_")
        assert leg["webrtc"]["video_frames_received"] == 0
        # alone in the room, the tab still gets its tile
        assert wait_until(lambda: tab.stats()["framesDecoded"] > 5, 10)

        tab.click("#mute")
        assert wait_until(lambda: legs(bridge)[0]["audio_muted"], 5)
        assert legs(bridge)[0]["audio"] is False

        tab.click("#leave")
        assert wait_until(lambda: not legs(bridge), 5)
        assert ended(bridge, leg["leg"])["ended_reason"] == "left"


def test_closed_tab_is_removed_within_seconds(
    bridge: BridgeProcess, chromium: Chromium
) -> None:
    password = bridge.demo_secrets()["password"]
    with chromium.browser(tone_hz=440) as tab:
        tab.join(f"{bridge.url}/rooms/demo", "Dee", password, video=True)
        tab.wait_connected(timeout=20)
        (leg,) = legs(bridge)
        closed_at = time.monotonic()
        tab.page.close()
        assert wait_until(lambda: not legs(bridge), 10)
        assert time.monotonic() - closed_at < 5
        assert ended(bridge, leg["leg"])["ended_reason"] in (
            "left",
            "signalling closed",
        )
