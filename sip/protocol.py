"""Framing for the pipe between the main process and a SIP worker.

One byte stream carries two kinds of message, each behind a five-byte header
(kind, then payload length as a big-endian unsigned 32-bit integer):

- ``C`` control: a UTF-8 JSON object with a string ``type`` member;
- ``A`` audio: a big-endian unsigned 16-bit slot number, then s16le mono PCM
  (16 kHz, normally 20 ms = 320 samples).

The code here is sans-IO: bytes go in, :class:`Control` and :class:`Audio`
come out.  A framing error (unknown kind, oversize payload) desynchronises the
stream, so the decoder refuses to go on after one; a well-framed but invalid
payload (bad JSON, odd PCM length) is consumed and reported, and decoding
resumes with the next message.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

SAMPLE_RATE = 16000
FRAME_SAMPLES = 320
FRAME_BYTES = FRAME_SAMPLES * 2

KIND_CONTROL = 0x43  # "C"
KIND_AUDIO = 0x41  # "A"

HEADER = struct.Struct(">BI")
SLOT = struct.Struct(">H")
MAX_SLOT = 0xFFFF

#: caps on payloads; a control message is small JSON, audio at most 60 ms
MAX_CONTROL_BYTES = 64 * 1024
MAX_PCM_BYTES = 3 * FRAME_BYTES


class ProtocolError(ValueError):
    """The peer sent something this framing does not allow."""


@dataclass(frozen=True)
class Control:
    """A control message: a JSON object whose ``type`` names it."""

    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    def serialize(self) -> bytes:
        return encode_control(self.body)


@dataclass(frozen=True)
class Audio:
    """One PCM frame for (or from) the call in ``slot``."""

    slot: int
    pcm: bytes

    def serialize(self) -> bytes:
        return encode_audio(self.slot, self.pcm)


Message = Control | Audio


def encode_control(body: dict[str, Any]) -> bytes:
    """Frame a control message; raises :class:`ProtocolError` if it cannot."""
    if not isinstance(body.get("type"), str):
        raise ProtocolError("control message has no string type")
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_CONTROL_BYTES:
        raise ProtocolError(
            f"control message of {len(payload)} bytes exceeds the "
            f"{MAX_CONTROL_BYTES}-byte cap"
        )
    return HEADER.pack(KIND_CONTROL, len(payload)) + payload


def encode_audio(slot: int, pcm: bytes | bytearray | memoryview) -> bytes:
    """Frame one PCM frame for ``slot``."""
    if not 0 <= slot <= MAX_SLOT:
        raise ProtocolError(f"audio slot {slot} is out of range")
    size = len(pcm)
    if size % 2 or size > MAX_PCM_BYTES:
        raise ProtocolError(f"audio frame of {size} bytes is not allowed")
    return b"".join((HEADER.pack(KIND_AUDIO, SLOT.size + size), SLOT.pack(slot), pcm))


class Decoder:
    """Turns a byte stream, fed in chunks of any size, into messages.

    Call :meth:`feed` with whatever arrived, then :meth:`next_message` until it
    returns ``None``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into a message."""
        return len(self._buffer) - self._offset

    @property
    def failed(self) -> bool:
        """True once a framing error has made the stream unusable."""
        return self._failed is not None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed is not None:
            raise ProtocolError("decoder stopped after an earlier error")
        self._buffer += data

    def next_message(self) -> Message | None:
        if self._failed is not None:
            raise ProtocolError("decoder stopped after an earlier error")
        buf = self._buffer
        start = self._offset
        if len(buf) - start < HEADER.size:
            self._compact()
            return None

        kind, length = HEADER.unpack_from(buf, start)
        if kind == KIND_CONTROL:
            if length > MAX_CONTROL_BYTES:
                self._fail(
                    f"control message of {length} bytes exceeds the "
                    f"{MAX_CONTROL_BYTES}-byte cap"
                )
        elif kind == KIND_AUDIO:
            if length > SLOT.size + MAX_PCM_BYTES:
                self._fail(
                    f"audio message of {length} bytes exceeds the "
                    f"{SLOT.size + MAX_PCM_BYTES}-byte cap"
                )
        else:
            self._fail(f"unknown message kind 0x{kind:02x}")

        end = start + HEADER.size + length
        if len(buf) < end:
            self._compact()
            return None
        payload = bytes(buf[start + HEADER.size : end])
        self._offset = end

        # the frame is consumed: errors below leave the stream in sync
        if kind == KIND_AUDIO:
            return _parse_audio(payload)
        return _parse_control(payload)

    def _compact(self) -> None:
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0

    def _fail(self, message: str) -> None:
        self._failed = message
        self._buffer.clear()
        self._offset = 0
        raise ProtocolError(message)


def _parse_audio(payload: bytes) -> Audio:
    if len(payload) < SLOT.size:
        raise ProtocolError(f"audio message of {len(payload)} bytes has no slot")
    if (len(payload) - SLOT.size) % 2:
        raise ProtocolError(
            f"audio frame of {len(payload) - SLOT.size} bytes is not whole samples"
        )
    (slot,) = SLOT.unpack_from(payload)
    return Audio(slot, payload[SLOT.size :])


def _parse_control(payload: bytes) -> Control:
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("control message is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("control message is not a JSON object")
    if not isinstance(body.get("type"), str):
        raise ProtocolError("control message has no string type")
    return Control(body)
