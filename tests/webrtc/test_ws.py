"""The signalling adapter, driven message by message with a fake transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.python.failure import Failure

from webrtc import signalling as sig
from webrtc import ws
from webrtc.peer import OfferRefused

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
JOIN = json.dumps(
    {"type": "join", "name": "Ann", "password": "pw", "audio": True, "video": False}
)


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.pings = 0
        self.closed_with: int | None = None

    def sendTextMessage(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def sendBytesMessage(self, data: bytes) -> None:
        raise AssertionError("no bytes expected")

    def ping(self, payload: bytes = b"") -> None:
        self.pings += 1

    def loseConnection(self, code: int = 1000) -> None:
        self.closed_with = code


class FakeLeg:
    def __init__(self, leg_id: str, join: sig.Join, peer: str) -> None:
        self.leg_id = leg_id
        self.join = join
        self.peer = peer
        self.on_ended = None
        self.closed: list[str] = []
        self.muted: tuple[bool | None, bool | None] | None = None
        self.candidates: list[tuple[str, str | None, int | None]] = []
        self.refuse = False

    async def accept_offer(self, sdp: str) -> str:
        if self.refuse:
            raise OfferRefused("offer refused: no audio section")
        return SDP + "a=answer\r\n"

    async def add_candidate(
        self, line: str, mid: str | None, index: int | None
    ) -> None:
        self.candidates.append((line, mid, index))

    def set_muted(self, audio: bool | None = None, video: bool | None = None) -> None:
        self.muted = (audio, video)

    async def close(self, reason: str = "closed") -> None:
        self.closed.append(reason)


class FakeConference:
    def __init__(self) -> None:
        self.legs: dict[str, FakeLeg] = {}
        self.removed: list[tuple[str, str]] = []

    def add_leg(self, leg: FakeLeg) -> None:
        self.legs[leg.leg_id] = leg

    def remove_leg(self, leg_id: str, reason: str) -> None:
        self.removed.append((leg_id, reason))
        self.legs.pop(leg_id, None)


class FakeDirectory:
    def __init__(self, deferred: bool = False) -> None:
        self.conference = FakeConference()
        self.calls: list[tuple[str, str, str]] = []
        self.deferred = deferred

    def authenticate(self, room: str, password: str, peer: str) -> Any:
        self.calls.append((room, password, peer))
        if room != "ward-7" or password != "pw":
            if self.deferred:
                return defer.fail(ws.AuthenticationFailed("bad password"))
            raise ws.AuthenticationFailed("bad password")
        if self.deferred:
            return defer.succeed(self.conference)
        return self.conference


class Harness:
    def __init__(self, room: str = "ward-7", deferred: bool = False) -> None:
        self.clock = task.Clock()
        self.directory = FakeDirectory(deferred)
        self.transport = FakeTransport()
        self.protocol = ws.SignallingProtocol(
            self.directory,
            room,
            "127.0.0.1",
            self.clock,
            FakeLeg,  # type: ignore[arg-type]
        )
        self.protocol.negotiationStarted(self.transport)  # type: ignore[arg-type]
        self.protocol.negotiationFinished()

    def send(self, text: str) -> None:
        self.protocol.textMessageReceived(text)

    @property
    def leg(self) -> FakeLeg:
        assert self.protocol.leg is not None
        return self.protocol.leg  # type: ignore[return-value]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("deferred", [False, True])
def test_join_offer_leave(run, deferred: bool) -> None:
    async def scenario() -> None:
        h = Harness(deferred=deferred)
        h.send(JOIN)
        assert h.directory.calls == [("ward-7", "pw", "127.0.0.1")]
        joined = h.transport.sent[-1]
        assert joined["type"] == "joined" and joined["room"] == "ward-7"
        leg = h.leg
        assert joined["leg"] == leg.leg_id and leg.leg_id.startswith("web-")
        assert leg.join == sig.Join("Ann", "pw", True, False)
        assert h.directory.conference.legs == {leg.leg_id: leg}

        h.send(json.dumps({"type": "offer", "sdp": SDP}))
        await settle()
        assert h.transport.sent[-1] == {"type": "answer", "sdp": SDP + "a=answer\r\n"}

        h.send(json.dumps({"type": "candidate", "candidate": "", "sdpMid": "0"}))
        h.send(json.dumps({"type": "mute", "audio": True}))
        await settle()
        assert leg.candidates == [("", "0", None)]
        assert leg.muted == (True, None)

        h.send('{"type": "leave"}')
        await settle()
        assert h.directory.conference.removed == [(leg.leg_id, "left")]
        assert leg.closed == ["left"]
        assert h.transport.sent[-1] == {"type": "left", "reason": "left"}
        assert h.transport.closed_with == 1000

        # the socket closing afterwards changes nothing
        h.protocol.connectionLost(Failure(ConnectionError("gone")))
        await settle()
        assert h.directory.conference.removed == [(leg.leg_id, "left")]

    run(scenario, 5)


@pytest.mark.parametrize(("room", "password"), [("ward-7", "nope"), ("ward-9", "pw")])
@pytest.mark.parametrize("deferred", [False, True])
def test_refused_join_says_nothing_more(
    room: str, password: str, deferred: bool
) -> None:
    h = Harness(room=room, deferred=deferred)
    h.send(JOIN.replace('"pw"', json.dumps(password)))
    assert h.transport.sent == [
        {"type": "error", "message": "room or password not accepted", "fatal": True},
        {"type": "left", "reason": "join refused"},
    ]
    assert h.transport.closed_with == 1008
    assert h.protocol.leg is None


def test_bad_messages_answered_and_session_goes_on(run) -> None:
    async def scenario() -> None:
        h = Harness()
        h.send("{nope")
        h.send('{"type": "dance"}')
        h.send(json.dumps({"type": "offer", "sdp": SDP}))
        h.protocol.bytesMessageReceived(b"\x00\x01")
        assert [m["message"] for m in h.transport.sent] == [
            "message is not valid JSON",
            "unknown message type 'dance'",
            "'offer' before 'join'",
            "binary messages are not accepted",
        ]
        assert all(m["type"] == "error" and not m["fatal"] for m in h.transport.sent)
        assert h.transport.closed_with is None

        h.send(JOIN)
        assert h.transport.sent[-1]["type"] == "joined"
        h.send(json.dumps({"type": "offer", "sdp": SDP + "x" * 70000}))
        assert h.transport.sent[-1]["message"].startswith("message is 700")
        h.protocol.connectionLost(Failure(ConnectionError("gone")))
        await settle()

    run(scenario, 5)


def test_full_room_refuses_leg(run) -> None:
    async def scenario() -> None:
        h = Harness()

        def full(leg: FakeLeg) -> None:
            raise RuntimeError("room 'ward-7' is full (2 participants)")

        h.directory.conference.add_leg = full  # type: ignore[method-assign]
        h.send(JOIN)
        await settle()
        assert h.transport.sent == [
            {
                "type": "error",
                "message": "the room cannot take another participant now",
                "fatal": True,
            },
            {"type": "left", "reason": "not added"},
        ]
        assert h.transport.closed_with == 1008
        assert h.protocol.leg is None

    run(scenario, 5)


def test_too_many_refused_messages_close() -> None:
    h = Harness()
    for _ in range(ws.MAX_REFUSED + 1):
        h.send("[]")
    assert h.transport.closed_with == 1008
    assert h.transport.sent[-1] == {
        "type": "left",
        "reason": "too many refused messages",
    }


def test_offer_refused_ends_leg(run) -> None:
    async def scenario() -> None:
        h = Harness()
        h.send(JOIN)
        h.leg.refuse = True
        h.send(json.dumps({"type": "offer", "sdp": SDP}))
        await settle()
        assert h.transport.sent[-2] == {
            "type": "error",
            "message": "offer refused: no audio section",
            "fatal": True,
        }
        assert h.transport.closed_with == 1008
        assert h.leg.closed == ["offer refused"]

    run(scenario, 5)


def test_tab_closed_removes_leg(run) -> None:
    async def scenario() -> None:
        h = Harness()
        h.send(JOIN)
        leg_id = h.leg.leg_id
        h.protocol.connectionLost(Failure(ConnectionError("gone")))
        await settle()
        assert h.directory.conference.removed == [(leg_id, "signalling closed")]
        assert h.leg.closed == ["signalling closed"]
        assert not h.clock.getDelayedCalls()

    run(scenario, 5)


def test_silent_browser_times_out(run) -> None:
    async def scenario() -> None:
        h = Harness()
        h.send(JOIN)
        # pongs keep it alive
        for _ in range(10):
            h.clock.advance(ws.PING_INTERVAL)
            h.protocol.pongReceived(b"cb")
        assert h.transport.closed_with is None and h.transport.pings == 10
        # then the network goes away
        h.clock.advance(ws.PING_INTERVAL)
        h.clock.advance(ws.PING_INTERVAL)
        h.clock.advance(ws.PING_INTERVAL)
        assert h.transport.closed_with is None
        h.clock.advance(ws.PING_INTERVAL)
        await settle()
        assert h.transport.closed_with == 1008
        assert h.directory.conference.removed == [(h.leg.leg_id, "signalling timeout")]

    run(scenario, 5)


def test_join_timeout() -> None:
    h = Harness()
    for _ in range(int(ws.JOIN_TIMEOUT / ws.PING_INTERVAL)):
        h.clock.advance(ws.PING_INTERVAL)
        h.protocol.pongReceived(b"")
    assert h.transport.sent[-1] == {"type": "left", "reason": "no join"}
    assert h.transport.closed_with == 1008


def test_leg_failure_ends_signalling(run) -> None:
    async def scenario() -> None:
        h = Harness()
        h.send(JOIN)
        assert h.leg.on_ended is not None
        h.leg.on_ended(h.leg.leg_id, "media timeout")
        await settle()
        assert h.transport.sent[-1] == {"type": "left", "reason": "media timeout"}
        assert h.directory.conference.removed == [(h.leg.leg_id, "media timeout")]
        assert h.transport.closed_with == 1000

    run(scenario, 5)


def test_room_from_path() -> None:
    assert ws.room_from_path(b"/rooms/ward-7/ws") == "ward-7"
    assert ws.room_from_path(b"/rooms/ward%207/ws?x=1") == "ward 7"
    for bad in (b"/rooms//ws", b"/rooms/a/b/ws", b"/ws", b"/rooms/a/wss"):
        with pytest.raises(ValueError, match=r"^path is not /rooms/\{room\}/ws$"):
            ws.room_from_path(bad)


class SlowClosingLeg(FakeLeg):
    """A leg whose peer connection takes until ``release`` is set to close."""

    release: asyncio.Event

    async def close(self, reason: str = "closed") -> None:
        await self.release.wait()
        self.closed.append(reason)


def test_shutdown_waits_for_legs_still_closing(run) -> None:
    async def scenario() -> None:
        clock = task.Clock()
        SlowClosingLeg.release = asyncio.Event()
        directory = FakeDirectory()
        factory = ws.SignallingFactory(directory, clock, "ward-7", SlowClosingLeg)  # type: ignore[arg-type]
        request = type("Request", (), {"getClientAddress": lambda self: None})()
        protocol = factory.buildProtocol(request)  # type: ignore[arg-type]
        protocol.negotiationStarted(FakeTransport())  # type: ignore[arg-type]
        protocol.negotiationFinished()
        protocol.textMessageReceived(JOIN)
        leg = protocol.leg
        assert leg is not None

        # the tab goes away: the leg is out of the room, its close under way
        protocol.connectionLost(Failure(ConnectionError("gone")))
        assert directory.conference.legs == {}
        assert len(factory.closing) == 1
        done = factory.wait_closed()
        await settle()
        assert not done.called

        SlowClosingLeg.release.set()
        await settle()
        assert done.called and factory.closing == set()
        assert leg.closed == ["signalling closed"]  # type: ignore[attr-defined]
        assert factory.wait_closed().called  # nothing left to wait for

    run(scenario, 5)
