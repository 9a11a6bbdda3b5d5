"""Starting and stopping the bridge process.

The Twisted reactor runs on an asyncio loop, so aiortc's coroutines and
Twisted's callbacks share one thread.  The asyncio reactor must be installed
before anything imports ``twisted.internet.reactor``: :func:`serve` does that
first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config

logger = logging.getLogger(__name__)

DEMO_ROOM = "demo"
DEMO_FILE = "demo-room.txt"
STOP_TIMEOUT = 10.0


def install_reactor() -> Any:
    """Installs Twisted's asyncio reactor (once) and returns it."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if type(reactor).__name__ != "AsyncioSelectorReactor":
            raise RuntimeError("a non-asyncio Twisted reactor is already installed")
        return reactor
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


def prepare_state_dir(path: Path) -> Path:
    """Creates the state directory, private to this user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


@dataclass
class Running:
    """A started bridge: what tests and the CLI need to reach it."""

    bridge: Any
    port: Any
    url: str
    tls_cert: Path

    def stop(self) -> Any:
        from twisted.internet import defer

        return defer.gatherResults(
            [defer.maybeDeferred(self.port.stopListening), self.bridge.stop()],
            consumeErrors=True,
        )


def ensure_demo_room(bridge: Any, state_dir: Path) -> tuple[str, Path]:
    """The demo room, created on first start with its secrets in a 0600 file."""
    path = state_dir / DEMO_FILE
    if bridge.store.get(DEMO_ROOM) is None:
        password = secrets.token_urlsafe(9)
        key = bridge.store.create(DEMO_ROOM, password)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"room: {DEMO_ROOM}\nhost key: {key}\npassword: {password}\n")
        bridge.audit.record("room-created", DEMO_ROOM, by="first start")
        logger.info("created the demo room; its host key and password are in %s", path)
    return DEMO_ROOM, path


def start(config: Config, reactor: Any, port: int | None = None) -> Running:
    """Builds the bridge and starts listening; the reactor need not run yet."""
    from .core import Bridge
    from .tls import ensure_certificate, server_context
    from .web import build_site

    if config.recording.enabled:
        from .config import ConfigError

        raise ConfigError(
            "config key 'recording.enabled': recording is not available in this "
            "version; leave it false"
        )
    # browsers' media goes to the address the bridge serves on (aioice would
    # otherwise offer every interface but loopback); all interfaces: no filter
    from webrtc.ice import set_media_addresses

    host = config.server.host
    set_media_addresses(None if host in ("0.0.0.0", "::") else [host])

    state_dir = prepare_state_dir(config.state_dir)
    files = ensure_certificate(
        state_dir, config.server.tls_cert, config.server.tls_key, config.server.host
    )
    bridge = Bridge(config, reactor, state_dir, files.cert, files.key)
    site = build_site(bridge)
    listening = reactor.listenSSL(
        config.server.port if port is None else port,
        site,
        server_context(files),
        interface=config.server.host,
    )
    actual = listening.getHost().port
    shown = f"[{host}]" if ":" in host else host
    url = f"https://{shown}:{actual}"
    reactor.callWhenRunning(bridge.start)
    logger.info("listening on %s (TLS 1.2+), state in %s", url, state_dir)
    return Running(bridge, listening, url, files.cert)


def serve(config: Config) -> int:
    """Runs the bridge until SIGTERM or Ctrl-C."""
    reactor = install_reactor()
    running = start(config, reactor)
    demo = None
    if config.rooms.demo_room:
        demo = ensure_demo_room(running.bridge, running.bridge.state_dir)
    print(f"carebridge listening on {running.url}", flush=True)
    if demo is not None:
        room, secrets_file = demo
        print(
            f"demo room: {running.url}/rooms/{room}  "
            f"(host key and password in {secrets_file})",
            flush=True,
        )

    def stopping() -> Any:
        logger.info("stopping: ending every leg")
        stopped = running.stop()
        stopped.addTimeout(STOP_TIMEOUT, reactor)
        stopped.addErrback(
            lambda failure: logger.error("unclean stop: %s", failure.value)
        )
        return stopped

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
    logger.info("stopped")
    _exit_despite_stray_threads()
    return 0


def _exit_despite_stray_threads(grace: float = 2.0) -> None:
    """Exits even if a library left a non-daemon thread running.

    Every peer connection is closed before the reactor stops, which ends
    aiortc's decoder threads; should one still linger, the process must not
    hang after a SIGTERM.
    """
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning(
                "thread %s still running at exit; exiting anyway", thread.name
            )
            logging.shutdown()
            os._exit(0)
