"""A small blocking WebSocket client (RFC 6455) for signalling tests.

Enough to speak to the bridge as a browser's signalling channel does: TLS,
the opening handshake, masked text frames out, text/close frames in.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
from typing import Any

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class WebSocket:
    def __init__(
        self, port: int, path: str, context: ssl.SSLContext, timeout: float = 15
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: https://127.0.0.1:{port}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during handshake")
            head += chunk
        self.status = int(head.split(b" ", 2)[1])
        self.closed = self.status != 101
        self.close_code: int | None = None

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode())

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def _send(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def receive(self) -> dict[str, Any] | None:
        """The next JSON message; None once the server closed the socket."""
        while True:
            try:
                first, second = self._read(2)
            except (ConnectionError, OSError):
                self.closed = True
                return None
            opcode = first & 0x0F
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(length)
            if opcode == OP_TEXT:
                return json.loads(payload)  # type: ignore[no-any-return]
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.closed = True
                if len(payload) >= 2:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                return None

    def close(self) -> None:
        try:
            self._send(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
