"""An aiortc client over the real signalling WebSocket (TLS) to the stand-in
bridge in its own process: Twisted's asyncioreactor, the mixer and the legs
together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.webrtc.client import Client, dominant_frequency, wait_for
from tests.webrtc.roomserver import ServerProcess
from tests.webrtc.wsclient import SignallingClient


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess({"ward-1": "pw1"}, {"ward-1": 1000}) as running:
        yield running


async def join(server: ServerProcess, password: str = "pw1") -> SignallingClient:
    ws = SignallingClient()
    await ws.connect("127.0.0.1", server.port, "/rooms/ward-1/ws")
    ws.send(
        {
            "type": "join",
            "name": "Bot",
            "password": password,
            "audio": True,
            "video": True,
        }
    )
    return ws


def test_aiortc_client_through_signalling(server: ServerProcess, run) -> None:
    async def scenario() -> None:
        ws = await join(server)
        joined = await ws.receive()
        assert joined is not None and joined["type"] == "joined"

        # a bad message is answered and the session goes on
        ws.send_text('{"type": "offer"}')
        error = await ws.receive()
        assert error == {
            "type": "error",
            "message": "missing field 'sdp' in 'offer' message",
            "fatal": False,
        }

        client = Client(tone_hz=523)

        async def answer(offer: str) -> str:
            ws.send({"type": "offer", "sdp": offer})
            message = await ws.receive()
            assert message is not None and message["type"] == "answer"
            return str(message["sdp"])

        try:
            await client.connect(answer)
            assert await wait_for(lambda: len(client.received) > 100, 15)
            assert dominant_frequency(client.audio(1.0)) == pytest.approx(1000, abs=5)

            def bridge_heard() -> float:
                legs = server.debug("ward-1")["legs"]
                return float(legs[0]["heard_hz"]) if legs else 0.0

            assert await wait_for(lambda: bridge_heard() > 0, 10)
            assert bridge_heard() == pytest.approx(523, abs=5)

            ws.send({"type": "leave"})
            left = await ws.receive()
            assert left == {"type": "left", "reason": "left"}
            await asyncio.wait_for(ws.closed.wait(), 5)
            assert ws.close_code == 1000
            assert await wait_for(
                lambda: client.pc.connectionState in ("closed", "failed"), 10
            )
            assert server.debug("ward-1")["legs"] == []
        finally:
            await client.close()
            await ws.close()

    run(scenario, 45)


def test_wrong_password_closes_with_generic_error(server: ServerProcess, run) -> None:
    async def scenario() -> None:
        ws = await join(server, password="wrong")
        assert await ws.receive() == {
            "type": "error",
            "message": "room or password not accepted",
            "fatal": True,
        }
        assert await ws.receive() == {"type": "left", "reason": "join refused"}
        await asyncio.wait_for(ws.closed.wait(), 5)
        assert ws.close_code == 1008
        await ws.close()

    run(scenario, 20)
