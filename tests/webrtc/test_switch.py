"""Voice-switched video and the placeholder tile."""

from __future__ import annotations

import av
import numpy as np

from webrtc.placeholder import placeholder_frame, render_text
from webrtc.switch import VideoSwitch


class Leg:
    def __init__(self, leg_id: str, video: bool) -> None:
        self.leg_id = leg_id
        self.latest_video_frame = (
            av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            if video
            else None
        )
        self.shown: tuple[av.VideoFrame | None, str] | None = None

    def show_video(self, frame: av.VideoFrame | None, label: str = "") -> None:
        self.shown = (frame, label)


def setup() -> tuple[VideoSwitch, dict[str, Leg], dict[str, str]]:
    legs = {"a": Leg("a", True), "b": Leg("b", True), "phone": Leg("phone", False)}
    names = {"a": "Ann", "b": "Bob", "phone": "Ward phone"}
    return VideoSwitch(), legs, names


def test_everyone_sees_the_speaker_and_the_speaker_keeps_the_previous() -> None:
    switch, legs, names = setup()
    browsers = [legs["a"], legs["b"]]
    switch.update("a", browsers, legs, names)
    assert legs["b"].shown == (legs["a"].latest_video_frame, "Ann")
    # nobody spoke before: Ann sees someone with video rather than a tile
    assert legs["a"].shown == (legs["b"].latest_video_frame, "Bob")

    switch.update("phone", browsers, legs, names)
    assert legs["a"].shown == (None, "Ward phone")
    assert legs["b"].shown == (None, "Ward phone")

    switch.update("b", browsers, legs, names)
    assert legs["a"].shown == (legs["b"].latest_video_frame, "Bob")
    assert legs["b"].shown == (None, "Ward phone")  # not its own picture

    switch.update(None, browsers, legs, names)  # silence: nothing changes
    assert legs["a"].shown == (legs["b"].latest_video_frame, "Bob")


def test_alone_in_the_room() -> None:
    switch, legs, _ = setup()
    switch.update(None, [legs["a"]], legs, {"a": "Ann"})
    assert legs["a"].shown == (None, "waiting for others")


def test_placeholder_tile() -> None:
    frame = placeholder_frame("Ward phone")
    assert (frame.width, frame.height, frame.format.name) == (640, 480, "yuv420p")
    assert placeholder_frame("Ward phone") is frame  # cached
    luma = frame.to_ndarray()[:480]
    assert luma.max() > 200  # the text
    assert np.median(luma) < 150  # the background

    mask = render_text("Hi", 2)
    assert mask.shape == (14, 22)
    assert set(np.unique(mask)) == {0, 1}
    assert render_text("~", 1).tolist() == render_text("?", 1).tolist()
