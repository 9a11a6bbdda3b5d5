"""A stand-in bridge for browser tests and the benchmark.

Serves the join page and the signalling WebSocket over HTTPS on 127.0.0.1 with
a throw-away self-signed certificate, and runs a minimal conference per room
(the real mixer, a 20 ms media clock, voice-switched video). It is not the
bridge: rooms and passwords come from the command line, and
``/debug/rooms/{room}`` tells a test what the bridge heard.

    python -m tests.webrtc.roomserver --room ward-7:secret [--tone ward-7:1000]

prints ``READY <port>`` on stdout once listening, and stops cleanly on SIGTERM
or SIGINT, closing every peer connection before the reactor stops.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import ipaddress
import json
import logging
import math
import os
import resource
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from twisted.internet import asyncioreactor

if __name__ == "__main__":
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    asyncioreactor.install(_loop)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from mixer import AudioMixer  # noqa: E402
from webrtc import ice  # noqa: E402
from webrtc.peer import BrowserLeg  # noqa: E402
from webrtc.switch import VideoSwitch  # noqa: E402
from webrtc.ws import AuthenticationFailed, signalling_resource  # noqa: E402

logger = logging.getLogger("roomserver")

STATIC = Path(__file__).resolve().parents[2] / "bridge" / "static"
FRAME = 960
TICK = 0.020
LATE = 0.010  # a tick starting this late counts as late


def dominant_frequency(pcm: np.ndarray, rate: int = 48000) -> float:
    if len(pcm) < 1024:
        return 0.0
    data = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft((data - data.mean()) * np.hanning(len(data))))
    spectrum[:5] = 0
    return float(np.argmax(spectrum) * rate / len(data))


class Conference:
    """One room: the mixer, a 20 ms clock, and what each leg sent lately."""

    def __init__(self, room: str, tone_hz: float | None = None) -> None:
        self.room = room
        self.mixer = AudioMixer(rate=48000)
        self.legs: dict[str, BrowserLeg] = {}
        self.heard: dict[str, collections.deque[np.ndarray]] = {}
        self.removed: list[dict[str, str]] = []
        self.switch = VideoSwitch()
        self.tone: np.ndarray | None = None
        self.tone_step = 0
        if tone_hz:
            self.mixer.add_leg("tone", 48000)
            n = np.arange(48000)
            self.tone = (6000 * np.sin(2 * math.pi * tone_hz * n / 48000)).astype(
                np.int16
            )
        self.ticks = 0
        self.late_ticks = 0
        self.tick_lateness: collections.deque[float] = collections.deque(maxlen=3000)
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._clock())

    def add_leg(self, leg: BrowserLeg) -> None:
        self.mixer.add_leg(leg.leg_id, 48000)
        self.legs[leg.leg_id] = leg
        self.heard[leg.leg_id] = collections.deque(maxlen=50)
        leg.on_audio = self._on_audio

    def remove_leg(self, leg_id: str, reason: str) -> None:
        if self.legs.pop(leg_id, None) is None:
            return
        self.mixer.remove_leg(leg_id)
        self.removed.append({"leg": leg_id, "reason": reason})

    def _on_audio(self, leg_id: str, pcm: np.ndarray) -> None:
        if leg_id in self.legs:
            self.mixer.push(leg_id, pcm, asyncio.get_running_loop().time())
            self.heard[leg_id].append(pcm)

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            self.ticks += 1
            due = start + self.ticks * TICK
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            lateness = loop.time() - due
            self.tick_lateness.append(lateness)
            if lateness > LATE:
                self.late_ticks += 1
            if lateness > 0.2:
                start += lateness  # a stall: do not burst to catch up
            self._tick(loop.time())

    def _tick(self, now: float) -> None:
        if self.tone is not None:
            offset = (self.tone_step * FRAME) % (48000 - FRAME)
            self.tone_step += 1
            self.mixer.push("tone", self.tone[offset : offset + FRAME], now)
        frames = self.mixer.tick(now)
        for leg_id, pcm in frames.items():
            leg = self.legs.get(leg_id)
            if leg is not None:
                leg.deliver_audio(pcm)
        if self.ticks % 3 == 0:  # video at most every 60 ms
            names = {leg_id: leg.display_name for leg_id, leg in self.legs.items()}
            self.switch.update(
                self.mixer.active_speaker, self.legs.values(), self.legs, names
            )

    def describe(self) -> dict[str, Any]:
        legs = []
        for leg_id, leg in self.legs.items():
            info = leg.roster_info()
            info.update(leg.stats())
            heard = list(self.heard[leg_id])
            info["heard_hz"] = (
                dominant_frequency(np.concatenate(heard)) if heard else 0.0
            )
            delays = list(leg.audio_out.queue_delays)
            info["queue_delay_ms"] = [round(d * 1000, 2) for d in delays[-200:]]
            info["buffered_ms"] = self.mixer.buffered_ms(leg_id)
            legs.append(info)
        return {
            "room": self.room,
            "legs": legs,
            "removed": self.removed,
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "tick_lateness_ms": [round(x * 1000, 2) for x in self.tick_lateness],
            "active_speaker": self.mixer.active_speaker,
        }

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for leg in list(self.legs.values()):
            await leg.close("bridge stopping")


class Directory:
    def __init__(self, passwords: dict[str, str], tones: dict[str, float]) -> None:
        self.passwords = passwords
        self.conferences = {
            room: Conference(room, tones.get(room)) for room in passwords
        }

    def authenticate(self, room: str, password: str, peer_address: str) -> Conference:
        if self.passwords.get(room) != password:
            raise AuthenticationFailed(f"join refused for {peer_address}")
        return self.conferences[room]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path = directory / "key.pem"
    cert_path = directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def build_site(directory: Directory, reactor: Any) -> Any:
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site
    from twisted.web.static import File

    class Debug(Resource):
        isLeaf = True

        def render_GET(self, request: Request) -> bytes:
            room = request.postpath[-1].decode() if request.postpath else ""
            conference = directory.conferences.get(room)
            request.setHeader(b"content-type", b"application/json")
            if conference is None:
                request.setResponseCode(404)
                return b"{}"
            usage = resource.getrusage(resource.RUSAGE_SELF)
            body = conference.describe()
            body["cpu_seconds"] = usage.ru_utime + usage.ru_stime
            return json.dumps(body).encode()

    class Room(Resource):
        def __init__(self, room: str) -> None:
            super().__init__()
            self.putChild(b"ws", signalling_resource(directory, reactor, room))

        def render_GET(self, request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(
                b"content-security-policy",
                b"default-src 'self'; img-src 'self' data:; media-src 'self' blob:",
            )
            return (STATIC / "room.html").read_bytes()

        def getChild(self, path: bytes, request: Request) -> Resource:
            return self if path == b"" else super().getChild(path, request)

    class Rooms(Resource):
        def getChild(self, path: bytes, request: Request) -> Resource:
            room = path.decode("utf-8", "replace")
            if room not in directory.passwords:
                # unknown rooms get a page too: the join is what is refused
                return Room(room)
            return rooms[room]

    rooms = {room: Room(room) for room in directory.passwords}
    root = Resource()
    root.putChild(b"static", File(str(STATIC)))
    root.putChild(b"rooms", Rooms())
    root.putChild(b"debug", Debug())
    return Site(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--room", action="append", default=[], help="ROOM:PASSWORD")
    parser.add_argument("--tone", action="append", default=[], help="ROOM:HZ")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    from twisted.internet import reactor, ssl

    ice.set_media_addresses(["127.0.0.1"])
    passwords = dict(r.split(":", 1) for r in args.room) or {"test": "test"}
    tones = {r: float(hz) for r, hz in (t.split(":", 1) for t in args.tone)}
    directory = Directory(passwords, tones)

    tmp = Path(tempfile.mkdtemp(prefix="roomserver-"))
    cert, key = make_certificate(tmp)
    context = ssl.DefaultOpenSSLContextFactory(str(key), str(cert))
    port = reactor.listenSSL(  # type: ignore[attr-defined]
        args.port, build_site(directory, reactor), context, interface="127.0.0.1"
    )

    async def shutdown() -> None:
        for conference in directory.conferences.values():
            await conference.close()

    def stop(*_: object) -> None:
        d = asyncio.ensure_future(shutdown())
        d.add_done_callback(lambda _: reactor.stop())  # type: ignore[attr-defined]

    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stop))  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(stop))  # type: ignore[attr-defined]
    for conference in directory.conferences.values():
        reactor.callWhenRunning(conference.start)  # type: ignore[attr-defined]
    print(f"READY {port.getHost().port}", flush=True)
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    sys.stdout.flush()
    os._exit(0)  # aiortc's decoder threads are not daemons


if __name__ == "__main__":
    sys.exit(main())


class ServerProcess:
    """Runs this module in a child process; a context manager for tests.

    The child is stopped with SIGTERM (it closes its peers first) and killed
    if it has not exited within ``stop_timeout`` seconds.
    """

    def __init__(
        self,
        rooms: dict[str, str],
        tones: dict[str, float] | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        log_level: str = "WARNING",
    ) -> None:
        self.args = [sys.executable, "-m", "tests.webrtc.roomserver"]
        self.args += [f"--room={room}:{password}" for room, password in rooms.items()]
        self.args += [f"--tone={room}:{hz}" for room, hz in (tones or {}).items()]
        self.args += [f"--log-level={log_level}"]
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: Any = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        import select
        import subprocess

        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=str(root))
        self.process = subprocess.Popen(
            self.args, cwd=root, env=env, stdout=subprocess.PIPE, text=True
        )
        ready, _, _ = select.select([self.process.stdout], [], [], self.start_timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.__exit__()
            raise RuntimeError(f"room server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        import subprocess

        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def debug(self, room: str) -> dict[str, Any]:
        """What the server knows of ``room``: legs, frequencies heard, timing."""
        import ssl
        import urllib.request

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(
            self.url(f"/debug/rooms/{room}"), context=context, timeout=5
        ) as response:
            return dict(json.load(response))
