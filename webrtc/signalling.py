"""Sans-IO parsing and validation of the browser signalling protocol.

The browser and the bridge exchange JSON objects over a WebSocket, one object a
message, each with a ``type`` field. This module turns text into small frozen
dataclasses and back, enforces size and shape limits, and tracks the order in
which messages may arrive. It never touches a socket or a clock.

Browser to bridge:

``join``      ``{"type": "join", "name": str, "password": str, "audio": bool,
              "video": bool}``
``offer``     ``{"type": "offer", "sdp": str}``
``candidate`` ``{"type": "candidate", "candidate": str, "sdpMid": str | null,
              "sdpMLineIndex": int | null}`` (an empty ``candidate`` ends them)
``mute``      ``{"type": "mute", "audio": bool, "video": bool}`` (either or both)
``leave``     ``{"type": "leave"}``

Bridge to browser: ``joined``, ``answer``, ``error`` and ``left`` (see the
``*_message`` functions at the end).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

#: Largest signalling message accepted, in bytes of UTF-8 text.
MAX_MESSAGE_SIZE = 64 * 1024

#: Limits on individual fields.
MAX_NAME_LENGTH = 64
MAX_PASSWORD_LENGTH = 256
MAX_CANDIDATE_LENGTH = 1024
MAX_MID_LENGTH = 32
MAX_MLINE_INDEX = 64


class SignallingError(ValueError):
    """A signalling message was refused; the message says why."""


class MessageTooLarge(SignallingError):
    """The message is over :data:`MAX_MESSAGE_SIZE`."""


class MalformedMessage(SignallingError):
    """The message is not JSON, or not an object with a known ``type``."""


class InvalidField(SignallingError):
    """A field is missing, unexpected, of the wrong type or out of range."""


class OutOfOrder(SignallingError):
    """The message is well formed but not allowed at this point."""


@dataclass(frozen=True)
class Join:
    name: str
    password: str
    audio: bool
    video: bool

    def __repr__(self) -> str:
        # the password never reaches a log line through repr()
        return (
            f"Join(name={self.name!r}, password='***', audio={self.audio}, "
            f"video={self.video})"
        )


@dataclass(frozen=True)
class Offer:
    sdp: str


@dataclass(frozen=True)
class Answer:
    sdp: str


@dataclass(frozen=True)
class Candidate:
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True)
class Mute:
    audio: bool | None
    video: bool | None


@dataclass(frozen=True)
class Leave:
    pass


Message = Join | Offer | Answer | Candidate | Mute | Leave

# field name -> (allowed JSON types, required)
_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "join": {
        "name": ((str,), True),
        "password": ((str,), True),
        "audio": ((bool,), True),
        "video": ((bool,), True),
    },
    "offer": {"sdp": ((str,), True)},
    "answer": {"sdp": ((str,), True)},
    "candidate": {
        "candidate": ((str,), True),
        "sdpMid": ((str, type(None)), False),
        "sdpMLineIndex": ((int, type(None)), False),
        "usernameFragment": ((str, type(None)), False),
    },
    "mute": {"audio": ((bool,), False), "video": ((bool,), False)},
    "leave": {},
}

_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    type(None): "null",
}


def _describe(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in types)


def _check_fields(kind: str, obj: dict[str, Any]) -> None:
    spec = _FIELDS[kind]
    for key in obj:
        if key != "type" and key not in spec:
            raise InvalidField(f"unexpected field {key!r} in {kind!r} message")
    for key, (types, required) in spec.items():
        if key not in obj:
            if required:
                raise InvalidField(f"missing field {key!r} in {kind!r} message")
            continue
        value = obj[key]
        # bool is a subclass of int: an integer field must not take true/false
        ok = isinstance(value, types) and not (
            isinstance(value, bool) and bool not in types
        )
        if not ok:
            raise InvalidField(f"field {key!r} must be {_describe(types)}")


def _check_length(field: str, value: str, low: int, high: int) -> None:
    if not low <= len(value) <= high:
        raise InvalidField(f"field {field!r} must be {low} to {high} characters")


def _check_printable(field: str, value: str) -> None:
    if not value.isprintable():
        raise InvalidField(f"field {field!r} must not contain control characters")


def parse_message(text: str | bytes) -> Message:
    """Parse and validate one signalling message.

    Raises a :class:`SignallingError` subclass whose text names what was wrong.
    """
    if isinstance(text, str):
        size = len(text.encode("utf-8", "surrogatepass"))
    else:
        size = len(text)
    if size > MAX_MESSAGE_SIZE:
        raise MessageTooLarge(
            f"message is {size} bytes, the limit is {MAX_MESSAGE_SIZE}"
        )

    try:
        obj = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise MalformedMessage("message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("message must be a JSON object")
    kind = obj.get("type")
    if kind is None:
        raise MalformedMessage("missing field 'type'")
    if not isinstance(kind, str):
        raise MalformedMessage("field 'type' must be a string")
    if kind not in _FIELDS:
        raise MalformedMessage(f"unknown message type {kind[:32]!r}")
    _check_fields(kind, obj)

    if kind == "join":
        name = obj["name"].strip()
        _check_length("name", name, 1, MAX_NAME_LENGTH)
        _check_printable("name", name)
        _check_length("password", obj["password"], 0, MAX_PASSWORD_LENGTH)
        if not (obj["audio"] or obj["video"]):
            raise InvalidField("at least one of 'audio' and 'video' must be true")
        return Join(name, obj["password"], obj["audio"], obj["video"])

    if kind in ("offer", "answer"):
        sdp = obj["sdp"]
        if not sdp.startswith("v=0"):
            raise InvalidField("field 'sdp' must start with 'v=0'")
        return Offer(sdp) if kind == "offer" else Answer(sdp)

    if kind == "candidate":
        line = obj["candidate"]
        _check_length("candidate", line, 0, MAX_CANDIDATE_LENGTH)
        _check_printable("candidate", line)
        mid = obj.get("sdpMid")
        if mid is not None:
            _check_length("sdpMid", mid, 0, MAX_MID_LENGTH)
            _check_printable("sdpMid", mid)
        index = obj.get("sdpMLineIndex")
        if index is not None and not 0 <= index <= MAX_MLINE_INDEX:
            raise InvalidField(f"field 'sdpMLineIndex' must be 0 to {MAX_MLINE_INDEX}")
        return Candidate(line, mid, index)

    if kind == "mute":
        if "audio" not in obj and "video" not in obj:
            raise InvalidField("'mute' message needs 'audio' or 'video'")
        return Mute(obj.get("audio"), obj.get("video"))

    return Leave()


class State(enum.Enum):
    AWAITING_JOIN = "awaiting-join"
    JOINED = "joined"
    NEGOTIATED = "negotiated"
    CLOSED = "closed"


class SignallingSession:
    """Tracks which messages a browser may send next.

    ``receive`` parses a message and checks it against the session state; the
    adapter reports success with ``joined``, ``answered`` and ``close``.
    A refused message leaves the state unchanged, so the adapter can answer
    with an error and keep going.
    """

    def __init__(self) -> None:
        self.state = State.AWAITING_JOIN
        self.refused = 0

    def receive(self, text: str | bytes) -> Message:
        try:
            message = parse_message(text)
            self._check_order(message)
        except SignallingError:
            self.refused += 1
            raise
        return message

    def _check_order(self, message: Message) -> None:
        if self.state is State.CLOSED:
            raise OutOfOrder("session is closed")
        if isinstance(message, Join):
            if self.state is not State.AWAITING_JOIN:
                raise OutOfOrder("already joined")
            return
        if self.state is State.AWAITING_JOIN and not isinstance(message, Leave):
            raise OutOfOrder(f"{_kind(message)!r} before 'join'")
        if isinstance(message, Offer) and self.state is State.NEGOTIATED:
            # FIXME: renegotiation (adding a camera mid-call) is not supported
            raise OutOfOrder("renegotiation is not supported")
        if isinstance(message, Answer):
            raise OutOfOrder("the bridge sends no offers to answer")

    def joined(self) -> None:
        self.state = State.JOINED

    def answered(self) -> None:
        self.state = State.NEGOTIATED

    def close(self) -> None:
        self.state = State.CLOSED


def _kind(message: Message) -> str:
    return type(message).__name__.lower()


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def joined_message(leg_id: str, room: str) -> str:
    return _dump({"type": "joined", "leg": leg_id, "room": room})


def answer_message(sdp: str) -> str:
    return _dump({"type": "answer", "sdp": sdp})


def error_message(text: str, *, fatal: bool = False) -> str:
    return _dump({"type": "error", "message": text, "fatal": fatal})


def left_message(reason: str) -> str:
    return _dump({"type": "left", "reason": reason})


def state_message(**fields: Any) -> str:
    return _dump({"type": "state", **fields})
