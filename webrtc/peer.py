"""The bridge's side of one browser: an aiortc peer connection and its media.

A :class:`BrowserLeg` answers the browser's offer, sends the conference's mix
(:meth:`BrowserLeg.deliver_audio`) and a chosen video frame
(:meth:`BrowserLeg.show_video`), and hands the browser's decoded audio to
``on_audio`` as mono int16 at 48 kHz, 20 ms a frame. It lives on the asyncio
loop that Twisted's asyncioreactor also runs on; Twisted code calls its
coroutines through :meth:`BrowserLeg.close_deferred` or
``Deferred.fromFuture(asyncio.ensure_future(...))``.

The leg reports its end once through ``on_ended(leg_id, reason)``: when ICE or
DTLS fail or close, when no media has arrived for ``media_timeout`` seconds
after it connected (aioice's own consent check, RFC 7675, would take about
30 s), when it does not connect within ``connect_timeout``, or when anyone
calls :meth:`BrowserLeg.close` (the host expelling it, for instance).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp
from twisted.internet.defer import Deferred

from webrtc import ice
from webrtc.fanout import FanoutVideoTrack, VideoFanout, default_fanout
from webrtc.tracks import (
    SAMPLE_RATE,
    AudioFormatError,
    MixedAudioTrack,
    Pcm,
    SwitchedVideoTrack,
    frame_to_mono,
)

logger = logging.getLogger(__name__)

#: Seconds without any received media frame before a connected leg is ended.
MEDIA_TIMEOUT = 8.0

#: Seconds a leg may take from the offer to a connected state.
CONNECT_TIMEOUT = 20.0

AudioCallback = Callable[[str, Pcm], None]
EndedCallback = Callable[[str, str], None]


class OfferRefused(ValueError):
    """The browser's offer cannot be answered; the message says why."""


class BrowserLeg:
    """One browser in a conference, on the bridge's side."""

    kind = "browser"

    def __init__(
        self,
        leg_id: str,
        display_name: str,
        *,
        audio: bool = True,
        video: bool = True,
        peer_address: str = "",
        media_timeout: float = MEDIA_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        fanout: VideoFanout | None = None,
    ) -> None:
        self.leg_id = leg_id
        self.display_name = display_name
        self.peer_address = peer_address
        self.wants_audio = audio
        self.wants_video = video
        self.audio_muted = False
        self.video_muted = False

        #: set by the conference: receives the browser's audio frames
        self.on_audio: AudioCallback | None = None
        #: set by the signalling adapter: called once when the leg ends
        self.on_ended: EndedCallback | None = None

        self._clock = clock
        self._media_timeout = media_timeout
        self._connect_timeout = connect_timeout
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._audio_out = MixedAudioTrack(clock=clock)
        # video goes out through the shared encoders of webrtc.fanout; a
        # browser that negotiates anything but VP8 gets its own encoder
        fanout = fanout or default_fanout()
        self._camera = fanout.camera()
        self._video_out: FanoutVideoTrack | SwitchedVideoTrack = fanout.viewer()
        self._video_out.show(None, display_name)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._close_reason = ""
        self._end_reported = False
        self._connected_at: float | None = None
        self._last_media: float | None = None
        self._resampler: av.AudioResampler | None = None

        self.audio_frames_received = 0
        self.video_frames_received = 0
        self.latest_video_frame: av.VideoFrame | None = None
        self.dtls_srtp_profile: str | None = None

    # signalling

    async def accept_offer(self, sdp: str) -> str:
        """Answer the browser's offer; returns the answer SDP with candidates."""
        if self._closed:
            raise OfferRefused("leg is closed")
        sdp = ice.filter_remote_candidates(sdp)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        except ValueError as exc:
            raise OfferRefused(f"offer refused: {exc}") from None

        kinds = {t.kind for t in self._pc.getTransceivers()}
        if "audio" not in kinds:
            raise OfferRefused("offer refused: no audio section")
        self._pc.addTrack(self._audio_out)
        video_sender = None
        if "video" in kinds:
            video_sender = self._pc.addTrack(self._video_out)

        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        if video_sender is not None:
            self._bind_video_sender(video_sender, self._pc.localDescription.sdp)
        self._spawn(self._watch(), "watchdog")
        logger.info(
            "leg %s: answered offer (%s)", self.leg_id, ", ".join(sorted(kinds))
        )
        return self._pc.localDescription.sdp

    async def add_candidate(
        self, line: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add a trickled remote candidate (``line`` empty: no more)."""
        if self._closed:
            return
        if not line:
            await self._pc.addIceCandidate(None)
            return
        if line.startswith("candidate:"):
            line = line[len("candidate:") :]
        if not ice.candidate_reachable("candidate:" + line):
            logger.debug("leg %s: unreachable candidate dropped", self.leg_id)
            return
        try:
            candidate: RTCIceCandidate = candidate_from_sdp(line)
        except (ValueError, IndexError):
            raise OfferRefused("candidate is not a valid ICE candidate") from None
        candidate.sdpMid = sdp_mid
        candidate.sdpMLineIndex = sdp_mline_index
        await self._pc.addIceCandidate(candidate)

    def set_muted(self, audio: bool | None = None, video: bool | None = None) -> None:
        """Record the browser's mute state; muted audio is discarded here too."""
        if audio is not None:
            self.audio_muted = audio
        if video is not None:
            self.video_muted = video
            if video:
                self.latest_video_frame = None
                self._camera.publish(None)
        logger.info(
            "leg %s: audio %s, video %s",
            self.leg_id,
            "muted" if self.audio_muted else "on",
            "muted" if self.video_muted else "on",
        )

    # media to the browser

    def _bind_video_sender(self, sender: Any, answer: str) -> None:
        codecs = [
            media.rtp.codecs[0].mimeType.lower()
            for media in SessionDescription.parse(answer).media
            if media.kind == "video" and media.port and media.rtp.codecs
        ]
        if codecs and codecs[0] != "video/vp8":
            # the shared encoders make VP8 only: encode for this browser alone
            logger.info("leg %s: sends %s, video not shared", self.leg_id, codecs[0])
            fallback = SwitchedVideoTrack()
            fallback.show(None, self.display_name)
            self._video_out.stop()
            self._video_out = fallback
            sender.replaceTrack(fallback)
            return
        if isinstance(self._video_out, FanoutVideoTrack):
            # aiortc answers a PLI or FIR by flagging its own encoder, which
            # packets bypass: route the request to the shared encoder
            # (private API, aiortc 1.16 RTCRtpSender._handle_rtcp_packet)
            sender._send_keyframe = self._video_out.request_keyframe

    def deliver_audio(self, pcm: Pcm) -> None:
        """Queue one 20 ms frame of the mix for this browser (960 int16)."""
        if not self._closed:
            self._audio_out.deliver(pcm)

    def show_video(self, frame: av.VideoFrame | None, label: str = "") -> None:
        """Send ``frame`` from now on; ``None`` sends a tile reading ``label``."""
        self._video_out.show(frame, label)

    @property
    def sends_video(self) -> bool:
        """Whether this browser's camera is on and its frames are arriving."""
        return self.latest_video_frame is not None and not self.video_muted

    # media from the browser

    def _on_track(self, track: MediaStreamTrack) -> None:
        logger.info("leg %s: receiving %s", self.leg_id, track.kind)
        if track.kind == "audio":
            self._spawn(self._receive_audio(track), "audio-in")
        elif track.kind == "video":
            self._spawn(self._receive_video(track), "video-in")

    async def _receive_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            self._last_media = self._clock()
            self.audio_frames_received += 1
            try:
                pcm = self._to_mono_48k(frame)
            except AudioFormatError as exc:
                logger.warning("leg %s: %s", self.leg_id, exc)
                continue
            if self.audio_muted or self.on_audio is None:
                continue
            self.on_audio(self.leg_id, pcm)

    def _to_mono_48k(self, frame: av.AudioFrame) -> Pcm:
        if frame.sample_rate == SAMPLE_RATE:
            return frame_to_mono(frame)
        # not what browsers send (Opus decodes at 48 kHz), but cheap to allow
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="s16", layout="mono", rate=SAMPLE_RATE
            )
        parts = [frame_to_mono(f) for f in self._resampler.resample(frame)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def _receive_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.VideoFrame):
                continue
            self._last_media = self._clock()
            self.video_frames_received += 1
            if not self.video_muted:
                self.latest_video_frame = frame
                self._camera.publish(frame)

    # state

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        logger.info("leg %s: connection %s", self.leg_id, state)
        if state == "connected":
            self._connected_at = self._clock()
            self.dtls_srtp_profile = self._read_srtp_profile()
        elif state in ("failed", "closed"):
            self._report_failed(f"connection {state}")

    def _read_srtp_profile(self) -> str | None:
        # aiortc keeps the negotiated profile only inside the pyOpenSSL
        # connection of its RTCDtlsTransport; read it there (private API)
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.sender.transport
            ssl = getattr(dtls, "_ssl", None)
            if dtls is None or ssl is None or dtls.state != "connected":
                continue
            try:
                profile = ssl.get_selected_srtp_profile()
            except Exception:  # noqa: BLE001 - private API, report unknown
                logger.warning("leg %s: SRTP profile unreadable", self.leg_id)
                return None
            return profile.decode("ascii") if profile else None
        return None

    async def _watch(self) -> None:
        started = self._clock()
        while not self._closed:
            await asyncio.sleep(min(1.0, self._media_timeout / 4))
            now = self._clock()
            if self._connected_at is None:
                if now - started > self._connect_timeout:
                    self._report_failed("connect timeout")
                    return
                continue
            last = self._last_media or self._connected_at
            if now - last > self._media_timeout:
                self._report_failed("media timeout")
                return

    def _report_failed(self, reason: str) -> None:
        if not self._closed and not self._end_reported:
            logger.warning("leg %s: %s", self.leg_id, reason)
        self._report_end(reason)

    def _report_end(self, reason: str) -> None:
        if self._end_reported:
            return
        self._end_reported = True
        if self.on_ended is not None:
            self.on_ended(self.leg_id, reason)

    def roster_info(self) -> dict[str, Any]:
        """What the roster shows about this leg."""
        return {
            "leg": self.leg_id,
            "kind": self.kind,
            "display_name": self.display_name,
            "audio": self.wants_audio and not self.audio_muted,
            "video": self.sends_video,
            "audio_muted": self.audio_muted,
            "video_muted": self.video_muted,
            "ice_state": self._pc.iceConnectionState,
            "connection_state": self._pc.connectionState,
            "dtls_srtp_profile": self.dtls_srtp_profile,
            "closed": self._closed,
            "close_reason": self._close_reason or None,
            "webrtc": self.stats(),
        }

    def stats(self) -> dict[str, Any]:
        """Frame counters, on the roster (``webrtc``) for hosts and benchmarks.

        ``audio_frames_silent`` counts frames sent as silence because the mix
        was not ready in time; ``audio_out_wait_ms_p99`` is how long mix
        frames waited for this leg's sender over the last
        :data:`~webrtc.tracks.WAIT_HISTORY` frames.
        """
        return {
            "audio_frames_received": self.audio_frames_received,
            "video_frames_received": self.video_frames_received,
            "audio_frames_sent": self._audio_out.frames_sent,
            "audio_frames_silent": self._audio_out.frames_silent,
            "audio_frames_dropped": self._audio_out.frames_dropped,
            "video_frames_sent": self._video_out.frames_sent,
            "audio_out_wait_ms_p99": self._audio_out.wait_ms_p99(),
        }

    @property
    def audio_out(self) -> MixedAudioTrack:
        return self._audio_out

    # closing

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.leg_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, reason: str = "closed") -> None:
        """Stop media and close the peer connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        logger.info("leg %s: closing (%s)", self.leg_id, reason)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._audio_out.stop()
        self._video_out.stop()
        self._report_end(reason)
        self._drop_decoder_backlog()
        await self._pc.close()
        self.latest_video_frame = None
        self._camera.close()

    def _drop_decoder_backlog(self) -> None:
        # aiortc's close joins each receiver's decoder thread on the event
        # loop, and that thread first decodes everything queued for it (an
        # unbounded queue): a leg whose decoding fell behind would stall every
        # conference on the loop for as long. Drop what waits (private API).
        # FIXME: the backlog is not bounded while the leg lives either; a
        # starved bridge queues encoded frames without limit
        for transceiver in self._pc.getTransceivers():
            pending = getattr(
                transceiver.receiver, "_RTCRtpReceiver__decoder_queue", None
            )
            if not isinstance(pending, queue.Queue):
                continue
            dropped = 0
            try:
                while True:
                    pending.get_nowait()
                    dropped += 1
            except queue.Empty:
                pass
            if dropped:
                logger.info(
                    "leg %s: %d undecoded %s frames dropped at close",
                    self.leg_id,
                    dropped,
                    transceiver.kind,
                )

    def close_deferred(self, reason: str = "closed") -> Deferred[None]:
        """:meth:`close` for Twisted callers."""
        return Deferred.fromFuture(asyncio.ensure_future(self.close(reason)))
