"""One room's live conference: its legs, its mixer, what the roster shows.

The conference is the one place where legs of every kind meet.  A leg is any
object with ``leg_id``, ``kind``, ``display_name``, an ``on_audio`` attribute
the conference sets (the leg calls it with its decoded mono frames),
``deliver_audio(pcm)`` (the conference calls it once a tick with the leg's
mix) and ``roster_info()``.  Phone legs (:mod:`bridge.phone`) and browser legs
(:class:`webrtc.peer.BrowserLeg`) both fit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from mixer import AudioMixer, UnknownLegError

from .audit import AuditLog
from .config import MediaConfig

logger = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]
AudioCallback = Callable[[str, Pcm | bytes], None]

#: How long a leg that has ended stays on the roster with its final state.
ENDED_VISIBLE_SECONDS = 120.0


class Leg(Protocol):
    leg_id: str
    kind: str
    display_name: str
    on_audio: AudioCallback | None

    def deliver_audio(self, pcm: Pcm) -> None: ...

    def roster_info(self) -> dict[str, Any]: ...


class ConferenceFull(Exception):
    """The room already holds its maximum of participants."""


@dataclass
class _Member:
    leg: Any
    rate: int
    joined_at: float
    mixed: bool = False


@dataclass
class _Departed:
    info: dict[str, Any]
    left_at: float


class Conference:
    """A room's conference: legs in the roster, legs in the mix."""

    def __init__(
        self,
        room: str,
        media: MediaConfig,
        audit: AuditLog | None,
        now: Callable[[], float],
        max_participants: int = 100,
        recording: bool = False,
    ) -> None:
        self.room = room
        self.recording = recording
        self.max_participants = max_participants
        self._audit = audit
        self._now = now
        self.mixer = AudioMixer(
            rate=media.mixing_rate,
            frame_ms=media.frame_ms,
            max_mixed=media.max_mixed,
            jitter_ms=media.jitter_ms,
            max_jitter_ms=media.max_jitter_ms,
        )
        self._members: dict[str, _Member] = {}
        self._departed: dict[str, _Departed] = {}
        self._floor: list[str] = []  # recent active speakers, latest first
        self.ticks = 0

    # membership

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def get(self, leg_id: str) -> Any | None:
        member = self._members.get(leg_id)
        return None if member is None else member.leg

    def legs(self) -> list[Any]:
        return [member.leg for member in self._members.values()]

    def add_leg(self, leg: Any, rate: int | None = None, mixed: bool = True) -> None:
        """Puts a leg on the roster, and into the mix unless ``mixed`` is False.

        A phone leg is on the roster while it rings and joins the mix when
        answered (:meth:`start_mixing`).
        """
        if leg.leg_id in self._members:
            raise ValueError(f"leg {leg.leg_id!r} is already in room {self.room!r}")
        if len(self._members) >= self.max_participants:
            raise ConferenceFull(
                f"room {self.room!r} is full ({self.max_participants} participants)"
            )
        if rate is None:
            rate = getattr(leg, "rate", 48000)  # browsers: Opus at 48 kHz
        self._members[leg.leg_id] = _Member(leg, rate, self._now())
        self._departed.pop(leg.leg_id, None)
        logger.info(
            "room %s: %s leg %s (%s) added",
            self.room,
            leg.kind,
            leg.leg_id,
            leg.display_name,
        )
        if mixed:
            self.start_mixing(leg.leg_id)

    def start_mixing(self, leg_id: str) -> None:
        member = self._members[leg_id]
        if member.mixed:
            return
        self.mixer.add_leg(leg_id, member.rate)
        member.mixed = True
        member.leg.on_audio = self._on_audio
        if self._audit is not None:
            self._audit.record(
                "joined",
                self.room,
                leg=leg_id,
                kind=member.leg.kind,
                name=member.leg.display_name,
            )

    def remove_leg(self, leg_id: str, reason: str) -> None:
        """Takes a leg off the mix and the roster; accepts a leg already gone."""
        member = self._members.pop(leg_id, None)
        if member is None:
            return
        member.leg.on_audio = None
        if member.mixed:
            self.mixer.remove_leg(leg_id)
            if self._audit is not None:
                self._audit.record("left", self.room, leg=leg_id, reason=reason)
        info = dict(member.leg.roster_info())
        info["ended_reason"] = reason
        self._departed[leg_id] = _Departed(info, self._now())
        if leg_id in self._floor:
            self._floor.remove(leg_id)
        logger.info("room %s: leg %s removed (%s)", self.room, leg_id, reason)

    # media

    def _on_audio(self, leg_id: str, pcm: Pcm | bytes) -> None:
        try:
            if isinstance(pcm, bytes):
                self.mixer.push_bytes(leg_id, pcm)
            else:
                self.mixer.push(leg_id, pcm, self._now())
        except UnknownLegError:
            pass  # a frame still in flight from a leg that just left
        except ValueError as exc:
            logger.warning("room %s: leg %s sent bad audio: %s", self.room, leg_id, exc)

    def tick(self, now: float) -> None:
        """One frame: mix, hand each leg its audio, update what legs see."""
        self.ticks += 1
        out = self.mixer.tick(now)
        for waiting in list(self._members.values()):
            if not waiting.mixed:
                # legs on the way in (a phone typing its PIN) get their prompts
                idle = getattr(waiting.leg, "tick_unmixed", None)
                if idle is not None:
                    idle(now)
        for leg_id, pcm in out.items():
            member = self._members.get(leg_id)
            if member is None:
                continue
            try:
                member.leg.deliver_audio(pcm)
            except Exception:
                logger.exception(
                    "room %s: leg %s failed to take audio", self.room, leg_id
                )
        self._update_video()

    def _update_video(self) -> None:
        # until composition lands: each browser sees the active speaker (the
        # last one while nobody speaks), never itself; an audio-only speaker
        # shows as a tile with their name
        speaker = self.mixer.active_speaker
        if speaker is not None and (not self._floor or self._floor[0] != speaker):
            self._floor = [speaker] + [leg for leg in self._floor if leg != speaker][:3]
        for member in self._members.values():
            viewer = member.leg
            show = getattr(viewer, "show_video", None)
            if show is None:
                continue
            source = self._source_for(viewer)
            if source is None:
                show(None, "waiting for others")
                continue
            frame = getattr(source, "latest_video_frame", None)
            show(frame, source.display_name)

    def _source_for(self, viewer: Any) -> Any | None:
        for leg_id in self._floor:
            member = self._members.get(leg_id)
            if member is not None and member.leg is not viewer:
                return member.leg
        for member in self._members.values():
            leg = member.leg
            if (
                leg is not viewer
                and getattr(leg, "latest_video_frame", None) is not None
            ):
                return leg
        return None

    # roster

    def roster(self) -> dict[str, Any]:
        now = self._now()
        for leg_id in [
            leg_id
            for leg_id, gone in self._departed.items()
            if now - gone.left_at > ENDED_VISIBLE_SECONDS
        ]:
            del self._departed[leg_id]

        legs = []
        speaker = self.mixer.active_speaker
        for leg_id, member in self._members.items():
            info = dict(member.leg.roster_info())
            info["leg"] = leg_id
            info["joined_at"] = round(member.joined_at, 3)
            info["in_mix"] = member.mixed
            if member.mixed:
                info["level_db"] = round(self.mixer.level(leg_id), 1)
                info["speaking"] = self.mixer.is_speaking(leg_id)
                info["muted_by_host"] = self.mixer.is_muted(leg_id)
                stats = self.mixer.buffer_stats(leg_id)
                info["media"] = {
                    "frames_received": stats.frames_pushed,
                    "buffered_ms": round(self.mixer.buffered_ms(leg_id), 2),
                    "underruns": stats.underruns,
                    "overflows": stats.overflows,
                    "samples_dropped": stats.samples_dropped,
                    "samples_repeated": stats.samples_repeated,
                }
            info["active_speaker"] = leg_id == speaker
            legs.append(info)
        ended = [dict(gone.info, leg=leg_id) for leg_id, gone in self._departed.items()]
        return {
            "room": self.room,
            "recording": self.recording,
            "mixer_ticks": self.ticks,
            "participants": len(self._members),
            "active_speaker": speaker,
            "legs": legs,
            "ended": ended,
        }
