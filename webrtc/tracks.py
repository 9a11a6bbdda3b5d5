"""Media tracks the bridge sends to a browser, and audio frame conversion.

:class:`MixedAudioTrack` sends each 20 ms frame as soon as the conference
queues it with ``deliver``, so it follows the conference's media clock and
adds no latency of its own; when a frame is late, silence goes out in its
place and the late frame follows (at most two stand in the queue).
:class:`SwitchedVideoTrack` sends the frame the conference last chose
(``show``) at a fixed rate and size.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time
from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from webrtc.placeholder import placeholder_frame

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)

#: Frames queued for a browser before the oldest is dropped (80 ms).
MAX_QUEUED_FRAMES = 4

#: Frames the sender lets stand in the queue when it takes one: the bridge's
#: media clock and this sender's pacing are separate timers, so more than this
#: is latency that would otherwise never drain.
MAX_STANDING_FRAMES = 2

#: A sender that falls this far behind its schedule starts a new one rather
#: than bursting to catch up (seconds).
RESYNC_AFTER = 0.2

#: How long after a frame was due the sender waits for the conference before
#: sending silence instead (seconds): absorbs the media clock's jitter.
GRACE = 0.015

#: Frames whose queue wait is kept for :meth:`MixedAudioTrack.wait_ms_p99`.
WAIT_HISTORY = 500

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
VIDEO_FPS = 15
VIDEO_WIDTH = 640
VIDEO_HEIGHT = 480

Pcm = npt.NDArray[np.int16]


class AudioFormatError(ValueError):
    """An audio frame has a format the bridge does not convert."""


def frame_to_mono(frame: av.AudioFrame) -> Pcm:
    """Mono int16 samples of a decoded s16 frame (packed or planar).

    Stereo is averaged. The rate is not changed: the caller checks it.
    """
    if frame.format.name not in ("s16", "s16p"):
        raise AudioFormatError(f"audio format {frame.format.name!r} is not s16")
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    if channels == 1:
        single: Pcm = data.reshape(-1).astype(np.int16)
        return single
    if frame.format.is_planar:
        left, right = data[0], data[1]
    else:
        interleaved = data.reshape(-1, channels)
        left, right = interleaved[:, 0], interleaved[:, 1]
    mixed = left.astype(np.int32)
    mixed += right
    mixed >>= 1
    mono: Pcm = mixed.astype(np.int16)
    return mono


def mono_to_frame(pcm: Pcm, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = AUDIO_TIME_BASE
    return frame


class MixedAudioTrack(MediaStreamTrack):
    """48 kHz mono audio, 20 ms frames, fed by :meth:`deliver`."""

    kind = "audio"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # clock must run with the asyncio loop's (loop.time() is monotonic)
        super().__init__()
        self._clock = clock
        self._queue: collections.deque[tuple[Pcm, float]] = collections.deque()
        self._silence: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._arrived = asyncio.Event()
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0
        self.frames_silent = 0
        self.frames_dropped = 0
        #: seconds each delivered frame waited in the queue (the latest ones)
        self.queue_delays: collections.deque[float] = collections.deque(
            maxlen=WAIT_HISTORY
        )

    def deliver(self, pcm: Pcm) -> None:
        """Queue one 20 ms frame (960 int16 samples)."""
        if pcm.shape != (FRAME_SAMPLES,) or pcm.dtype != np.int16:
            raise AudioFormatError(
                f"expected {FRAME_SAMPLES} int16 samples, got {pcm.shape} {pcm.dtype}"
            )
        if len(self._queue) >= MAX_QUEUED_FRAMES:
            self._queue.popleft()
            self.frames_dropped += 1
        self._queue.append((pcm, self._clock()))
        self._arrived.set()

    def wait_ms_p99(self) -> float:
        """99th percentile of the recent queue waits, in milliseconds."""
        if not self.queue_delays:
            return 0.0
        return round(1000.0 * float(np.percentile(self.queue_delays, 99)), 2)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError

        # a frame goes out as soon as the conference delivers it; when none
        # has come GRACE after it was due, silence goes out in its place
        if self._start is None:
            self._start = self._clock()
        else:
            self._pts += FRAME_SAMPLES
        due = self._start + self._pts / SAMPLE_RATE
        now = self._clock()
        if now - due > RESYNC_AFTER:
            logger.debug("audio sender %s behind by %.3f s", self.id, now - due)
            self._start = now - self._pts / SAMPLE_RATE
            due = now
        if not self._queue and due + GRACE > now:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), due + GRACE - now)
            except TimeoutError:
                pass

        while len(self._queue) > MAX_STANDING_FRAMES:
            self._queue.popleft()
            self.frames_dropped += 1
        if self._queue:
            pcm, queued_at = self._queue.popleft()
            now = self._clock()
            self.queue_delays.append(now - queued_at)
            # follow the conference's clock: this frame was due when queued
            self._start = min(now, queued_at) - self._pts / SAMPLE_RATE
        else:
            pcm = self._silence
            self.frames_silent += 1
        self.frames_sent += 1
        return mono_to_frame(pcm, self._pts)


class SwitchedVideoTrack(MediaStreamTrack):
    """Video at :data:`VIDEO_FPS`, the frame last passed to :meth:`show`."""

    kind = "video"

    def __init__(
        self,
        width: int = VIDEO_WIDTH,
        height: int = VIDEO_HEIGHT,
        fps: int = VIDEO_FPS,
    ) -> None:
        super().__init__()
        self._width = width
        self._height = height
        self._step = VIDEO_CLOCK_RATE // fps
        self._source: av.VideoFrame = placeholder_frame("carebridge", width, height)
        self._scaled: av.VideoFrame | None = None
        self._start: float | None = None
        self._timestamp = 0
        self.frames_sent = 0

    def show(self, frame: av.VideoFrame | None, label: str = "") -> None:
        """Send ``frame`` from now on, or a tile with ``label`` for ``None``."""
        if frame is None:
            frame = placeholder_frame(label or "carebridge", self._width, self._height)
        if frame is not self._source:
            self._source = frame
            self._scaled = None

    def _current(self) -> av.VideoFrame:
        # a private copy per track: the frame's pts is set for each send, and
        # the same source frame may be shown on many tracks
        if self._scaled is None:
            source = self._source
            if (source.width, source.height) == (self._width, self._height):
                self._scaled = av.VideoFrame.from_ndarray(
                    source.to_ndarray(format="yuv420p"), format="yuv420p"
                )
            else:
                self._scaled = source.reformat(
                    width=self._width, height=self._height, format="yuv420p"
                )
        return self._scaled

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError

        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._timestamp += self._step
            wait = self._start + self._timestamp / VIDEO_CLOCK_RATE - loop.time()
            if wait < -RESYNC_AFTER:
                self._start = loop.time() - self._timestamp / VIDEO_CLOCK_RATE
            elif wait > 0:
                await asyncio.sleep(wait)

        frame = self._current()
        frame.pts = self._timestamp
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame
