"""aiortc peers in a room of the real bridge (``python -m bridge serve``).

Each peer sends its own tone and video through the real signalling WebSocket,
ICE, DTLS-SRTP, the conference's mixer and media clock; each must hear the
other's tone and not its own, and receive video. Joining with a right or wrong
password, a closed signalling socket and malformed messages before a join are
covered by ``tests/bridge/test_join.py``; here a refused message comes in the
middle of a live session.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.bridge.harness import BridgeProcess
from tests.e2e.browser import tone_power
from tests.webrtc.client import Client, dominant_frequency, wait_for
from tests.webrtc.wsclient import SignallingClient

ROOM = "demo"
ANN_HZ = 523.0
BOB_HZ = 784.0


async def roster(bridge: BridgeProcess) -> dict[str, Any]:
    key = bridge.demo_secrets()["host key"]
    status, body, _ = await asyncio.to_thread(
        bridge.request, "GET", f"/api/rooms/{ROOM}/roster", None, key
    )
    assert status == 200, body
    return dict(body)


async def signalling(bridge: BridgeProcess, name: str, password: str) -> Any:
    ws = SignallingClient()
    await ws.connect("127.0.0.1", bridge.port, f"/rooms/{ROOM}/ws")
    ws.send(
        {
            "type": "join",
            "name": name,
            "password": password,
            "audio": True,
            "video": True,
        }
    )
    return ws, await ws.receive()


def answerer(ws: SignallingClient) -> Any:
    async def answer(offer: str) -> str:
        ws.send({"type": "offer", "sdp": offer})
        message = await ws.receive(20)
        assert message is not None and message["type"] == "answer", message
        return str(message["sdp"])

    return answer


def test_two_peers_hear_each_other_not_themselves(bridge: BridgeProcess, run) -> None:
    password = bridge.demo_secrets()["password"]

    async def scenario() -> None:
        ann_ws, ann_joined = await signalling(bridge, "Ann", password)
        bob_ws, bob_joined = await signalling(bridge, "Bob", password)
        assert ann_joined["type"] == "joined" and bob_joined["type"] == "joined"
        ann, bob = Client(tone_hz=ANN_HZ), Client(tone_hz=BOB_HZ)
        try:
            # a bad message mid-session is answered, and the session goes on
            ann_ws.send_text('{"type": "offer"}')
            assert await ann_ws.receive() == {
                "type": "error",
                "message": "missing field 'sdp' in 'offer' message",
                "fatal": False,
            }

            await ann.connect(answerer(ann_ws))
            await bob.connect(answerer(bob_ws))
            assert await wait_for(
                lambda: len(ann.received) > 150 and len(bob.received) > 150, 20
            )
            await asyncio.sleep(1.0)  # past the start of the mix

            # each hears the other's tone and not its own (the N-1 mix)
            ann_pcm, bob_pcm = ann.audio(1.0), bob.audio(1.0)
            assert dominant_frequency(ann_pcm) == pytest.approx(BOB_HZ, abs=5)
            assert dominant_frequency(bob_pcm) == pytest.approx(ANN_HZ, abs=5)
            assert tone_power(ann_pcm, ANN_HZ) < 0.01
            assert tone_power(bob_pcm, BOB_HZ) < 0.01

            # video both ways: each sees the other's camera
            assert await wait_for(
                lambda: ann.video_frames > 10 and bob.video_frames > 10, 10
            )
            for client in (ann, bob):
                assert client.last_video is not None
                assert (client.last_video.width, client.last_video.height) == (
                    640,
                    480,
                )

            legs = {leg["display_name"]: leg for leg in (await roster(bridge))["legs"]}
            assert set(legs) == {"Ann", "Bob"}
            assert legs["Ann"]["leg"] == ann_joined["leg"]
            for leg in legs.values():
                assert leg["kind"] == "browser" and leg["in_mix"] is True
                assert leg["connection_state"] == "connected"
                assert leg["dtls_srtp_profile"].startswith("SRTP_")
                assert leg["audio"] is True and leg["video"] is True
                assert leg["webrtc"]["audio_frames_received"] > 100
                assert leg["webrtc"]["video_frames_received"] > 10
                assert leg["webrtc"]["audio_frames_sent"] > 100
                assert leg["media"]["frames_received"] > 100  # into the mixer

            # Ann leaves: she is told, her socket closes, the roster shows it
            ann_ws.send({"type": "leave"})
            assert await ann_ws.receive() == {"type": "left", "reason": "left"}
            await asyncio.wait_for(ann_ws.closed.wait(), 5)
            assert ann_ws.close_code == 1000
            assert await wait_for(
                lambda: ann.pc.connectionState in ("closed", "failed"), 10
            )
            after = await roster(bridge)
            assert [leg["display_name"] for leg in after["legs"]] == ["Bob"]
            (ended,) = [e for e in after["ended"] if e["leg"] == ann_joined["leg"]]
            assert ended["ended_reason"] == "left"
        finally:
            await asyncio.gather(ann.close(), bob.close())
            await asyncio.gather(ann_ws.close(), bob_ws.close())

    run(scenario, 60)


def test_refused_join_is_told_and_closed_with_policy_code(
    bridge: BridgeProcess, run
) -> None:
    async def scenario() -> None:
        ws, reply = await signalling(bridge, "Eve", "not the password")
        try:
            assert reply == {
                "type": "error",
                "message": "room or password not accepted",
                "fatal": True,
            }
            assert await ws.receive() == {"type": "left", "reason": "join refused"}
            await asyncio.wait_for(ws.closed.wait(), 5)
            assert ws.close_code == 1008
        finally:
            await ws.close()

    run(scenario, 30)
