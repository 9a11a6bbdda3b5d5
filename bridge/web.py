"""The HTTPS site: join pages, browser signalling and the host API.

``/rooms/{room}``            the join page (static, no outside assets)
``/rooms/{room}/ws``         WebSocket signalling for browser legs
``/static/...``              the page's scripts and styles
``/api/health``              liveness, no authentication
``/api/rooms/{room}/...``    the host API, authenticated with the host key:

    POST   /api/rooms/{room}/dialout     {"uri": "sips:...", "display_name": ...,
                                          "pin": "2468" (optional)}
    GET    /api/rooms/{room}/roster
    DELETE /api/rooms/{room}/legs/{id}

The host key goes in ``Authorization: Bearer <key>``.  Errors are JSON,
``{"error": "..."}``, with 400 for a malformed request, 401 for a missing or
wrong key (the same whether or not the room exists), 404 for an unknown leg
and 503 when the bridge cannot place a call now.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any, cast

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import File

from sip.pool import CapacityError

from .conference import ConferenceFull
from .config import ROOM_NAME
from .confirm import PIN_PATTERN
from .core import AccessDenied, Bridge, NotFound, Unavailable

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
SECURITY_HEADERS = {
    b"Strict-Transport-Security": b"max-age=31536000",
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Content-Security-Policy": (
        b"default-src 'self'; connect-src 'self' wss:; img-src 'self' data:; "
        b"media-src 'self' blob: mediastream:; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'"
    ),
    b"Permissions-Policy": b"camera=(self), microphone=(self)",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _secure(request: Request) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


def _send_json(request: Request, status: int, body: dict[str, Any]) -> None:
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.write(json.dumps(body).encode("utf-8"))
    request.finish()


def _host_key(request: Request) -> str | None:
    raw = request.getHeader(b"authorization")
    if not raw:
        return None
    header = raw.decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _json_body(request: Request) -> dict[str, Any]:
    raw_type = request.getHeader(b"content-type") or b""
    content_type = raw_type.decode("latin-1").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(400, "body must be JSON (Content-Type: application/json)")
    assert request.content is not None
    raw = request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(400, f"body exceeds {MAX_BODY} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


class HostApi(Resource):
    """``/api/rooms/{room}/...``: everything a host does over HTTPS."""

    isLeaf = True

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self._bridge = bridge

    def render(self, request: Request) -> Any:
        _secure(request)
        try:
            result = self._route(request)
        except ApiError as exc:
            _send_json(request, exc.status, {"error": exc.message})
            return NOT_DONE_YET
        except Exception:
            logger.exception("host API request failed")
            _send_json(request, 500, {"error": "internal error"})
            return NOT_DONE_YET

        deferred = defer.maybeDeferred(lambda: result)
        deferred.addCallbacks(
            lambda reply: _send_json(request, reply[0], reply[1]),
            lambda failure: self._failed(request, failure),
        )
        return NOT_DONE_YET

    def _failed(self, request: Request, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, ApiError):
            _send_json(request, error.status, {"error": error.message})
            return
        logger.error("host API request failed: %s", failure.getTraceback())
        _send_json(request, 500, {"error": "internal error"})

    def _route(self, request: Request) -> Any:
        # postpath after /api/rooms: [room, action, ...]
        parts = [part.decode("utf-8", "replace") for part in request.postpath or []]
        method = request.method.decode("ascii", "replace")
        if len(parts) < 2 or not parts[0]:
            raise ApiError(404, "no such API path")
        room, action = parts[0], parts[1]
        if not ROOM_NAME.match(room):
            # a malformed name cannot be a room: same answer as a wrong key
            raise ApiError(401, "host key missing or not valid for this room")
        try:
            self._bridge.check_host(room, _host_key(request))
        except AccessDenied:
            raise ApiError(401, "host key missing or not valid for this room") from None

        if action == "roster" and len(parts) == 2:
            self._allow(method, "GET")
            return 200, self._bridge.roster(room)
        if action == "dialout" and len(parts) == 2:
            self._allow(method, "POST")
            return self._dialout(room, request)
        if action == "legs" and len(parts) == 3:
            self._allow(method, "DELETE")
            return self._expel(room, parts[2])
        raise ApiError(404, "no such API path")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiError(405, f"method {method} not allowed here; use {allowed}")

    def _dialout(self, room: str, request: Request) -> tuple[int, dict[str, Any]]:
        body = _json_body(request)
        unknown = sorted(set(body) - {"uri", "display_name", "pin"})
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
        uri = body.get("uri")
        if not isinstance(uri, str) or not uri:
            raise ApiError(400, "field 'uri' is required: a sip: or sips: URI")
        name = body.get("display_name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 64):
            raise ApiError(
                400, "field 'display_name' must be a string of 1 to 64 characters"
            )
        pin = body.get("pin")
        if pin is not None and not (isinstance(pin, str) and PIN_PATTERN.match(pin)):
            raise ApiError(400, "field 'pin' must be a string of 4 to 12 digits")
        try:
            leg = self._bridge.dial(room, uri, name, pin)
        except Unavailable as exc:
            raise ApiError(503, str(exc)) from None
        except ConferenceFull as exc:
            raise ApiError(409, str(exc)) from None
        except CapacityError as exc:
            raise ApiError(503, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, f"field 'uri': {exc}") from None
        return 201, {
            "leg": leg.leg_id,
            "state": leg.state,
            "uri": leg.uri,
            "pin_required": leg.gate is not None,
        }

    def _expel(self, room: str, leg_id: str) -> Any:
        try:
            ending = self._bridge.expel(room, leg_id)
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        return ending.addCallback(lambda _: (200, {"leg": leg_id, "state": "expelled"}))


class Health(Resource):
    isLeaf = True

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self._bridge = bridge

    def render_GET(self, request: Request) -> bytes:
        _secure(request)
        request.setHeader(b"Content-Type", b"application/json")
        body = {
            "status": "ok",
            "rooms_live": len(self._bridge.conferences),
            "clock": self._bridge.clock.stats(),
            "sip_workers": self._bridge.sip.workers() if self._bridge.sip else [],
        }
        return json.dumps(body).encode("utf-8")


class JoinPages(Resource):
    """``/rooms/{room}`` serves the join page; ``/rooms/{room}/ws`` signalling."""

    def __init__(self, bridge: Bridge, static_dir: str, signalling: Resource) -> None:
        super().__init__()
        self._bridge = bridge
        self._page = open(f"{static_dir}/room.html", "rb").read()
        self._signalling = signalling

    def getChild(self, path: bytes, request: Request) -> Resource:
        if not ROOM_NAME.match(path.decode("utf-8", "replace")):
            return _NotFound()
        if request.postpath == [b"ws"] and request.prepath is not None:
            request.prepath.append(request.postpath.pop())
            return self._signalling
        if request.postpath not in ([], [b""]):
            return _NotFound()
        return _Page(self._page)


class _Page(Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    def render_GET(self, request: Request) -> bytes:
        _secure(request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return self._body


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        _secure(request)
        request.setResponseCode(http.NOT_FOUND)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"not found\n"


class _Index(Resource):
    def render_GET(self, request: Request) -> bytes:
        _secure(request)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"carebridge: open /rooms/<room> to join a conference\n"

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return _NotFound()


def build_site(bridge: Bridge) -> Site:
    from webrtc.ws import RoomDirectory, signalling_resource

    static_dir = str(resources.files("bridge") / "static")
    root = _Index()
    api = Resource()
    rooms_api = HostApi(bridge)
    api.putChild(b"rooms", rooms_api)
    api.putChild(b"health", Health(bridge))
    root.putChild(b"api", api)
    static = File(static_dir)
    static.childNotFound = _NotFound()  # type: ignore[assignment]
    root.putChild(b"static", static)
    root.putChild(
        b"rooms",
        JoinPages(
            bridge,
            static_dir,
            signalling_resource(cast("RoomDirectory", bridge), bridge.reactor),
        ),
    )
    site = Site(root)
    site.displayTracebacks = False
    return site
