"""The signalling WebSocket: a Twisted adapter around :mod:`webrtc.signalling`.

The bridge mounts :func:`signalling_resource` at ``/rooms/{room}/ws`` on its
HTTPS site. One :class:`SignallingProtocol` serves one browser tab: it waits
for ``join``, asks the :class:`RoomDirectory` to authenticate it, creates a
:class:`~webrtc.peer.BrowserLeg`, adds it to the conference, answers the offer,
and removes the leg when the tab leaves, closes, stops answering WebSocket
pings, or the leg's media fails.

A refused message is answered with ``{"type": "error", "message": ...}`` and
the connection goes on; a refused join, an offer that cannot be answered, or
too many refused messages end it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.websocket import WebSocketResource, WebSocketTransport

from webrtc import signalling as sig
from webrtc.peer import BrowserLeg, OfferRefused

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between WebSocket pings, and without a pong before giving up.
PING_INTERVAL = 2.0
PONG_TIMEOUT = 6.0

#: Seconds a new connection has to send its ``join``.
JOIN_TIMEOUT = 30.0

#: Seconds the reactor's shutdown waits for legs still closing.
SHUTDOWN_TIMEOUT = 5.0

#: Refused messages tolerated on one connection before it is closed.
MAX_REFUSED = 20

#: The only thing a browser learns from a refused join.
AUTH_FAILED = "room or password not accepted"

#: What a browser learns when its leg cannot be added (a full room).
ROOM_REFUSED = "the room cannot take another participant now"

#: WebSocket close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011


class AuthenticationFailed(Exception):
    """A join was refused. Its text is never shown to the browser."""


class Conference(Protocol):
    """What the signalling adapter needs from a room's conference."""

    def add_leg(self, leg: BrowserLeg) -> None:
        """Start mixing ``leg``: set ``leg.on_audio``, feed ``deliver_audio``."""

    def remove_leg(self, leg_id: str, reason: str) -> None:
        """Stop mixing the leg. Must accept an id already removed."""


class RoomDirectory(Protocol):
    """The bridge's rooms, as the signalling adapter sees them."""

    def authenticate(
        self, room: str, password: str, peer_address: str
    ) -> Conference | defer.Deferred[Conference]:
        """The room's conference, or raise (or fail with)
        :class:`AuthenticationFailed`, whether the room exists or not."""


LegFactory = Callable[[str, sig.Join, str], BrowserLeg]


class DelayedCall(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The part of ``IReactorTime`` used here (``task.Clock`` in tests)."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object
    ) -> DelayedCall: ...


def default_leg_factory(leg_id: str, join: sig.Join, peer_address: str) -> BrowserLeg:
    return BrowserLeg(
        leg_id,
        join.name,
        audio=join.audio,
        video=join.video,
        peer_address=peer_address,
    )


def _as_deferred(coro: Coroutine[Any, Any, T]) -> defer.Deferred[T]:
    return defer.Deferred.fromFuture(asyncio.ensure_future(coro))


class SignallingProtocol:
    """One browser tab's signalling connection (a ``WebSocketProtocol``)."""

    def __init__(
        self,
        directory: RoomDirectory,
        room: str,
        peer_address: str,
        clock: Clock,
        leg_factory: LegFactory = default_leg_factory,
        registry: set[SignallingProtocol] | None = None,
        closing: set[defer.Deferred[None]] | None = None,
    ) -> None:
        self._directory = directory
        self._room = room
        self._peer = peer_address
        self._registry = registry
        self._closing = closing
        self._clock = clock
        self._leg_factory = leg_factory
        self._session = sig.SignallingSession()
        self._transport: WebSocketTransport | None = None
        self._open = False
        self._conference: Conference | None = None
        self.leg: BrowserLeg | None = None
        self._ended = False
        self._busy = False  # a join or an offer is being handled
        self._last_heard = 0.0
        self._ping_call: DelayedCall | None = None
        self._join_call: DelayedCall | None = None

    # WebSocketProtocol

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = transport

    def negotiationFinished(self) -> None:
        self._open = True
        self._last_heard = self._clock.seconds()
        self._join_call = self._clock.callLater(
            JOIN_TIMEOUT, self._end, "no join", CLOSE_POLICY
        )
        self._ping_call = self._clock.callLater(PING_INTERVAL, self._ping)
        logger.info("signalling from %s for room %r", self._peer, self._room)

    def pongReceived(self, payload: bytes) -> None:
        self._last_heard = self._clock.seconds()

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self._last_heard = self._clock.seconds()
        self._refuse(sig.MalformedMessage("binary messages are not accepted"))

    def textMessageReceived(self, message: str) -> None:
        self._last_heard = self._clock.seconds()
        if self._ended:
            return
        try:
            event = self._session.receive(message)
        except sig.SignallingError as exc:
            self._refuse(exc)
            return
        logger.debug("room %r from %s: %r", self._room, self._peer, event)

        if isinstance(event, sig.Join):
            self._join(event)
        elif isinstance(event, sig.Offer):
            self._offer(event)
        elif isinstance(event, sig.Candidate):
            self._candidate(event)
        elif isinstance(event, sig.Mute):
            if self.leg is not None:
                self.leg.set_muted(event.audio, event.video)
        elif isinstance(event, sig.Leave):
            self._end("left", CLOSE_NORMAL)

    def connectionLost(self, reason: Failure) -> None:
        self._open = False
        if self._registry is not None:
            self._registry.discard(self)
        self._end("signalling closed", None)

    # messages

    def _send(self, text: str) -> None:
        if self._open and self._transport is not None:
            self._transport.sendTextMessage(text)

    def _refuse(self, error: sig.SignallingError) -> None:
        logger.warning("room %r from %s: refused: %s", self._room, self._peer, error)
        self._send(sig.error_message(str(error)))
        if self._session.refused > MAX_REFUSED:
            self._end("too many refused messages", CLOSE_POLICY)

    def _join(self, join: sig.Join) -> None:
        if self._busy:
            self._refuse(sig.OutOfOrder("join already under way"))
            return
        self._busy = True
        d = defer.maybeDeferred(
            self._directory.authenticate, self._room, join.password, self._peer
        )
        d.addCallbacks(self._joined, self._join_failed, callbackArgs=(join,))

    def _joined(self, conference: Conference, join: sig.Join) -> None:
        self._busy = False
        if self._ended:
            return
        if self._join_call is not None and self._join_call.active():
            self._join_call.cancel()
        leg_id = f"web-{secrets.token_hex(4)}"
        leg = self._leg_factory(leg_id, join, self._peer)
        try:
            conference.add_leg(leg)
        except Exception as exc:  # noqa: BLE001 - a full room, or a bug there
            logger.warning("room %r: leg not added: %s", self._room, exc)
            self._send(sig.error_message(ROOM_REFUSED, fatal=True))
            _as_deferred(leg.close("not added"))
            self._end("not added", CLOSE_POLICY)
            return
        leg.on_ended = self._leg_ended
        self.leg = leg
        self._conference = conference
        self._session.joined()
        logger.info(
            "leg %s: %r joined room %r from %s",
            leg_id,
            join.name,
            self._room,
            self._peer,
        )
        self._send(sig.joined_message(leg_id, self._room))

    def _join_failed(self, failure: Failure) -> None:
        self._busy = False
        if isinstance(failure.value, AuthenticationFailed):
            logger.warning("room %r: join refused for %s", self._room, self._peer)
        else:
            logger.error(
                "room %r: join failed: %s", self._room, failure.getErrorMessage()
            )
        self._send(sig.error_message(AUTH_FAILED, fatal=True))
        self._end("join refused", CLOSE_POLICY)

    def _offer(self, offer: sig.Offer) -> None:
        leg = self.leg
        if leg is None or self._busy:
            self._refuse(sig.OutOfOrder("offer while another is being answered"))
            return
        self._busy = True
        self._session.answered()
        d = _as_deferred(leg.accept_offer(offer.sdp))
        d.addCallbacks(self._answered, self._offer_failed)

    def _answered(self, sdp: object) -> None:
        self._busy = False
        if isinstance(sdp, str):
            self._send(sig.answer_message(sdp))

    def _offer_failed(self, failure: Failure) -> None:
        self._busy = False
        if isinstance(failure.value, OfferRefused):
            text = failure.getErrorMessage()[:200]
        else:
            logger.error("leg answer failed: %s", failure.getTraceback())
            text = "offer could not be answered"
        self._send(sig.error_message(text, fatal=True))
        self._end("offer refused", CLOSE_POLICY)

    def _candidate(self, candidate: sig.Candidate) -> None:
        leg = self.leg
        if leg is None:
            return
        d = _as_deferred(
            leg.add_candidate(
                candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
            )
        )
        d.addErrback(lambda f: self._refuse(sig.InvalidField(f.getErrorMessage())))

    # liveness and the end

    def _ping(self) -> None:
        self._ping_call = None
        if self._ended or not self._open or self._transport is None:
            return
        if self._clock.seconds() - self._last_heard > PONG_TIMEOUT:
            self._end("signalling timeout", CLOSE_POLICY)
            return
        self._transport.ping(b"cb")
        self._ping_call = self._clock.callLater(PING_INTERVAL, self._ping)

    def _leg_ended(self, leg_id: str, reason: str) -> None:
        self._end(reason, CLOSE_NORMAL)

    def _end(self, reason: str, code: int | None) -> None:
        """Remove the leg, close it and the WebSocket. Idempotent."""
        if self._ended:
            return
        self._ended = True
        self._session.close()
        for call in (self._ping_call, self._join_call):
            if call is not None and call.active():
                call.cancel()

        leg = self.leg
        if leg is not None:
            if self._conference is not None:
                self._conference.remove_leg(leg.leg_id, reason)
            logger.info("leg %s: removed (%s)", leg.leg_id, reason)
            closed = _as_deferred(leg.close(reason))
            closed.addErrback(
                lambda f: logger.error("leg %s: close failed: %s", leg.leg_id, f)
            )
            if self._closing is not None and not closed.called:
                # the reactor must not stop before aiortc has let go
                closing = self._closing
                closing.add(closed)
                closed.addBoth(_forget, closing, closed)
        if code is not None and self._open and self._transport is not None:
            self._send(sig.left_message(reason))
            self._open = False
            self._transport.loseConnection(code)


def _forget(
    result: object, pending: set[defer.Deferred[None]], d: defer.Deferred[None]
) -> object:
    pending.discard(d)
    return result


def room_from_path(path: bytes) -> str:
    """The room of a ``/rooms/{room}/ws`` request path (percent-decoded)."""
    parts = path.split(b"?", 1)[0].split(b"/")
    if len(parts) != 4 or parts[1] != b"rooms" or parts[3] != b"ws" or not parts[2]:
        raise ValueError("path is not /rooms/{room}/ws")
    return urllib.parse.unquote(parts[2].decode("ascii", "replace"))


class SignallingFactory:
    """Builds a :class:`SignallingProtocol` per upgraded request."""

    def __init__(
        self,
        directory: RoomDirectory,
        clock: Clock,
        room: str | None = None,
        leg_factory: LegFactory = default_leg_factory,
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._room = room
        self._leg_factory = leg_factory
        #: live connections, for tests and shutdown
        self.protocols: set[SignallingProtocol] = set()
        #: closes of legs whose connection has ended, still under way
        self.closing: set[defer.Deferred[None]] = set()

    def wait_closed(self) -> defer.Deferred[None]:
        """Fires once every leg close under way has finished (or failed).

        aiortc's decoder threads are not daemons: a peer connection still
        open when the reactor stops keeps the process alive.
        """
        pending = list(self.closing)
        done = defer.DeferredList(pending, consumeErrors=True)
        return done.addCallback(lambda _: None)

    def buildProtocol(self, request: Request) -> SignallingProtocol:
        room = self._room
        if room is None:
            room = room_from_path(request.path)
        address = request.getClientAddress()  # type: ignore[no-untyped-call]
        peer = getattr(address, "host", str(address))
        protocol = SignallingProtocol(
            self._directory,
            room,
            peer,
            self._clock,
            self._leg_factory,
            registry=self.protocols,
            closing=self.closing,
        )
        self.protocols.add(protocol)
        return protocol


def signalling_resource(
    directory: RoomDirectory,
    clock: Clock,
    room: str | None = None,
    leg_factory: LegFactory = default_leg_factory,
) -> Resource:
    """A ``WebSocketResource`` for ``/rooms/{room}/ws``.

    With ``room`` None the room is read from the request path.

    FIXME: Twisted reassembles a fragmented message before handing it over,
    without a limit, so :data:`webrtc.signalling.MAX_MESSAGE_SIZE` is checked
    only after the whole message has been buffered.
    """
    factory = SignallingFactory(directory, clock, room, leg_factory)
    add_trigger = getattr(clock, "addSystemEventTrigger", None)
    if add_trigger is not None:  # a reactor, not a test's clock

        def before_shutdown() -> defer.Deferred[None]:
            waiting = factory.wait_closed()
            waiting.addTimeout(SHUTDOWN_TIMEOUT, clock)  # type: ignore[arg-type]
            return waiting.addErrback(
                lambda f: logger.error("legs still closing at shutdown: %s", f.value)
            )

        add_trigger("before", "shutdown", before_shutdown)
    return WebSocketResource(factory)
