import json

import numpy as np
import pytest

from sip.protocol import (
    FRAME_BYTES,
    HEADER,
    KIND_CONTROL,
    MAX_CONTROL_BYTES,
    Audio,
    Control,
    Decoder,
    ProtocolError,
    encode_audio,
    encode_control,
)


def drain(decoder: Decoder) -> list:
    out = []
    while (msg := decoder.next_message()) is not None:
        out.append(msg)
    return out


def sample_stream() -> tuple[bytes, list]:
    pcm = np.arange(-160, 160, dtype="<i2").tobytes()
    messages = [
        Control({"type": "dial", "leg": "leg-1", "slot": 7, "uri": "sip:a@b"}),
        Audio(7, pcm),
        Audio(65535, b""),
        Control({"type": "event", "kind": "dtmf", "digit": "#", "text": "ünï"}),
        Audio(0, pcm),
    ]
    return b"".join(m.serialize() for m in messages), messages


def test_round_trip_in_one_chunk() -> None:
    data, messages = sample_stream()
    decoder = Decoder()
    decoder.feed(data)
    assert drain(decoder) == messages
    assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    data, messages = sample_stream()
    decoder = Decoder()
    out = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        out.extend(drain(decoder))
    assert out == messages


def test_odd_chunks() -> None:
    data, messages = sample_stream()
    decoder = Decoder()
    out = []
    for start in range(0, len(data), 333):
        decoder.feed(memoryview(data)[start : start + 333])
        out.extend(drain(decoder))
    assert out == messages


def test_audio_frame_layout() -> None:
    pcm = bytes(range(256)) * 2 + bytes(FRAME_BYTES - 512)
    frame = encode_audio(3, pcm)
    assert frame[:7] == b"A\x00\x00\x02\x82\x00\x03"
    assert frame[7:] == pcm


def test_control_layout() -> None:
    frame = encode_control({"type": "ping"})
    assert frame == b"C\x00\x00\x00\x0f" + b'{"type":"ping"}'


def test_oversize_control_is_fatal() -> None:
    decoder = Decoder()
    decoder.feed(HEADER.pack(KIND_CONTROL, MAX_CONTROL_BYTES + 1))
    with pytest.raises(
        ProtocolError,
        match=r"^control message of 65537 bytes "
        r"exceeds the 65536-byte cap$",
    ):
        decoder.next_message()
    with pytest.raises(ProtocolError, match="^decoder stopped after an earlier error$"):
        decoder.feed(encode_control({"type": "ping"}))


def test_oversize_audio_is_fatal() -> None:
    decoder = Decoder()
    decoder.feed(b"A\x00\x01\x00\x00")
    with pytest.raises(ProtocolError, match="^audio message of 65536 bytes exceeds"):
        decoder.next_message()


def test_encode_caps() -> None:
    with pytest.raises(ProtocolError, match="^control message of .* exceeds"):
        encode_control({"type": "x", "blob": "x" * MAX_CONTROL_BYTES})
    with pytest.raises(ProtocolError, match="^audio frame of 3 bytes is not allowed$"):
        encode_audio(0, b"abc")
    with pytest.raises(ProtocolError, match="^audio slot 65536 is out of range$"):
        encode_audio(65536, b"")
    with pytest.raises(ProtocolError, match="^control message has no string type$"):
        encode_control({"kind": "x"})


def test_garbage_kind_is_fatal() -> None:
    decoder = Decoder()
    decoder.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError, match="^unknown message kind 0x47$"):
        decoder.next_message()
    with pytest.raises(ProtocolError, match="^decoder stopped after an earlier error$"):
        decoder.next_message()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{nope", "control message is not valid JSON"),
        (b"\xff\xfe", "control message is not valid JSON"),
        (b"[1, 2]", "control message is not a JSON object"),
        (b'{"type": 3}', "control message has no string type"),
    ],
)
def test_bad_control_payload_is_skipped(payload: bytes, message: str) -> None:
    decoder = Decoder()
    decoder.feed(HEADER.pack(KIND_CONTROL, len(payload)) + payload)
    decoder.feed(encode_control({"type": "ping"}))
    with pytest.raises(ProtocolError, match=f"^{message}$"):
        decoder.next_message()
    # the stream stays in sync: the next message decodes
    assert drain(decoder) == [Control({"type": "ping"})]


def test_bad_audio_payload_is_skipped() -> None:
    decoder = Decoder()
    decoder.feed(b"A\x00\x00\x00\x01\x00")
    decoder.feed(b"A\x00\x00\x00\x05\x00\x01abc")
    decoder.feed(encode_audio(1, b"ab"))
    with pytest.raises(ProtocolError, match="^audio message of 1 bytes has no slot$"):
        decoder.next_message()
    with pytest.raises(ProtocolError, match="^audio frame of 3 bytes is not whole"):
        decoder.next_message()
    assert drain(decoder) == [Audio(1, b"ab")]


def test_control_type_property() -> None:
    msg = Control(json.loads('{"type": "hangup", "leg": "x"}'))
    assert msg.type == "hangup"
