"""The bridge: rooms, their conferences, dial-out, and the rules around them.

:class:`Bridge` holds the state database, the audit trail, one
:class:`~bridge.conference.Conference` per room with someone in it, the media
clock and the SIP worker pool.  The HTTPS API and the browsers' signalling
call into it; it never touches HTTP itself.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from twisted.internet import defer, task, threads
from twisted.internet.defer import Deferred

from sip.config import SipConfig
from sip.events import CallEvent
from sip.uri import check_sip_uri

from .audit import AUDIT_NAME, AuditLog
from .clock import MediaClock
from .conference import Conference
from .config import Config
from .confirm import PinGate, check_pin
from .phone import PhoneLeg
from .prompts import Prompts
from .rooms import RoomStore, verify_host_key, verify_password

logger = logging.getLogger(__name__)

DATABASE_NAME = "carebridge.db"
#: Failed joins from one address before answers slow down, and the cap.
FREE_FAILURES = 3
MAX_FAILURE_DELAY = 30.0
FAILURE_MEMORY = 900.0
MAX_DISPLAY_NAME = 64


class AccessDenied(Exception):
    """Wrong room or wrong credentials; deliberately says nothing more."""


class NotFound(LookupError):
    pass


class Unavailable(Exception):
    """The bridge cannot do this now (no SIP, no capacity)."""


class Bridge:
    def __init__(
        self,
        config: Config,
        reactor: Any,
        state_dir: Path,
        tls_cert: Path,
        tls_key: Path,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.state_dir = state_dir
        self.store = RoomStore(state_dir / DATABASE_NAME)
        self.audit = AuditLog(state_dir / AUDIT_NAME)
        self.conferences: dict[str, Conference] = {}
        self.clock = MediaClock(
            reactor, config.media.frame_ms, lambda: self.conferences.values()
        )
        self._phones: dict[str, tuple[str, PhoneLeg]] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self.sip: Any = None
        self._prompts: Prompts | None = None
        for declaration in config.declared_rooms:
            self.store.declare(declaration)
        if config.sip.enabled:
            self.sip = self._make_sip(tls_cert, tls_key)

    def _make_sip(self, cert: Path, key: Path) -> Any:
        from sip.pool import SipService

        settings = self.config.sip
        if settings.insecure_lab_mode:
            logger.warning(
                "!!! sip.insecure_lab_mode is ON: plain SIP and plain RTP are "
                "accepted. Never run a real conference like this. !!!"
            )
        sip_config = SipConfig(
            tls_cert=str(cert),
            tls_key=str(key),
            ca_file=settings.ca_file or None,
            verify_server=settings.verify_server,
            proxy=settings.proxy or None,
            username=settings.username or None,
            password=settings.password or None,
            max_workers=settings.max_workers,
            calls_per_worker=settings.calls_per_worker,
            no_answer_timeout=settings.no_answer_timeout,
            insecure_lab_mode=settings.insecure_lab_mode,
            local_address=self.config.server.host,
        )
        return SipService(self.reactor, sip_config, self._sip_event, self._sip_audio)

    # lifecycle

    def start(self) -> Deferred[None]:
        self.clock.start()
        if self.sip is not None:
            return defer.maybeDeferred(self.sip.start)
        return defer.succeed(None)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Ends every leg and stops the clock and the SIP workers."""
        closing = []
        for conference in list(self.conferences.values()):
            for leg in conference.legs():
                closing.append(self._end_leg(conference, leg, "bridge shutting down"))
        if closing:
            yield defer.DeferredList(closing, consumeErrors=True)
        if self.sip is not None:
            yield self.sip.stop()
        self.clock.stop()
        self.audit.close()
        self.store.close()

    # rooms

    def conference(self, room: str) -> Conference:
        conference = self.conferences.get(room)
        if conference is None:
            conference = Conference(
                room,
                self.config.media,
                self.audit,
                now=self.reactor.seconds,
                max_participants=self.config.rooms.max_participants,
                recording=self.config.recording.enabled,
            )
            self.conferences[room] = conference
        return conference

    def check_host(self, room: str, key: str | None) -> None:
        """Raises :class:`AccessDenied` unless ``key`` is the room's host key."""
        stored = self.store.get(room)
        if (
            stored is None
            or not key
            or not verify_host_key(key, stored.host_key_sha256)
        ):
            raise AccessDenied()

    def roster(self, room: str) -> dict[str, Any]:
        conference = self.conferences.get(room)
        if conference is None:
            return {
                "room": room,
                "recording": self.config.recording.enabled,
                "participants": 0,
                "active_speaker": None,
                "legs": [],
                "ended": [],
            }
        return conference.roster()

    # dial-out

    def dial(
        self,
        room: str,
        uri: str,
        display_name: str | None = None,
        pin: str | None = None,
    ) -> PhoneLeg:
        """Calls ``uri`` into ``room``.

        Without a PIN the leg joins the mix when answered; with one, only
        after the person has typed it on the keypad (three attempts).
        """
        check_sip_uri(uri)
        if pin is not None:
            check_pin(pin)
        if self.sip is None:
            raise Unavailable("SIP is disabled in this bridge's configuration")
        name = (display_name or uri.split(":", 1)[1].split("@")[0])[:MAX_DISPLAY_NAME]
        leg_id = "p-" + secrets.token_hex(6)
        conference = self.conference(room)
        rate = self.sip_rate
        gate = None
        if pin is not None:
            frame = rate * self.config.media.frame_ms // 1000
            gate = PinGate(pin, self.prompts(rate).get, frame)
        leg = PhoneLeg(
            leg_id,
            uri,
            name,
            rate,
            self.sip.send_audio,
            self.sip.hangup,
            gate=gate,
            now=self.reactor.seconds,
        )
        leg.on_confirmation = lambda leg_id, outcome: self._confirmed(
            room, leg, outcome
        )
        conference.add_leg(leg, rate=leg.rate, mixed=False)
        self._phones[leg_id] = (room, leg)
        try:
            self.sip.dial(leg_id, uri)
        except Exception as exc:
            del self._phones[leg_id]
            conference.remove_leg(leg_id, f"dial failed: {exc}")
            self.audit.record("dialout-refused", room, leg=leg_id, reason=str(exc))
            raise
        self.audit.record(
            "dialout",
            room,
            leg=leg_id,
            uri=uri,
            name=name,
            pin_required=gate is not None,
        )
        return leg

    def prompts(self, rate: int) -> Prompts:
        if self._prompts is None or self._prompts.rate != rate:
            self._prompts = Prompts(self.state_dir / "prompts", rate)
        return self._prompts

    def _confirmed(self, room: str, leg: PhoneLeg, outcome: str) -> None:
        conference = self.conferences.get(room)
        gate = leg.gate
        attempts = gate.attempts_made if gate is not None else 0
        if outcome == "accepted":
            self.audit.record("pin-accepted", room, leg=leg.leg_id, attempts=attempts)
            if conference is not None and leg.leg_id in conference:
                conference.start_mixing(leg.leg_id)
            return
        failure = gate.failure if gate is not None else None
        leg.end_reason = f"PIN not confirmed ({failure or 'refused'})"
        self.audit.record(
            "pin-refused", room, leg=leg.leg_id, attempts=attempts, why=failure
        )
        leg.hangup()

    @property
    def sip_rate(self) -> int:
        from sip.pool import SAMPLE_RATE

        return int(SAMPLE_RATE)

    def _sip_event(self, leg_id: str, event: CallEvent) -> None:
        entry = self._phones.get(leg_id)
        if entry is None:
            return
        room, leg = entry
        conference = self.conferences.get(room)
        leg.handle(event)
        if event.kind == "dtmf":
            return
        logger.info("room %s: phone leg %s %s", room, leg_id, event.kind)
        if conference is None:
            return
        if event.kind == "answered":
            self.audit.record(
                "answered", room, leg=leg_id, codec=event.codec, srtp=event.srtp_suite
            )
            if leg.gate is None:
                conference.start_mixing(leg_id)
        elif event.terminal:
            del self._phones[leg_id]
            detail = {"status": event.status, "by": event.by, "reason": event.reason}
            self.audit.record(
                f"call-{event.kind}",
                room,
                leg=leg_id,
                **{key: value for key, value in detail.items() if value is not None},
            )
            conference.remove_leg(leg_id, leg.end_reason or event.kind)

    def _sip_audio(self, leg_id: str, pcm: bytes) -> None:
        entry = self._phones.get(leg_id)
        if entry is not None:
            entry[1].received(pcm)

    # the host's powers

    def expel(self, room: str, leg_id: str, by: str = "host") -> Deferred[None]:
        """Removes a participant at once: media stops, the leg is hung up."""
        conference = self.conferences.get(room)
        leg = conference.get(leg_id) if conference is not None else None
        if conference is None or leg is None:
            raise NotFound(f"no leg {leg_id!r} in room {room!r}")
        self.audit.record("expelled", room, leg=leg_id, by=by, name=leg.display_name)
        return self._end_leg(conference, leg, f"expelled by {by}")

    def _end_leg(self, conference: Conference, leg: Any, reason: str) -> Deferred[None]:
        # out of the mix first, so not one more frame flows either way
        conference.remove_leg(leg.leg_id, reason)
        if isinstance(leg, PhoneLeg):
            self._phones.pop(leg.leg_id, None)
            leg.hangup()
            return defer.succeed(None)
        close = getattr(leg, "close_deferred", None)
        if close is not None:
            return close(reason)  # type: ignore[no-any-return]
        return defer.succeed(None)

    # browsers (webrtc.ws.RoomDirectory)

    def authenticate(
        self, room: str, password: str, peer_address: str
    ) -> Deferred[Conference]:
        """The room's conference if the password is right; slow for guessers."""
        from webrtc.ws import AuthenticationFailed

        count, _ = self._failures.get(peer_address, (0, 0.0))
        delay = 0.0
        if count >= FREE_FAILURES:
            delay = min(2.0 ** (count - FREE_FAILURES), MAX_FAILURE_DELAY)
        stored = self.store.get(room)
        hashed = stored.password_scrypt if stored is not None else ""

        def check() -> bool:
            # scrypt is slow on purpose: keep it off the reactor thread
            if not hashed:
                verify_password(password, DUMMY_HASH)
                return False
            return verify_password(password, hashed)

        def decided(ok: bool) -> Deferred[Conference]:
            now = self.reactor.seconds()
            if not ok:
                self._forget_old_failures(now)
                self._failures[peer_address] = (count + 1, now)
                self.audit.record("join-refused", room, address=peer_address)

                def refuse() -> Conference:
                    raise AuthenticationFailed("refused")

                return task.deferLater(self.reactor, delay, refuse)
            self._failures.pop(peer_address, None)
            return task.deferLater(self.reactor, 0, lambda: self.conference(room))

        checking: Deferred[bool] = threads.deferToThread(check)
        return checking.addCallback(decided)

    def _forget_old_failures(self, now: float) -> None:
        stale = [
            address
            for address, (_, when) in self._failures.items()
            if now - when > FAILURE_MEMORY
        ]
        for address in stale:
            del self._failures[address]


# a real scrypt hash of a random password, so unknown rooms cost the same time
DUMMY_HASH = (
    "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
)
