"""Benchmark: N browser-like aiortc peers in one room of the real bridge.

Starts ``python -m bridge serve`` in a subprocess (a temporary config: port 0,
a temporary state directory, SIP off), joins N peers to its demo room through
the real signalling WebSocket with the room's password, and measures the
bridge while they talk. Each peer sends Opus audio and, unless
``--audio-only``, 640x480 VP8 video at 15 fps, both encoded once before the run
and replayed in a loop; the peers receive the mix and the switched video but
do not decode it, so they cost the machine little besides their packet path.

    python scripts/bench_browsers.py --peers 4 [--audio-only] [--runs 3] --json

Figures (with ``--runs`` above 1, each is the median over the runs; every run
starts a fresh bridge):

- ``cpu_percent``: user+system CPU of the bridge's processes (its PID and any
  children), from ``/proc/PID/stat``, over the measuring window, in percent of
  one core;
- ``late_frames_percent``: the share of audio frames through the bridge in
  the window that were late, both ways. Out (``late_out_percent``, the
  roster's per-leg ``webrtc`` counters): frames that went to a peer as
  silence because the mix frame had not been queued 15 ms after it was due,
  plus mix frames dropped because they stood too long in the sender's queue,
  of all frames sent or dropped. In (``late_in_percent``, the per-leg
  ``media`` counters of the mixer's input buffers): breaks in a peer's
  stream (underruns) and frames dropped from an overfull buffer, of the
  frames received;
- ``clock_late_percent``: media-clock ticks that started a whole frame late
  or were skipped (``/api/health``);
- ``peers_cpu_percent``, ``others_cpu_percent``: CPU of this process (the
  peers) and of everything else on the machine over the window, to judge
  whether the bridge had the cores it needed;
- ``added_latency_ms_p99``: how long the bridge holds audio, estimated as the
  input jitter buffer depth plus the worst leg's 99th percentile wait in its
  output queue. The depth is the roster's per-leg ``media.buffered_ms`` (its
  99th percentile over samples taken each second) where the bridge reports
  it, else the configured ``media.jitter_ms`` (``input_buffer_source`` says
  which); a tick's own lateness is added where ``/api/health`` reports
  ``clock.late_ms_p99``. Network, codecs and the browser's jitter buffer
  are not included.

The bridge is stopped with SIGTERM after each run; ``bridge_stop_seconds`` is
how long it took (``null``: it hung and was killed, its log goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiortc.rtcrtpreceiver  # noqa: E402
from aiortc import (  # noqa: E402
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from tests.bridge.harness import BridgeProcess, write_config  # noqa: E402
from tests.webrtc.wsclient import SignallingClient  # noqa: E402
from webrtc import ice  # noqa: E402

ROOM = "demo"
JITTER_MS = 20  # media.jitter_ms in the benchmark's configuration
CONNECT_TIMEOUT = 40.0
POLL_INTERVAL = 1.0
FIGURES = (
    "cpu_percent",
    "late_frames_percent",
    "late_out_percent",
    "late_in_percent",
    "clock_late_percent",
    "added_latency_ms_p99",
    "output_wait_ms_p99",
    "input_buffer_ms_p99",
    "connect_seconds",
    "peers_cpu_percent",
    "others_cpu_percent",
)


def encode_opus(seconds: float = 1.0, frequency: float = 440.0) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 32000
    packets: list[bytes] = []
    samples = 960
    for i in range(int(seconds * 50)):
        n = np.arange(i * samples, (i + 1) * samples)
        tone = (6000 * np.sin(2 * math.pi * frequency * n / 48000)).astype(np.int16)
        stereo = np.repeat(tone, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * samples
        frame.time_base = fractions.Fraction(1, 48000)
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


def encode_vp8(seconds: float = 2.0, fps: int = 15) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = 640, 480
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = 600_000
    codec.framerate = fractions.Fraction(fps, 1)
    codec.time_base = fractions.Fraction(1, fps)
    codec.gop_size = int(seconds * fps)
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    packets: list[bytes] = []
    for i in range(int(seconds * fps)):
        image[:] = (30, 90, 150)
        x = (i * 16) % 600
        image[100:380, x : x + 40] = 240
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format="yuv420p"
        )
        frame.pts = i
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


class ReplayTrack(MediaStreamTrack):
    """Replays pre-encoded packets in a loop, paced in real time."""

    def __init__(self, kind: str, packets: list[bytes], rate: int, step: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._rate = rate
        self._step = step
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._count * self._step / self._rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._packets[self._count % len(self._packets)])
        packet.pts = self._count * self._step
        packet.time_base = fractions.Fraction(1, self._rate)
        self._count += 1
        return packet


class _NoDecoder:
    """Stands in for aiortc's decoders: the peers receive but do not decode."""

    def decode(self, encoded_frame: Any) -> list[Any]:
        return []


def skip_decoding() -> None:
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _NoDecoder()  # type: ignore[assignment]


class Peer:
    def __init__(self, index: int, opus: list[bytes], vp8: list[bytes] | None) -> None:
        self.name = f"peer-{index}"
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ReplayTrack("audio", opus, 48000, 960))
        if vp8 is not None:
            self.pc.addTrack(ReplayTrack("video", vp8, 90000, 6000))
        self.ws = SignallingClient()

    async def start(self, port: int, password: str, video: bool) -> None:
        await self.ws.connect("127.0.0.1", port, f"/rooms/{ROOM}/ws")
        self.ws.send(
            {
                "type": "join",
                "name": self.name,
                "password": password,
                "audio": True,
                "video": video,
            }
        )
        joined = await self.ws.receive()
        if not joined or joined["type"] != "joined":
            raise RuntimeError(f"{self.name}: join failed: {joined}")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.ws.send({"type": "offer", "sdp": self.pc.localDescription.sdp})
        answer = await self.ws.receive(20)
        if not answer or answer["type"] != "answer":
            raise RuntimeError(f"{self.name}: no answer: {answer}")
        await self.pc.setRemoteDescription(
            RTCSessionDescription(answer["sdp"], "answer")
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.pc.close()


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    """User+system CPU seconds of ``root`` and its descendants (their threads
    included; children that already exited are not)."""
    total = 0
    for pid in process_tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine has spent busy, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


class Bench:
    """One run: a fresh bridge, N peers, one measuring window."""

    def __init__(self, bridge: BridgeProcess, args: argparse.Namespace) -> None:
        self.bridge = bridge
        self.args = args
        secrets = bridge.demo_secrets()
        self.key = secrets["host key"]
        self.password = secrets["password"]

    async def get(self, path: str, key: str | None = None) -> Any:
        # the bridge client blocks: keep it off the loop the peers run on
        status, body, _ = await asyncio.to_thread(
            self.bridge.request, "GET", path, None, key
        )
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    async def roster(self) -> dict[str, Any]:
        return dict(await self.get(f"/api/rooms/{ROOM}/roster", self.key))

    async def health(self) -> dict[str, Any]:
        return dict(await self.get("/api/health"))

    async def run(self) -> dict[str, Any]:
        args = self.args
        opus = encode_opus()
        vp8 = None if args.audio_only else encode_vp8()
        peers = [Peer(i, opus, vp8) for i in range(args.peers)]
        begun = time.monotonic()
        try:
            for peer in peers:  # one at a time, as people join
                await peer.start(self.bridge.port, self.password, vp8 is not None)
            await self._wait_connected()
            connect_seconds = time.monotonic() - begun
            await asyncio.sleep(args.warmup)
            return await self._measure(connect_seconds)
        finally:
            await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)

    async def _wait_connected(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            legs = (await self.roster())["legs"]
            connected = sum(leg["connection_state"] == "connected" for leg in legs)
            if connected == self.args.peers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {connected} of {self.args.peers} peers connected"
                )
            await asyncio.sleep(0.5)

    async def _measure(self, connect_seconds: float) -> dict[str, Any]:
        pid = self.bridge.process.pid
        health0, roster0 = await self.health(), await self.roster()
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        mine0, all0 = time.process_time(), machine_cpu_seconds()
        buffered: list[float] = []
        end = wall0 + self.args.seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(POLL_INTERVAL, left))
            for leg in (await self.roster())["legs"]:
                if "buffered_ms" in leg.get("media", {}):
                    buffered.append(float(leg["media"]["buffered_ms"]))
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
        mine1, all1 = time.process_time(), machine_cpu_seconds()
        health1, roster1 = await self.health(), await self.roster()
        if len(roster1["legs"]) != self.args.peers:
            raise RuntimeError(
                f"{self.args.peers - len(roster1['legs'])} peers left during the run"
            )

        # late frames out (to the peers) and in (from the peers, to the mixer)
        out = delta(roster0, roster1, "webrtc")
        sent = out["audio_frames_sent"]
        dropped = out["audio_frames_dropped"]
        late_out = out["audio_frames_silent"] + dropped
        into = delta(roster0, roster1, "media")
        received = into["frames_received"]
        late_in = into["underruns"] + into["overflows"]
        waits = [
            float(leg["webrtc"]["audio_out_wait_ms_p99"]) for leg in roster1["legs"]
        ]

        # the media clock
        clock0, clock1 = health0["clock"], health1["clock"]
        ticks = clock1["ticks"] - clock0["ticks"]
        skipped = clock1["skipped_ticks"] - clock0["skipped_ticks"]
        behind = clock1["late_ticks"] - clock0["late_ticks"] + skipped

        # what the bridge adds to the audio's way through it
        source = "roster" if buffered else "nominal"
        input_ms = percentile(buffered, 99) if buffered else float(JITTER_MS)
        output_ms = max(waits, default=0.0)
        added = input_ms + output_ms + float(clock1.get("late_ms_p99", 0.0))

        return {
            "peers": self.args.peers,
            "video": not self.args.audio_only,
            "seconds": round(wall1 - wall0, 2),
            "cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
            "peers_cpu_percent": round(100 * (mine1 - mine0) / (wall1 - wall0), 1),
            "others_cpu_percent": round(
                100
                * ((all1 - all0) - (cpu1 - cpu0) - (mine1 - mine0))
                / (wall1 - wall0),
                1,
            ),
            "late_frames_percent": share(late_out + late_in, sent + dropped + received),
            "late_out_percent": share(late_out, sent + dropped),
            "late_in_percent": share(late_in, received),
            "clock_late_percent": share(behind, ticks + skipped),
            "added_latency_ms_p99": round(added, 1),
            "output_wait_ms_p99": round(output_ms, 2),
            "input_buffer_ms_p99": round(input_ms, 1),
            "input_buffer_source": source,
            "clock_busy_ms_per_tick": round(
                1000
                * (clock1["busy_seconds"] - clock0["busy_seconds"])
                / max(1, ticks),
                3,
            ),
            "connect_seconds": round(connect_seconds, 1),
        }


def delta(before: dict[str, Any], after: dict[str, Any], block: str) -> dict[str, int]:
    """Sums over the legs of how much each counter in ``block`` grew."""
    old = {leg["leg"]: leg.get(block, {}) for leg in before["legs"]}
    totals: dict[str, int] = {}
    for leg in after["legs"]:
        for key, value in leg.get(block, {}).items():
            if isinstance(value, int):
                grown = value - old.get(leg["leg"], {}).get(key, 0)
                totals[key] = totals.get(key, 0) + grown
    return totals


def share(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-browsers-") as tmp:
        config = write_config(Path(tmp), extra=f"\n[media]\njitter_ms = {JITTER_MS}\n")
        bridge = BridgeProcess(config, log_level=args.log_level)
        try:
            bench = Bench(bridge, args)
            budget = CONNECT_TIMEOUT + args.warmup + args.seconds + 60
            result = asyncio.run(asyncio.wait_for(bench.run(), budget))
        except BaseException:
            print(f"bridge log (tail):\n{bridge.log()[-4000:]}", file=sys.stderr)
            bridge.kill()
            raise

        # a bridge that does not stop on SIGTERM is a finding, not a failed run
        stopping = time.monotonic()
        try:
            bridge.close()
        except subprocess.TimeoutExpired:
            print("bridge hung on SIGTERM, killed; log (tail):", file=sys.stderr)
            print(bridge.log()[-4000:], file=sys.stderr)
            result["bridge_stop_seconds"] = None
        else:
            result["bridge_stop_seconds"] = round(time.monotonic() - stopping, 1)
        return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    result = dict(runs[0])
    for key in FIGURES:
        values = [run[key] for run in runs if run.get(key) is not None]
        result[key] = round(statistics.median(values), 2) if values else None
    result["runs"] = len(runs)
    result["per_run"] = {key: [run[key] for run in runs] for key in FIGURES[:4]}
    result["bridge_stop_seconds"] = [run["bridge_stop_seconds"] for run in runs]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--audio-only", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1, help="median over this many")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--log-level",
        default="info",
        help="the bridge's (its log is shown on failure)",
    )
    args = parser.parse_args()
    if not 1 <= args.peers <= 50:
        parser.error("--peers must be 1 to 50")
    if not 1 <= args.runs <= 9:
        parser.error("--runs must be 1 to 9")
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be 1 to 600")

    skip_decoding()
    ice.set_media_addresses(["127.0.0.1"])  # the peers' side; the bridge's own
    runs = [one_run(args) for _ in range(args.runs)]
    result = median_of(runs) if len(runs) > 1 else runs[0]
    result["cores"] = os.cpu_count()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # aiortc's threads are not daemons
