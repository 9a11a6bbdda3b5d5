"""The main-process side of SIP: a pool of worker processes on Twisted.

Each worker (``python -m sip.worker``) runs one pjsua2 endpoint and carries
at most ``calls_per_worker`` (<= 4) calls.  The pool packs new calls into the
busiest worker with room, spawns another when all are full (up to
``max_workers``), and reaps workers that stay idle for ``idle_timeout``
seconds while keeping ``warm_workers`` (default one) ready so the first dial
does not pay for a pjsua start-up.

A worker that dies takes only its own legs down: each gets a "dropped" event
and the next dial goes to a live or new worker.

While its calls carry audio a worker reports, once a second, how long frames
towards each call waited in its inbox; the pool answers each report with a
time stamp, and both sides work out the one-way delay of their pipe from
``time.monotonic()`` (one clock for all processes on Linux).
:meth:`SipService.workers` shows the latest figures.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from twisted.internet import defer, error, protocol
from twisted.python.failure import Failure

from .config import SipConfig
from .events import CallEvent, EventError
from .protocol import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Audio,
    Control,
    Decoder,
    ProtocolError,
    encode_audio,
    encode_control,
)
from .uri import check_sip_uri, secure_target

__all__ = ["SAMPLE_RATE", "CallEvent", "CapacityError", "SipConfig", "SipService"]

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("sip.worker")

#: longest stderr line kept from a worker; the rest is cut
MAX_LOG_LINE = 4096
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CapacityError(RuntimeError):
    """Every worker is full and the pool is at ``max_workers``."""


@dataclass(eq=False)
class _Worker:
    index: int
    proto: _WorkerProtocol
    pid: int | None = None
    ready: bool = False
    alive: bool = True
    stopping: bool = False
    fatal: str | None = None
    legs: dict[str, int] = field(default_factory=dict)  # leg -> slot
    slots: dict[int, str] = field(default_factory=dict)  # slot -> leg
    answered: set[str] = field(default_factory=set)
    next_slot: int = 0
    ready_waiters: list[defer.Deferred[None]] = field(default_factory=list)
    ended: defer.Deferred[None] = field(default_factory=defer.Deferred)
    reap_call: Any = None
    # the latest ``stats`` report: pipe delays (ms) and per-leg inbox waits
    pipe_to_worker_ms: float | None = None
    pipe_from_worker_ms: float | None = None
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    # SIP listener port by transport ("tls"; "udp", "tcp" in lab mode)
    listen: dict[str, int] = field(default_factory=dict)

    def take_slot(self) -> int:
        while self.next_slot in self.slots:
            self.next_slot = (self.next_slot + 1) % 0x10000
        slot = self.next_slot
        self.next_slot = (slot + 1) % 0x10000
        return slot


class _WorkerProtocol(protocol.ProcessProtocol):
    def __init__(self, service: SipService) -> None:
        self.service = service
        self.worker: _Worker | None = None
        self.decoder = Decoder()
        self._err = b""

    @property
    def process(self) -> Any:
        """The process transport (typed loosely: Twisted's stubs are partial)."""
        return self.transport

    def connectionMade(self) -> None:
        assert self.worker is not None
        self.worker.pid = self.process.pid
        self.process.write(
            encode_control({"type": "config", "config": self.service.config.to_wire()})
        )

    def send(self, data: bytes) -> None:
        if self.worker is not None and self.worker.alive:
            self.process.write(data)

    def outReceived(self, data: bytes) -> None:
        worker = self.worker
        assert worker is not None
        self.decoder.feed(data)
        while True:
            try:
                msg = self.decoder.next_message()
            except ProtocolError as exc:
                logger.error("worker %s sent bad data: %s", worker.pid, exc)
                if self.decoder.failed:
                    self.kill()
                    return
                continue
            if msg is None:
                return
            if isinstance(msg, Audio):
                self.service._worker_audio(worker, msg)
            else:
                self.service._worker_control(worker, msg)

    def errReceived(self, data: bytes) -> None:
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        if len(self._err) > MAX_LOG_LINE:
            lines.append(self._err)
            self._err = b""
        for line in lines:
            self._log_line(line[:MAX_LOG_LINE].decode("utf-8", "replace"))

    def _log_line(self, line: str) -> None:
        if not line.strip():
            return
        pid = self.worker.pid if self.worker else None
        level_name, _, rest = line.partition(" ")
        level = _LEVELS.get(level_name)
        if level is None:
            level, rest = logging.INFO, line
        if worker_logger.isEnabledFor(level):
            worker_logger.log(level, "[%s] %s", pid, rest)

    def kill(self) -> None:
        try:
            self.process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    def processEnded(self, reason: Failure) -> None:
        if self._err:
            self._log_line(self._err.decode("utf-8", "replace"))
            self._err = b""
        assert self.worker is not None
        self.service._worker_ended(self.worker, reason)


class SipService:
    """Places SIP call legs through a pool of pjsua2 worker processes.

    ``on_event(leg_id, event)`` gets every :class:`CallEvent`;
    ``on_audio(leg_id, pcm)`` gets each received 20 ms frame as the pipe
    delivered it, 640 bytes of s16le mono at 16 kHz (320 samples), on the
    reactor thread: the mixer takes bytes without making an array.
    """

    def __init__(
        self,
        reactor: Any,
        config: SipConfig,
        on_event: Callable[[str, CallEvent], None],
        on_audio: Callable[[str, bytes], None],
        *,
        warm_workers: int = 1,
        idle_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.on_event = on_event
        self.on_audio = on_audio
        self.warm_workers = min(warm_workers, config.max_workers)
        self.idle_timeout = idle_timeout
        self.stop_timeout = stop_timeout
        self._worker_env = worker_env or {}
        self._workers: list[_Worker] = []
        self._legs: dict[str, _Worker] = {}
        self._count = 0
        self._stopping = False
        self._pings: dict[int, defer.Deferred[float]] = {}
        self._ping_id = 0

    # lifecycle

    def start(self) -> defer.Deferred[None]:
        """Spawn the warm workers; fires when they are ready."""
        waits = [self._when_ready(self._spawn()) for _ in range(self.warm_workers)]
        return defer.gatherResults(waits, consumeErrors=True).addCallback(
            lambda _: None
        )

    def stop(self) -> defer.Deferred[None]:
        """Hang up everything and stop every worker (SIGKILL after a bound)."""
        self._stopping = True
        ended = []
        for worker in list(self._workers):
            ended.append(worker.ended)
            self._stop_worker(worker)
        return defer.DeferredList(ended).addCallback(lambda _: None)

    def _stop_worker(self, worker: _Worker) -> None:
        if worker.stopping or not worker.alive:
            return
        worker.stopping = True
        if worker.reap_call is not None and worker.reap_call.active():
            worker.reap_call.cancel()
        worker.proto.send(encode_control({"type": "shutdown"}))
        kill = self.reactor.callLater(self.stop_timeout, self._kill, worker)
        worker.ended.addBoth(lambda r: (kill.active() and kill.cancel(), r)[1])

    def _kill(self, worker: _Worker) -> None:
        if worker.alive:
            logger.warning("worker %s did not stop in time: killing it", worker.pid)
            worker.proto.kill()

    # the API the bridge uses

    def dial(self, leg_id: str, uri: str) -> None:
        """Start calling ``uri``; progress comes as events for ``leg_id``."""
        check_sip_uri(uri)
        if not self.config.insecure_lab_mode:
            secure_target(uri)
        if self._stopping:
            raise CapacityError("SIP service is stopping")
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} is already active")
        worker = self._pick_worker()
        slot = worker.take_slot()
        worker.legs[leg_id] = slot
        worker.slots[slot] = leg_id
        self._legs[leg_id] = worker
        if worker.reap_call is not None and worker.reap_call.active():
            worker.reap_call.cancel()
        logger.info("leg %s: dialling via worker %s", leg_id, worker.pid)
        worker.proto.send(
            encode_control({"type": "dial", "leg": leg_id, "slot": slot, "uri": uri})
        )

    def hangup(self, leg_id: str) -> None:
        worker = self._legs.get(leg_id)
        if worker is None:
            logger.debug("hangup of unknown leg %s", leg_id)
            return
        worker.proto.send(encode_control({"type": "hangup", "leg": leg_id}))

    def send_audio(self, leg_id: str, pcm: np.ndarray) -> None:
        """Queue one 20 ms frame (int16, 320 samples) towards ``leg_id``."""
        worker = self._legs.get(leg_id)
        if worker is None or leg_id not in worker.answered:
            return
        if pcm.dtype != np.int16 or pcm.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"audio frame must be {FRAME_SAMPLES} int16 samples, "
                f"not {pcm.shape} {pcm.dtype}"
            )
        worker.proto.send(encode_audio(worker.legs[leg_id], pcm.tobytes()))

    def workers(self) -> list[dict[str, Any]]:
        """Every worker, with the delays of its latest ``stats`` report.

        ``pipe_to_worker_ms``/``pipe_from_worker_ms``: one-way delay of a
        message through the worker's stdin/stdout pipes, reading included;
        ``queues``: per leg, frames sent to the phone in the report's second
        and their mean and longest wait in the worker's inbox (ms);
        ``listen``: the port of each of its SIP listeners by transport.
        """
        return [
            {
                "pid": w.pid,
                "calls": len(w.legs),
                "alive": w.alive,
                "ready": w.ready,
                "legs": sorted(w.legs),
                "listen": dict(w.listen),
                "pipe_to_worker_ms": w.pipe_to_worker_ms,
                "pipe_from_worker_ms": w.pipe_from_worker_ms,
                "queues": {
                    leg_id: stats
                    for leg_id, stats in w.queues.items()
                    if leg_id in w.legs
                },
            }
            for w in self._workers
        ]

    def ping(self, worker_index: int = 0) -> defer.Deferred[float]:
        """Round trip through a worker's pipes, in seconds (diagnostics)."""
        worker = [w for w in self._workers if w.alive][worker_index]
        self._ping_id += 1
        d: defer.Deferred[float] = defer.Deferred()
        self._pings[self._ping_id] = d
        worker.proto.send(
            encode_control({"type": "echo", "id": self._ping_id, "t": self._now()})
        )
        return d

    # workers

    def _now(self) -> float:
        return float(self.reactor.seconds())

    def _pick_worker(self) -> _Worker:
        limit = self.config.calls_per_worker
        candidates = [
            w
            for w in self._workers
            if w.alive and not w.stopping and len(w.legs) < limit
        ]
        if candidates:
            # pack calls so that idle workers can be reaped
            return max(candidates, key=lambda w: len(w.legs))
        if len([w for w in self._workers if w.alive]) >= self.config.max_workers:
            raise CapacityError(f"all {self.config.max_workers} SIP workers are full")
        return self._spawn()

    def _spawn(self) -> _Worker:
        proto = _WorkerProtocol(self)
        worker = _Worker(index=self._count, proto=proto)
        self._count += 1
        proto.worker = worker
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + path if path else "")
        env.update(self._worker_env)
        self._workers.append(worker)
        self.reactor.spawnProcess(
            proto,
            sys.executable,
            [sys.executable, "-m", "sip.worker"],
            env=env,
            path=_REPO_ROOT,
        )
        logger.info("spawned SIP worker %s", worker.pid)
        return worker

    def _when_ready(self, worker: _Worker) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if worker.ready:
            d.callback(None)
        else:
            worker.ready_waiters.append(d)
        return d

    def _worker_control(self, worker: _Worker, msg: Control) -> None:
        body = msg.body
        kind = msg.type
        if kind == "event":
            self._worker_event(worker, body)
        elif kind == "ready":
            worker.ready = True
            listen = body.get("listen")
            if isinstance(listen, dict):
                worker.listen = {str(k): int(v) for k, v in listen.items()}
            waiters, worker.ready_waiters = worker.ready_waiters, []
            for d in waiters:
                d.callback(None)
            if not worker.legs:
                self._schedule_reap(worker)
        elif kind == "echo":
            ping = self._pings.pop(int(body.get("id", -1)), None)
            if ping is not None:
                ping.callback(self._now() - float(body["t"]))
        elif kind == "stats":
            self._worker_stats(worker, body)
        elif kind == "fatal":
            worker.fatal = str(body.get("reason"))
            logger.error("worker %s failed: %s", worker.pid, worker.fatal)
        else:
            logger.warning("worker %s sent unknown message %s", worker.pid, kind)

    def _worker_stats(self, worker: _Worker, body: dict[str, Any]) -> None:
        now = time.monotonic()
        try:
            sent = float(body["t"])
            to_worker = body.get("to_worker_ms")
            legs = body["legs"]
            worker.queues = {
                str(leg_id): {
                    "frames": int(stats["frames"]),
                    "queue_ms": float(stats["queue_ms"]),
                    "queue_ms_max": float(stats["queue_ms_max"]),
                }
                for leg_id, stats in legs.items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("worker %s sent bad stats: %s", worker.pid, exc)
            return
        worker.pipe_from_worker_ms = round(1000.0 * (now - sent), 3)
        worker.pipe_to_worker_ms = None if to_worker is None else float(to_worker)
        worker.proto.send(encode_control({"type": "stamp", "t": time.monotonic()}))

    def _worker_event(self, worker: _Worker, body: dict[str, Any]) -> None:
        leg_id = body.get("leg")
        if not isinstance(leg_id, str) or worker.legs.get(leg_id) is None:
            logger.debug("event for unknown leg %r", leg_id)
            return
        fields = {k: v for k, v in body.items() if k not in ("type", "leg")}
        try:
            event = CallEvent.from_wire(fields)
        except EventError as exc:
            logger.warning("worker %s sent a bad event: %s", worker.pid, exc)
            return
        if event.kind == "answered":
            worker.answered.add(leg_id)
        if event.terminal:
            self._forget(worker, leg_id)
        self.on_event(leg_id, event)

    def _forget(self, worker: _Worker, leg_id: str) -> None:
        slot = worker.legs.pop(leg_id, None)
        if slot is not None:
            worker.slots.pop(slot, None)
        worker.answered.discard(leg_id)
        self._legs.pop(leg_id, None)
        if not worker.legs:
            self._schedule_reap(worker)

    def _worker_audio(self, worker: _Worker, msg: Audio) -> None:
        leg_id = worker.slots.get(msg.slot)
        if leg_id is not None:
            self.on_audio(leg_id, msg.pcm)

    def _schedule_reap(self, worker: _Worker) -> None:
        if self._stopping or worker.stopping:
            return
        if worker.reap_call is not None and worker.reap_call.active():
            worker.reap_call.cancel()
        worker.reap_call = self.reactor.callLater(
            self.idle_timeout, self._reap_idle, worker
        )

    def _reap_idle(self, worker: _Worker) -> None:
        if worker.legs or not worker.alive or worker.stopping:
            return
        idle = [w for w in self._workers if w.alive and not w.stopping and not w.legs]
        if len(idle) > self.warm_workers:
            logger.info("stopping idle SIP worker %s", worker.pid)
            self._stop_worker(worker)

    def _worker_ended(self, worker: _Worker, reason: Failure) -> None:
        worker.alive = False
        if worker in self._workers:
            self._workers.remove(worker)
        if worker.reap_call is not None and worker.reap_call.active():
            worker.reap_call.cancel()
        expected = worker.stopping or self._stopping
        status = reason.value
        code = getattr(status, "exitCode", None)
        sig = getattr(status, "signal", None)
        how = f"signal {sig}" if sig else f"exit code {code}"
        if expected:
            logger.info("SIP worker %s stopped (%s)", worker.pid, how)
        else:
            logger.error("SIP worker %s died (%s)", worker.pid, how)

        for leg_id in list(worker.legs):
            self._forget(worker, leg_id)
            if worker.fatal is not None:
                event = CallEvent("failed", reason=worker.fatal)
            elif expected:
                event = CallEvent("ended", reason="SIP worker stopped", by="bridge")
            else:
                event = CallEvent("dropped", reason=f"SIP worker died ({how})")
            self.on_event(leg_id, event)

        waiters, worker.ready_waiters = worker.ready_waiters, []
        for d in waiters:
            d.errback(
                RuntimeError(
                    f"SIP worker {worker.pid} ended before it was ready: "
                    f"{worker.fatal or how}"
                )
            )
        worker.ended.callback(None)
        if not self._stopping and worker.ready and not expected:
            alive = [w for w in self._workers if w.alive and not w.stopping]
            if len(alive) < self.warm_workers:
                self.reactor.callLater(1.0, self._respawn_warm)

    def _respawn_warm(self) -> None:
        alive = [w for w in self._workers if w.alive and not w.stopping]
        if not self._stopping and len(alive) < self.warm_workers:
            self._spawn()

    def kill_worker(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one worker (for tests and the operator's console)."""
        for worker in self._workers:
            if worker.pid == pid and worker.alive:
                os.kill(pid, sig)
                return
        raise ValueError(f"no live SIP worker with pid {pid}")
