"""An aiortc client that plays a browser, for tests and the benchmark.

It sends a sine tone as Opus and synthetic 640x480 video, records the audio it
receives as mono int16, and counts received video frames. Signalling is direct
(SDP in, SDP out): the caller passes the offer to whatever answers it.
"""

from __future__ import annotations

import asyncio
import fractions
import math
from collections.abc import Awaitable, Callable

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from webrtc.tracks import frame_to_mono

RATE = 48000
SAMPLES = 960


def dominant_frequency(pcm: npt.NDArray[np.int16], rate: int = RATE) -> float:
    """The strongest frequency in ``pcm`` (Hz), from a windowed FFT."""
    data = pcm.astype(np.float64)
    data -= data.mean()
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
    spectrum[:5] = 0  # ignore what is left of DC
    return float(np.argmax(spectrum) * rate / len(data))


def rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


class ToneTrack(MediaStreamTrack):
    """A paced 48 kHz mono sine tone, 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: int = 8000) -> None:
        super().__init__()
        self._phase = 2 * math.pi * frequency / RATE * np.arange(SAMPLES)
        self._step = 2 * math.pi * frequency / RATE * SAMPLES
        self._amplitude = amplitude
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += SAMPLES
            wait = self._start + self._pts / RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        offset = self._step * (self._pts // SAMPLES)
        pcm = (self._amplitude * np.sin(self._phase + offset)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            pcm.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class PatternVideoTrack(MediaStreamTrack):
    """Paced synthetic video: a moving bar on a coloured background."""

    kind = "video"

    def __init__(self, fps: int = 15, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self._fps = fps
        self._image = np.zeros((height, width, 3), dtype=np.uint8)
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            wait = self._start + self._count / self._fps - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        image = self._image
        image[:] = (30, 90, 150)
        x = (self._count * 8) % image.shape[1]
        image[:, x : x + 40] = 240
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._count * (90000 // self._fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


class Client:
    """One aiortc peer standing in for a browser."""

    def __init__(
        self, tone_hz: float | None = 440.0, video: bool = True, recvonly_video=False
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.received: list[npt.NDArray[np.int16]] = []
        self.video_frames = 0
        self.last_video: av.VideoFrame | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.tone = ToneTrack(tone_hz) if tone_hz else None
        if self.tone is not None:
            self.pc.addTrack(self.tone)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        if video:
            self.pc.addTrack(PatternVideoTrack())
        elif recvonly_video:
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "audio":
                self.received.append(frame_to_mono(frame))
            else:
                self.video_frames += 1
                self.last_video = frame

    async def connect(self, answer: Callable[[str], Awaitable[str]]) -> None:
        """Offer, get the answer from ``answer(offer_sdp)``, and apply it."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = await answer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    def audio(self, last_seconds: float | None = None) -> npt.NDArray[np.int16]:
        if not self.received:
            return np.zeros(0, dtype=np.int16)
        pcm = np.concatenate(self.received)
        if last_seconds is not None:
            pcm = pcm[-int(last_seconds * RATE) :]
        return pcm

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05
) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
