"""Parsing and ordering of signalling messages."""

from __future__ import annotations

import json

import pytest

from webrtc import signalling as sig

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def dump(**fields: object) -> str:
    return json.dumps(fields)


def test_join_round_trip() -> None:
    message = sig.parse_message(
        dump(type="join", name="  Dr Who ", password="s3cret", audio=True, video=False)
    )
    assert message == sig.Join("Dr Who", "s3cret", True, False)
    assert "s3cret" not in repr(message)


def test_offer_candidate_mute_leave() -> None:
    assert sig.parse_message(dump(type="offer", sdp=SDP)) == sig.Offer(SDP)
    candidate = sig.parse_message(
        dump(
            type="candidate",
            candidate="candidate:1 1 udp 1 127.0.0.1 5000 typ host",
            sdpMid="0",
            sdpMLineIndex=0,
        )
    )
    assert candidate == sig.Candidate(
        "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "0", 0
    )
    assert sig.parse_message(dump(type="mute", audio=True)) == sig.Mute(True, None)
    assert sig.parse_message('{"type":"leave"}') == sig.Leave()


def test_bytes_are_accepted() -> None:
    assert sig.parse_message(b'{"type":"leave"}') == sig.Leave()


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("{", sig.MalformedMessage, "message is not valid JSON"),
        (b"\xff\xfe", sig.MalformedMessage, "message is not valid JSON"),
        ("[1, 2]", sig.MalformedMessage, "message must be a JSON object"),
        ('"join"', sig.MalformedMessage, "message must be a JSON object"),
        ("{}", sig.MalformedMessage, "missing field 'type'"),
        ('{"type": 5}', sig.MalformedMessage, "field 'type' must be a string"),
        ('{"type": "hello"}', sig.MalformedMessage, "unknown message type 'hello'"),
        (
            dump(type="join", name="a", password="p", audio=True),
            sig.InvalidField,
            "missing field 'video' in 'join' message",
        ),
        (
            dump(type="join", name=5, password="p", audio=True, video=True),
            sig.InvalidField,
            "field 'name' must be a string",
        ),
        (
            dump(type="join", name="a", password="p", audio=1, video=True),
            sig.InvalidField,
            "field 'audio' must be a boolean",
        ),
        (
            dump(type="join", name=" ", password="p", audio=True, video=True),
            sig.InvalidField,
            "field 'name' must be 1 to 64 characters",
        ),
        (
            dump(type="join", name="a" * 65, password="p", audio=True, video=True),
            sig.InvalidField,
            "field 'name' must be 1 to 64 characters",
        ),
        (
            dump(type="join", name="a\u0007b", password="p", audio=True, video=True),
            sig.InvalidField,
            "field 'name' must not contain control characters",
        ),
        (
            dump(type="join", name="a", password="p" * 257, audio=True, video=True),
            sig.InvalidField,
            "field 'password' must be 0 to 256 characters",
        ),
        (
            dump(type="join", name="a", password="p", audio=False, video=False),
            sig.InvalidField,
            "at least one of 'audio' and 'video' must be true",
        ),
        (
            dump(type="leave", extra=1),
            sig.InvalidField,
            "unexpected field 'extra' in 'leave' message",
        ),
        (
            dump(type="offer", sdp=None),
            sig.InvalidField,
            "field 'sdp' must be a string",
        ),
        (
            dump(type="offer", sdp="hello"),
            sig.InvalidField,
            "field 'sdp' must start with 'v=0'",
        ),
        (
            dump(type="candidate", candidate="x", sdpMLineIndex=True),
            sig.InvalidField,
            "field 'sdpMLineIndex' must be an integer or null",
        ),
        (
            dump(type="candidate", candidate="x", sdpMLineIndex=99),
            sig.InvalidField,
            "field 'sdpMLineIndex' must be 0 to 64",
        ),
        (
            dump(type="mute"),
            sig.InvalidField,
            "'mute' message needs 'audio' or 'video'",
        ),
    ],
)
def test_bad_messages(text: str | bytes, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        sig.parse_message(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_oversize() -> None:
    text = dump(type="offer", sdp="v=0" + "x" * sig.MAX_MESSAGE_SIZE)
    with pytest.raises(sig.MessageTooLarge) as info:
        sig.parse_message(text)
    assert str(info.value) == f"message is {len(text)} bytes, the limit is 65536"


def test_oversize_counts_utf8_bytes() -> None:
    # 30,000 two-byte characters: under the limit in characters, over in bytes
    text = dump(type="offer", sdp="v=0" + "\u00e9" * 33000)
    with pytest.raises(sig.MessageTooLarge):
        sig.parse_message(text)


def test_long_unknown_type_is_cut() -> None:
    with pytest.raises(sig.MalformedMessage) as info:
        sig.parse_message(dump(type="x" * 100))
    assert str(info.value) == f"unknown message type {'x' * 32!r}"


def test_session_order() -> None:
    session = sig.SignallingSession()
    with pytest.raises(sig.OutOfOrder, match="^'offer' before 'join'$"):
        session.receive(dump(type="offer", sdp=SDP))
    assert session.state is sig.State.AWAITING_JOIN

    join = dump(type="join", name="a", password="", audio=True, video=True)
    assert isinstance(session.receive(join), sig.Join)
    session.joined()
    with pytest.raises(sig.OutOfOrder, match="^already joined$"):
        session.receive(join)

    assert isinstance(session.receive(dump(type="offer", sdp=SDP)), sig.Offer)
    session.answered()
    with pytest.raises(sig.OutOfOrder, match="^renegotiation is not supported$"):
        session.receive(dump(type="offer", sdp=SDP))
    with pytest.raises(sig.OutOfOrder, match="^the bridge sends no offers"):
        session.receive(dump(type="answer", sdp=SDP))
    assert session.refused == 4

    session.close()
    with pytest.raises(sig.OutOfOrder, match="^session is closed$"):
        session.receive('{"type":"leave"}')


def test_leave_before_join_is_allowed() -> None:
    session = sig.SignallingSession()
    assert session.receive('{"type":"leave"}') == sig.Leave()


def test_outgoing_messages() -> None:
    assert json.loads(sig.joined_message("web-1", "r")) == {
        "type": "joined",
        "leg": "web-1",
        "room": "r",
    }
    assert json.loads(sig.answer_message(SDP)) == {"type": "answer", "sdp": SDP}
    assert json.loads(sig.error_message("bad", fatal=True)) == {
        "type": "error",
        "message": "bad",
        "fatal": True,
    }
    assert json.loads(sig.left_message("left")) == {"type": "left", "reason": "left"}
