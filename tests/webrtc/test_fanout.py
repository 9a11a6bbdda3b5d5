"""Shared VP8 encoders: one encode per frame, however many viewers."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np

from webrtc.fanout import KEYFRAME_MIN_INTERVAL, FanoutVideoTrack, VideoFanout
from webrtc.placeholder import placeholder_frame


def camera_frame(rgb: tuple[int, int, int]) -> av.VideoFrame:
    image = np.empty((480, 640, 3), dtype=np.uint8)
    image[:] = rgb
    image[200:280, 280:360] = 255  # something for the encoder to keep
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


def mean_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")[:100, :100].reshape(-1, 3).mean(axis=0)


async def collect(
    track: FanoutVideoTrack, seconds: float
) -> list[tuple[bytes, int, float]]:
    """The packets ``track`` gives in ``seconds``: data, pts, when."""
    got: list[tuple[bytes, int, float]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            packet = await asyncio.wait_for(track.recv(), left)
        except TimeoutError:
            break
        assert packet.time_base == fractions.Fraction(1, 90000)
        got.append((bytes(packet), packet.pts, loop.time()))
    return got


def is_vp8_keyframe(data: bytes) -> bool:
    return not data[0] & 0x01  # RFC 6386 section 9.1: P bit clear


def decode(packets: list[tuple[bytes, int, float]]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("libvpx", "r")
    frames: list[av.VideoFrame] = []
    for data, _, _ in packets:
        frames += decoder.decode(av.Packet(data))
    return frames


def test_one_encode_per_frame_for_all_viewers(run) -> None:
    fanout = VideoFanout()
    feed = fanout.camera()
    feed.publish(camera_frame((200, 30, 30)))
    viewers = [fanout.viewer() for _ in range(5)]

    async def scenario() -> list[list[tuple[bytes, int, float]]]:
        for viewer in viewers:
            viewer.show(feed.frame, "Ann")
        try:
            return await asyncio.gather(*(collect(v, 1.5) for v in viewers))
        finally:
            for viewer in viewers:
                viewer.stop()

    streams = run(scenario, 10)

    # one encoder, one encode per frame time (15 fps), the same bytes for all
    assert fanout.sources() == []
    assert 18 <= fanout.encodes <= 25
    for stream in streams:
        assert fanout.encodes - 2 <= len(stream) <= fanout.encodes
        assert is_vp8_keyframe(stream[0][0])
        pts = [p for _, p, _ in stream]
        assert all(b - a == 6000 for a, b in zip(pts, pts[1:], strict=False))
    shortest = min(len(s) for s in streams)
    first = [data for data, _, _ in streams[0][:shortest]]
    for stream in streams[1:]:
        assert [data for data, _, _ in stream[:shortest]] == first

    frames = decode(streams[-1])
    assert len(frames) == len(streams[-1])
    assert (frames[-1].width, frames[-1].height) == (640, 480)
    np.testing.assert_allclose(mean_rgb(frames[-1]), (200, 30, 30), atol=12)


def test_late_viewer_starts_on_a_keyframe(run) -> None:
    fanout = VideoFanout()
    feed = fanout.camera()
    feed.publish(camera_frame((30, 30, 200)))
    early, late = fanout.viewer(), fanout.viewer()

    async def scenario() -> tuple[list, list, float]:
        early.show(feed.frame, "Bob")
        late.show(feed.frame, "Bob")
        loop = asyncio.get_running_loop()
        try:
            first = asyncio.ensure_future(collect(early, 2.5))
            await asyncio.sleep(1.0)
            joined = loop.time()
            second = await collect(late, 1.5)
            return await first, second, joined
        finally:
            early.stop()
            late.stop()

    early_stream, late_stream, joined = run(scenario, 10)

    # one encoder for both; the late viewer's first frame is a keyframe the
    # encoder made for it (its own interval is 3 s), not a delta it cannot use
    assert 33 <= fanout.encodes <= 40
    assert is_vp8_keyframe(late_stream[0][0])
    assert late_stream[0][2] - joined < KEYFRAME_MIN_INTERVAL + 0.2
    keyframes = [d for d, _, _ in early_stream if is_vp8_keyframe(d)]
    assert len(keyframes) == 2
    frames = decode(late_stream)
    assert len(frames) == len(late_stream) >= 15
    np.testing.assert_allclose(mean_rgb(frames[-1]), (30, 30, 200), atol=12)


def test_switching_sources_keeps_timestamps_rising(run) -> None:
    fanout = VideoFanout()
    ann, bob = fanout.camera(), fanout.camera()
    ann.publish(camera_frame((200, 30, 30)))
    bob.publish(camera_frame((30, 200, 30)))
    viewer, watcher = fanout.viewer(), fanout.viewer()

    async def scenario() -> list[tuple[bytes, int, float]]:
        # someone else keeps Bob's encoder busy, so the switch needs a keyframe
        watcher.show(bob.frame, "Bob")
        viewer.show(ann.frame, "Ann")
        try:
            other = asyncio.ensure_future(collect(watcher, 3.0))
            got = await collect(viewer, 1.0)
            viewer.show(bob.frame, "Bob")
            got += await collect(viewer, 1.0)
            viewer.show(None, "Cy")
            got += await collect(viewer, 0.8)
            await other
            return got
        finally:
            viewer.stop()
            watcher.stop()

    stream = run(scenario, 10)

    pts = [p for _, p, _ in stream]
    assert all(b - a >= 6000 for a, b in zip(pts, pts[1:], strict=False))
    keyframes = [i for i, (d, _, _) in enumerate(stream) if is_vp8_keyframe(d)]
    assert keyframes[0] == 0 and len(keyframes) == 3

    # one decoder follows the stream across both switches
    frames = decode(stream)
    assert len(frames) == len(stream)
    np.testing.assert_allclose(
        mean_rgb(frames[keyframes[2] - 1]), (30, 200, 30), atol=12
    )
    tile = placeholder_frame("Cy")
    np.testing.assert_allclose(mean_rgb(frames[-1]), mean_rgb(tile), atol=12)
    assert fanout.sources() == []


def test_keyframe_requests_are_rate_limited(run) -> None:
    fanout = VideoFanout()
    viewer = fanout.viewer()

    async def scenario() -> list[tuple[bytes, int, float]]:
        viewer.show(None, "Dee")
        try:
            got = await collect(viewer, 0.3)
            for _ in range(10):  # a burst of PLIs
                viewer.request_keyframe()
                got += await collect(viewer, 0.1)
            return got
        finally:
            viewer.stop()

    stream = run(scenario, 10)

    # the first keyframe, then at most one every KEYFRAME_MIN_INTERVAL
    times = [pts / 90000 for d, pts, _ in stream if is_vp8_keyframe(d)]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= KEYFRAME_MIN_INTERVAL - 0.05


def test_unknown_frames_get_a_private_encoder(run) -> None:
    fanout = VideoFanout()
    one, two = fanout.viewer(), fanout.viewer()
    red, green = camera_frame((200, 30, 30)), camera_frame((30, 200, 30))

    async def scenario() -> tuple[list, list]:
        one.show(red)
        two.show(green)
        try:
            return await asyncio.gather(collect(one, 0.8), collect(two, 0.8))
        finally:
            one.stop()
            two.stop()

    first, second = run(scenario, 10)

    np.testing.assert_allclose(mean_rgb(decode(first)[-1]), (200, 30, 30), atol=12)
    np.testing.assert_allclose(mean_rgb(decode(second)[-1]), (30, 200, 30), atol=12)
