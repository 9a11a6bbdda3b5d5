"""Voice-switched video: every browser sees the active speaker.

Until the video composer lands, a conference calls :meth:`VideoSwitch.update`
once per media tick with the mixer's active speaker. Each browser is shown the
latest frame of the active speaker (its own picture never: it keeps the
previous speaker), or a tile with the speaker's name when that participant
sends no video (a telephone, a camera turned off).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import av


class VideoSource(Protocol):
    @property
    def latest_video_frame(self) -> av.VideoFrame | None: ...


class VideoSink(Protocol):
    leg_id: str

    def show_video(self, frame: av.VideoFrame | None, label: str = "") -> None: ...


class VideoSwitch:
    """Remembers, per viewer, whom it was last shown."""

    def __init__(self) -> None:
        self._showing: dict[str, str] = {}

    def update(
        self,
        active_speaker: str | None,
        sinks: Iterable[VideoSink],
        sources: Mapping[str, VideoSource],
        names: Mapping[str, str],
    ) -> None:
        """Point every sink at the speaker (or whom it showed before)."""
        live = set()
        for sink in sinks:
            live.add(sink.leg_id)
            target = self._target(sink.leg_id, active_speaker, sources, names)
            if target is None:
                sink.show_video(None, "waiting for others")
                continue
            source = sources.get(target)
            frame = source.latest_video_frame if source is not None else None
            sink.show_video(frame, names.get(target, ""))
        for gone in set(self._showing) - live:
            del self._showing[gone]

    def _target(
        self,
        viewer: str,
        speaker: str | None,
        sources: Mapping[str, VideoSource],
        names: Mapping[str, str],
    ) -> str | None:
        if speaker is not None and speaker != viewer and speaker in names:
            self._showing[viewer] = speaker
            return speaker
        previous = self._showing.get(viewer)
        if previous is not None and previous in names:
            return previous
        # nobody has spoken yet: anyone else, preferably someone with video
        others = [leg for leg in names if leg != viewer]
        with_video = [
            leg
            for leg in others
            if leg in sources and sources[leg].latest_video_frame is not None
        ]
        candidates = with_video or others
        if not candidates:
            return None
        self._showing[viewer] = candidates[0]
        return candidates[0]
