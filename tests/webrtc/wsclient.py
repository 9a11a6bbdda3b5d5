"""A small asyncio WebSocket client (wsproto over TLS), for tests and the bench.

It speaks the browser's half of the signalling protocol: connect, send JSON,
receive JSON. Certificates are not checked: the servers here are self-signed
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)


class SignallingClient:
    def __init__(self) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._text = ""
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    async def connect(self, host: str, port: int, path: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self._reader, self._writer = await asyncio.open_connection(
            host, port, ssl=context
        )
        self._writer.write(self._ws.send(Request(host=f"{host}:{port}", target=path)))
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._read(opened))
        await opened

    async def _read(self, opened: asyncio.Future[None]) -> None:
        assert self._reader is not None and self._writer is not None
        try:
            while True:
                data = await self._reader.read(65536)
                self._ws.receive_data(data or None)
                for event in self._ws.events():
                    if isinstance(event, AcceptConnection):
                        opened.set_result(None)
                    elif isinstance(event, RejectConnection):
                        opened.set_exception(ConnectionError("websocket refused"))
                        return
                    elif isinstance(event, TextMessage):
                        self._text += event.data
                        if event.message_finished:
                            await self._messages.put(json.loads(self._text))
                            self._text = ""
                    elif isinstance(event, Ping):
                        self._writer.write(self._ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        self.close_code = event.code
                        return
                    elif isinstance(event, Message):
                        pass
                if not data:
                    return
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            if not opened.done():
                opened.set_exception(ConnectionError("connection closed"))
            self.closed.set()
            await self._messages.put(None)

    def send(self, message: dict[str, Any]) -> None:
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        assert self._writer is not None
        self._writer.write(self._ws.send(TextMessage(data=text)))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next message, or None once the connection has closed."""
        return await asyncio.wait_for(self._messages.get(), timeout)

    async def close(self) -> None:
        if self._writer is None:
            return
        if not self.closed.is_set():
            try:
                self._writer.write(self._ws.send(CloseConnection(code=1000)))
            except Exception:  # noqa: BLE001 - already closing
                pass
        self._writer.close()
        if self._task is not None:
            self._task.cancel()
        self._writer = None
