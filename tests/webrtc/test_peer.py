"""A real aiortc client against a BrowserLeg over loopback."""

from __future__ import annotations

import asyncio
import fractions
import time
from unittest import mock

import av
import numpy as np
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpSender,
)

from tests.webrtc.client import Client, dominant_frequency, rms, wait_for
from webrtc.fanout import VideoFanout
from webrtc.peer import BrowserLeg, OfferRefused
from webrtc.tracks import (
    AudioFormatError,
    MixedAudioTrack,
    SwitchedVideoTrack,
    frame_to_mono,
)

TONE = (8000 * np.sin(2 * np.pi * 1000 * np.arange(960) / 48000)).astype(np.int16)


class Sink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.ended: list[tuple[str, str]] = []

    def audio(self, leg_id: str, pcm: np.ndarray) -> None:
        assert leg_id == "web-1"
        self.frames.append(pcm)

    def end(self, leg_id: str, reason: str) -> None:
        self.ended.append((leg_id, reason))


def make_leg(sink: Sink, **kwargs: object) -> BrowserLeg:
    leg = BrowserLeg("web-1", "Alice", **kwargs)  # type: ignore[arg-type]
    leg.on_audio = sink.audio
    leg.on_ended = sink.end
    return leg


def test_tone_reaches_on_audio_and_roster(run) -> None:
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink)
        client = Client(tone_hz=440)
        try:
            await client.connect(leg.accept_offer)
            sdp = leg._pc.localDescription.sdp
            assert " 127.0.0.1 " in sdp and "typ host" in sdp
            assert await wait_for(lambda: len(sink.frames) >= 100, 15)

            pcm = np.concatenate(sink.frames[-50:])
            assert all(f.shape == (960,) and f.dtype == np.int16 for f in sink.frames)
            assert dominant_frequency(pcm) == pytest.approx(440, abs=5)
            assert rms(pcm) > 1000

            info = leg.roster_info()
            assert info["kind"] == "browser"
            assert info["display_name"] == "Alice"
            assert info["audio"] is True
            assert info["connection_state"] == "connected"
            assert info["ice_state"] in ("checking", "completed", "connected")
            assert info["dtls_srtp_profile"] in (
                "SRTP_AEAD_AES_256_GCM",
                "SRTP_AEAD_AES_128_GCM",
                "SRTP_AES128_CM_SHA1_80",
            )
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)


def test_deliver_audio_reaches_client(run) -> None:
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink)
        client = Client(tone_hz=440, video=False)
        try:
            await client.connect(leg.accept_offer)
            assert await wait_for(lambda: len(sink.frames) > 10, 15)
            for _ in range(75):
                leg.deliver_audio(TONE)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            heard = client.audio(last_seconds=1.2)
            loud = heard[np.abs(heard) > 2000]
            assert loud.size > 10000
            assert dominant_frequency(heard) == pytest.approx(1000, abs=5)
            assert leg.stats()["audio_frames_dropped"] == 0
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)


def test_video_both_ways(run) -> None:
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink)
        client = Client(tone_hz=440, video=True)
        try:
            await client.connect(leg.accept_offer)
            assert await wait_for(lambda: leg.video_frames_received >= 15, 15)
            frame = leg.latest_video_frame
            assert frame is not None and (frame.width, frame.height) == (640, 480)
            assert leg.roster_info()["video"] is True

            # the placeholder first, then a red frame the conference chose
            assert await wait_for(lambda: client.video_frames >= 5, 10)
            red = np.zeros((240, 320, 3), dtype=np.uint8)
            red[:, :, 0] = 220
            leg.show_video(av.VideoFrame.from_ndarray(red, format="rgb24"))
            await asyncio.sleep(1.0)
            got = client.last_video
            assert got is not None and (got.width, got.height) == (640, 480)
            rgb = got.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
            assert rgb[0] > 180 and rgb[1] < 60 and rgb[2] < 60
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)


def test_viewers_of_one_picture_share_one_encoder(run) -> None:
    fanout = VideoFanout()

    async def scenario() -> None:
        sender = BrowserLeg("web-a", "Ann", fanout=fanout)
        viewers = [BrowserLeg(f"web-{i}", "Viewer", fanout=fanout) for i in range(3)]
        clients = [Client(tone_hz=440, video=True)]
        clients += [Client(tone_hz=None, recvonly_video=True) for _ in viewers]
        legs = [sender, *viewers]
        try:
            for leg, client in zip(legs, clients, strict=True):
                await client.connect(leg.accept_offer)
            assert await wait_for(lambda: sender.latest_video_frame is not None, 15)

            # everyone sees Ann's camera (Ann herself a tile): two encoders
            for _ in range(50):
                for leg in viewers:
                    leg.show_video(sender.latest_video_frame, "Ann")
                sender.show_video(None, "Viewer")
                await asyncio.sleep(0.02)
            assert all(c.video_frames > 5 for c in clients), clients
            encodes, sent = fanout.encodes, [c.video_frames for c in clients[1:]]
            await asyncio.sleep(1.0)
            assert len(fanout.sources()) == 2
            encodes = fanout.encodes - encodes
            for client, before in zip(clients[1:], sent, strict=True):
                assert client.video_frames - before >= encodes / 2 - 4
            assert encodes <= 2 * 17
            for client in clients[1:]:
                got = client.last_video
                assert got is not None and (got.width, got.height) == (640, 480)
        finally:
            for leg in legs:
                await leg.close()
            for client in clients:
                await client.close()
        assert fanout.sources() == []

    run(scenario, 40)


def test_h264_browser_gets_its_own_encoder(run) -> None:
    fanout = VideoFanout()

    async def scenario() -> None:
        leg = BrowserLeg("web-h", "Hal", fanout=fanout)
        client = Client(tone_hz=440, video=False, recvonly_video=True)
        h264 = [
            codec
            for codec in RTCRtpSender.getCapabilities("video").codecs
            if codec.mimeType == "video/H264"
        ]
        for transceiver in client.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(h264)
        try:
            await client.connect(leg.accept_offer)
            assert isinstance(leg._video_out, SwitchedVideoTrack)
            assert await wait_for(lambda: client.video_frames >= 5, 15)
            assert fanout.encodes == 0
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)


def test_close_cleans_up(run) -> None:
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink)
        client = Client(tone_hz=440)
        await client.connect(leg.accept_offer)
        assert await wait_for(lambda: len(sink.frames) > 5, 15)
        await leg.close("expelled")
        await leg.close("again")
        assert sink.ended == [("web-1", "expelled")]
        info = leg.roster_info()
        assert info["connection_state"] == "closed"
        assert info["closed"] is True and info["close_reason"] == "expelled"
        assert not leg._tasks
        count = len(sink.frames)
        leg.deliver_audio(TONE)  # ignored once closed
        await asyncio.sleep(0.3)
        assert len(sink.frames) == count
        # the client learns of it from DTLS close_notify
        assert await wait_for(lambda: client.pc.connectionState == "closed", 5)
        await client.close()

    run(scenario, 30)


def test_media_timeout_ends_leg(run) -> None:
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink, media_timeout=1.0)
        client = Client(tone_hz=440, video=False)
        try:
            await client.connect(leg.accept_offer)
            assert await wait_for(lambda: len(sink.frames) > 5, 15)
            # the tab stops sending without saying goodbye
            assert client.tone is not None
            client.tone.stop()
            assert await wait_for(lambda: bool(sink.ended), 5)
            assert sink.ended == [("web-1", "media timeout")]
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)


def test_muted_audio_is_discarded(run) -> None:
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink)
        client = Client(tone_hz=440, video=False)
        try:
            await client.connect(leg.accept_offer)
            assert await wait_for(lambda: len(sink.frames) > 5, 15)
            leg.set_muted(audio=True)
            count = len(sink.frames)
            received = leg.audio_frames_received
            await asyncio.sleep(0.5)
            assert len(sink.frames) == count
            assert leg.audio_frames_received > received + 10
            assert leg.roster_info()["audio"] is False
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)


def test_bad_offers_refused(run) -> None:
    async def scenario() -> None:
        leg = BrowserLeg("web-1", "Alice")
        with pytest.raises(OfferRefused, match="^offer refused: "):
            await leg.accept_offer("v=0\r\nnonsense\r\n")
        await leg.close()

        leg = BrowserLeg("web-2", "Bob")
        video_only = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video_only.addTransceiver("video", direction="sendrecv")
        await video_only.setLocalDescription(await video_only.createOffer())
        with pytest.raises(OfferRefused, match="^offer refused: no audio section$"):
            await leg.accept_offer(video_only.localDescription.sdp)
        await leg.close()
        await video_only.close()

    run(scenario, 20)


def test_frame_to_mono_downmixes_packed_stereo() -> None:
    stereo = np.empty((1, 1920), dtype=np.int16)
    stereo[0, 0::2] = 1000
    stereo[0, 1::2] = 3001
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    mono = frame_to_mono(frame)
    assert mono.shape == (960,) and mono.dtype == np.int16
    np.testing.assert_array_equal(mono, 2000)

    extreme = np.full((1, 1920), -32768, dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(extreme, format="s16", layout="stereo")
    np.testing.assert_array_equal(frame_to_mono(frame), -32768)

    floats = av.AudioFrame.from_ndarray(
        np.zeros((1, 960), dtype=np.float32), format="flt", layout="mono"
    )
    with pytest.raises(AudioFormatError, match="^audio format 'flt' is not s16$"):
        frame_to_mono(floats)


def test_audio_track_queue_is_bounded() -> None:
    track = MixedAudioTrack()
    for _ in range(10):
        track.deliver(TONE)
    assert track.frames_dropped == 6
    with pytest.raises(AudioFormatError, match="^expected 960 int16 samples, got"):
        track.deliver(np.zeros(480, dtype=np.int16))


def test_audio_track_paces_and_fills_silence(run) -> None:
    async def scenario() -> None:
        track = MixedAudioTrack()
        track.deliver(TONE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        frames = [await track.recv() for _ in range(11)]
        elapsed = loop.time() - start
        assert 0.18 < elapsed < 0.35
        assert [f.pts for f in frames] == [960 * i for i in range(11)]
        assert frames[0].time_base == fractions.Fraction(1, 48000)
        np.testing.assert_array_equal(frames[0].to_ndarray()[0], TONE)
        assert not frames[1].to_ndarray().any()
        assert track.frames_silent == 10
        track.stop()

    run(scenario, 5)


def test_close_does_not_wait_for_a_decoding_backlog(run) -> None:
    """aiortc joins its decoder threads on the loop when a connection closes;
    a leg that fell behind must not hold every conference up while they work
    through what is queued."""
    sink = Sink()

    async def scenario() -> None:
        leg = make_leg(sink)
        client = Client(tone_hz=440, video=False)
        try:
            await client.connect(leg.accept_offer)
            assert await wait_for(lambda: len(sink.frames) > 5, 15)

            # a backlog that takes the decoder thread seconds to work through
            class SlowDecoder:
                def decode(self, frame: object) -> list[av.AudioFrame]:
                    time.sleep(0.01)
                    return []

            slow = RTCRtpCodecParameters(
                mimeType="audio/slow", clockRate=48000, channels=2, payloadType=96
            )
            (receiver,) = [t.receiver for t in leg._pc.getTransceivers()]
            backlog = receiver._RTCRtpReceiver__decoder_queue
            with mock.patch(
                "aiortc.rtcrtpreceiver.get_decoder", lambda codec: SlowDecoder()
            ):
                for _ in range(500):  # 5 s of decoding
                    backlog.put((slow, b""))
                started = time.monotonic()
                await leg.close("expelled")
                assert time.monotonic() - started < 1.0
        finally:
            await leg.close()
            await client.close()

    run(scenario, 30)
