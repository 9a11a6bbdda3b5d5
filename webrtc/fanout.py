"""Encode each shown picture once and send the same VP8 to all its viewers.

Every browser used to get its own VP8 encoder, although most of them see the
same picture (the active speaker). A :class:`VideoFanout` keeps one
:class:`SharedEncoder` per distinct source: a browser's camera (a
:class:`CameraFeed` the receiving leg publishes its decoded frames to), a
placeholder tile (by its label), or, for a frame the fan-out does not know, a
private encoder for that one viewer. A shared encoder runs while anyone
watches, encodes its source's latest frame at most once per frame time, and
hands the packets to each subscribed :class:`FanoutVideoTrack`. The track
gives aiortc ``av.Packet`` objects, which its RTP sender packetizes without
encoding again (aiortc 1.16 ``RTCRtpSender._next_encoded_frame`` and
``Vp8Encoder.pack``).

A viewer moving to another source keeps receiving the old one until the new
one's next keyframe, which it asks for; keyframe requests (a new viewer, a
browser's PLI or FIR) are coalesced and granted at most once every
:data:`KEYFRAME_MIN_INTERVAL` per encoder. Each viewer numbers its own
timestamps, so its RTP timestamps rise across switches.

Only VP8 is fanned out: a browser that negotiates another codec gets the
per-viewer :class:`webrtc.tracks.SwitchedVideoTrack` instead (see
:mod:`webrtc.peer`).
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
from collections.abc import Hashable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from webrtc.placeholder import MAX_LABEL, placeholder_frame
from webrtc.tracks import (
    RESYNC_AFTER,
    VIDEO_CLOCK_RATE,
    VIDEO_FPS,
    VIDEO_HEIGHT,
    VIDEO_TIME_BASE,
    VIDEO_WIDTH,
)

logger = logging.getLogger(__name__)

#: Target bitrate of a shared encoder (bit/s, constant bitrate).
BITRATE = 800_000

#: Seconds between the keyframes an encoder makes on its own.
KEYFRAME_INTERVAL = 3.0

#: Least seconds between two keyframes made on request (new viewer, PLI, FIR).
KEYFRAME_MIN_INTERVAL = 0.5

#: Encoded frames queued for one viewer; past that its sender has stalled, the
#: queue is dropped and the viewer waits for a keyframe.
MAX_QUEUED_FRAMES = 8

#: The tile shown before the conference chooses anything.
DEFAULT_LABEL = "carebridge"

_KEYFRAME = av.video.frame.PictureType.I
_ANY_PICTURE = av.video.frame.PictureType.NONE


class CameraFeed:
    """Where one browser leg publishes the frames its camera sends."""

    def __init__(self, fanout: VideoFanout) -> None:
        self._fanout = fanout
        self.frame: av.VideoFrame | None = None

    def publish(self, frame: av.VideoFrame | None) -> None:
        """The latest decoded frame; ``None`` when the camera is off."""
        self._fanout._publish(self, frame)

    def close(self) -> None:
        self.publish(None)


class SharedEncoder:
    """One source's VP8 encoder, shared by every viewer of that source."""

    def __init__(
        self,
        fanout: VideoFanout,
        key: Hashable,
        frame: av.VideoFrame | None,
    ) -> None:
        self.key = key
        #: the picture encoded at the next frame time
        self.frame = frame
        self.encodes = 0
        self.keyframes = 0
        self._fanout = fanout
        self._viewers: list[FanoutVideoTrack] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._keyframe_wanted = False
        self._last_keyframe = -KEYFRAME_MIN_INTERVAL
        self._codec: av.VideoCodecContext | None = None
        self._input: av.VideoFrame | None = None
        self._input_source: av.VideoFrame | None = None
        self._pts = 0

    @property
    def live(self) -> bool:
        """Whether this encoder still runs, or may run, on the current loop."""
        if self._closed:
            return False
        if self._task is None:
            return True
        return not self._task.done() and (
            self._task.get_loop() is asyncio.get_running_loop()
        )

    def subscribe(self, viewer: FanoutVideoTrack) -> None:
        if viewer not in self._viewers:
            self._viewers.append(viewer)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name(f"video-encoder-{self.key!r}")

    def unsubscribe(self, viewer: FanoutVideoTrack) -> None:
        if viewer in self._viewers:
            self._viewers.remove(viewer)
        if not self._viewers:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fanout._forget(self)

    def request_keyframe(self) -> None:
        """Make a keyframe soon (at most once per KEYFRAME_MIN_INTERVAL)."""
        self._keyframe_wanted = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        fanout = self._fanout
        step = 1.0 / fanout.fps
        due = loop.time()
        while not self._closed:
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                if self._closed:
                    break
            now = loop.time()
            if now - due > RESYNC_AFTER:
                # fell behind: skip the missed frame times, timestamps too
                self._pts += int((now - due) * fanout.fps) * (
                    VIDEO_CLOCK_RATE // fanout.fps
                )
                due = now

            force = (
                self._keyframe_wanted
                and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL
            )
            if force:
                self._keyframe_wanted = False
            frame = self.frame
            if frame is not None:
                # an encode takes milliseconds: off the loop, as aiortc does
                try:
                    packets = await loop.run_in_executor(
                        None, self._encode, frame, self._pts, force
                    )
                except (av.FFmpegError, ValueError) as exc:
                    logger.warning("video encoder %r: frame dropped: %s", self.key, exc)
                    packets = []
                self.encodes += 1
                fanout.encodes += 1
                for data, keyframe in packets:
                    if keyframe:
                        self._last_keyframe = now
                        self.keyframes += 1
                    for viewer in list(self._viewers):
                        viewer._deliver(self, data, keyframe, self._pts)
            self._pts += VIDEO_CLOCK_RATE // fanout.fps
            due += step
        self._codec = None
        self._input = self._input_source = None

    def _encode(
        self, frame: av.VideoFrame, pts: int, force_keyframe: bool
    ) -> list[tuple[bytes, bool]]:
        # runs in an executor thread, one call at a time per encoder
        fanout = self._fanout
        if self._codec is None:
            self._codec = fanout.make_codec()
        picture = self._input
        if picture is None or frame is not self._input_source:
            # a private copy: its pts and picture type are set for each encode
            if (frame.width, frame.height, frame.format.name) == (
                fanout.width,
                fanout.height,
                "yuv420p",
            ):
                picture = av.VideoFrame.from_ndarray(
                    frame.to_ndarray(format="yuv420p"), format="yuv420p"
                )
            else:
                picture = frame.reformat(
                    width=fanout.width, height=fanout.height, format="yuv420p"
                )
            self._input, self._input_source = picture, frame
        picture.pts = pts
        picture.time_base = VIDEO_TIME_BASE
        picture.pict_type = _KEYFRAME if force_keyframe else _ANY_PICTURE
        return [(bytes(p), bool(p.is_keyframe)) for p in self._codec.encode(picture)]


class FanoutVideoTrack(MediaStreamTrack):
    """One viewer's outgoing video: the encoded frames of the source it shows.

    :meth:`show` has the signature of
    :meth:`webrtc.tracks.SwitchedVideoTrack.show`.
    """

    kind = "video"

    def __init__(self, fanout: VideoFanout) -> None:
        super().__init__()
        self._fanout = fanout
        self._key: Hashable = ("tile", DEFAULT_LABEL)
        self._private_frame: av.VideoFrame | None = None
        self._current: SharedEncoder | None = None
        self._pending: SharedEncoder | None = None
        self._queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self._arrived = asyncio.Event()
        self._started = False
        self._start: float | None = None
        self._offset = 0  # this viewer's timestamp minus the source's
        self._last_pts = -1
        self.frames_sent = 0
        #: delta frames not sent while waiting for a source's keyframe
        self.frames_skipped = 0
        #: times the queue overflowed and was dropped
        self.resyncs = 0

    def show(self, frame: av.VideoFrame | None, label: str = "") -> None:
        """Send ``frame``'s source from now on, or a tile with ``label``."""
        key = self._fanout.key_for(frame, label, self)
        if key is self:
            self._private_frame = frame
            for source in (self._current, self._pending):
                if source is not None and source.key is self:
                    source.frame = frame
        if key == self._key:
            return
        self._key = key
        if self._started:
            self._switch()

    def request_keyframe(self) -> None:
        """A PLI or FIR from the browser: ask the source for a keyframe."""
        source = self._pending or self._current
        if source is not None:
            source.request_keyframe()

    def _switch(self) -> None:
        source = self._fanout.acquire(self._key, self, self._private_frame)
        if source is self._current:
            self._drop_pending()
            return
        if source is not self._pending:
            self._drop_pending()
            self._pending = source
        source.request_keyframe()

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending is not self._current:
            pending.unsubscribe(self)

    def _deliver(
        self, source: SharedEncoder, data: bytes, keyframe: bool, pts: int
    ) -> None:
        if source is self._pending:
            if not keyframe:
                self.frames_skipped += 1
                return
            previous, self._current, self._pending = self._current, source, None
            if previous is not None and previous is not source:
                previous.unsubscribe(self)
            self._queue.clear()
            # continue this viewer's timestamps: one frame on, or the time
            # that has passed, whichever is later
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            elapsed = int((loop.time() - self._start) * VIDEO_CLOCK_RATE)
            step = VIDEO_CLOCK_RATE // self._fanout.fps
            self._offset = max(self._last_pts + step, elapsed) - pts
        elif source is not self._current:
            return

        if len(self._queue) >= MAX_QUEUED_FRAMES:
            # the sender stopped taking frames: start again from a keyframe
            logger.debug("video viewer %s: queue full, resyncing", self.id)
            self.resyncs += 1
            self._queue.clear()
            self._pending, self._current = source, None
            source.request_keyframe()
            return
        stamped = pts + self._offset
        self._last_pts = stamped
        self._queue.append((data, stamped))
        self._arrived.set()

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            # subscribe only once the sender runs: nothing queues before that
            self._started = True
            self._switch()

        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
            if self.readyState != "live":
                raise MediaStreamError
        data, pts = self._queue.popleft()
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._drop_pending()
        current, self._current = self._current, None
        if current is not None:
            current.unsubscribe(self)
        self._queue.clear()
        self._arrived.set()


class VideoFanout:
    """The shared encoders of one process, by source."""

    def __init__(
        self,
        width: int = VIDEO_WIDTH,
        height: int = VIDEO_HEIGHT,
        fps: int = VIDEO_FPS,
        bitrate: int = BITRATE,
    ) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrate = bitrate
        #: frames encoded by all shared encoders since this fan-out was made
        self.encodes = 0
        self._sources: dict[Hashable, SharedEncoder] = {}
        self._feeds_by_frame: dict[int, CameraFeed] = {}

    def camera(self) -> CameraFeed:
        """A feed for one browser's decoded camera frames."""
        return CameraFeed(self)

    def viewer(self) -> FanoutVideoTrack:
        """A track for one browser that shows whatever :meth:`show` chooses."""
        return FanoutVideoTrack(self)

    def sources(self) -> list[SharedEncoder]:
        """The encoders that run now."""
        return list(self._sources.values())

    def make_codec(self) -> av.VideoCodecContext:
        """A realtime, constant-bitrate libvpx (VP8) encoder."""
        codec = av.CodecContext.create("libvpx", "w")
        codec.width = self.width
        codec.height = self.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = fractions.Fraction(self.fps, 1)
        codec.bit_rate = self.bitrate
        codec.gop_size = int(KEYFRAME_INTERVAL * self.fps)
        codec.qmin = 2
        codec.qmax = 56
        codec.thread_count = 1
        codec.options = {
            "bufsize": str(self.bitrate),  # a one-second rate control buffer
            "minrate": str(self.bitrate),
            "maxrate": str(self.bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "noise-sensitivity": "4",
            "overshoot-pct": "15",
            "undershoot-pct": "100",
            "static-thresh": "1",
            "partitions": "0",
        }
        return codec

    def key_for(
        self, frame: av.VideoFrame | None, label: str, viewer: FanoutVideoTrack
    ) -> Hashable:
        """Which source shows ``frame`` (or the tile reading ``label``)."""
        if frame is None:
            return ("tile", label[:MAX_LABEL] or DEFAULT_LABEL)
        feed = self._feeds_by_frame.get(id(frame))
        if feed is not None and feed.frame is frame:
            return feed
        return viewer  # a frame no camera published: encoded for this viewer

    def acquire(
        self,
        key: Hashable,
        viewer: FanoutVideoTrack,
        private_frame: av.VideoFrame | None = None,
    ) -> SharedEncoder:
        """The running encoder for ``key``, with ``viewer`` subscribed."""
        source = self._sources.get(key)
        if source is not None and not source.live:
            source.close()
            source = None
        if source is None:
            source = SharedEncoder(self, key, self._frame_of(key, private_frame))
            self._sources[key] = source
            logger.debug("video encoder started for %r", key)
        source.subscribe(viewer)
        return source

    def _frame_of(
        self, key: Hashable, private_frame: av.VideoFrame | None
    ) -> av.VideoFrame | None:
        if isinstance(key, CameraFeed):
            return key.frame
        if isinstance(key, tuple) and key[0] == "tile":
            return placeholder_frame(str(key[1]), self.width, self.height)
        return private_frame

    def _publish(self, feed: CameraFeed, frame: av.VideoFrame | None) -> None:
        old = feed.frame
        if old is not None and self._feeds_by_frame.get(id(old)) is feed:
            del self._feeds_by_frame[id(old)]
        feed.frame = frame
        if frame is not None:
            self._feeds_by_frame[id(frame)] = feed
            source = self._sources.get(feed)
            if source is not None:
                source.frame = frame

    def _forget(self, source: SharedEncoder) -> None:
        if self._sources.get(source.key) is source:
            del self._sources[source.key]
            logger.debug("video encoder stopped for %r", source.key)


_default: VideoFanout | None = None


def default_fanout() -> VideoFanout:
    """The process's fan-out, shared by all browser legs."""
    global _default
    if _default is None:
        _default = VideoFanout()
    return _default
