"""A SIP worker process: one pjsua2 endpoint carrying at most four calls.

Run as ``python -m sip.worker``.  The main process talks to it over stdin and
stdout with :mod:`sip.protocol`; stderr carries log lines
(``LEVEL logger: message``).  At start the worker moves the protocol pipes to
private descriptors and points fds 0/1 at /dev/null and stderr, so nothing
pjsua prints can corrupt the stream.

Threads (see DESIGN.md, "Facts measured"):

- main: pumps ``libHandleEvents`` (which releases the GIL) and runs every
  pjsua call: dial, hang up, timers, shutdown;
- reader: blocks in ``os.read`` on the control pipe; queues control messages
  for main and drops audio straight into each call's inbox, stamped with its
  arrival time;
- pjsua's clock thread: every port's ``onFrameRequested``/``onFrameReceived``;
  received audio is written to the pipe right there, without a queue; a frame
  taken from an inbox adds its wait there to the port's :class:`QueueStats`;
- pjsua's media thread: RFC 4733 DTMF callbacks.

Messages in: ``config`` (first, once), ``dial`` {leg, slot, uri},
``hangup`` {leg}, ``echo`` {...}, ``stamp`` {t}, ``shutdown``; audio frames
by slot.
Messages out: ``ready`` {pid, listen: {transport: port}}, ``event`` {leg,
kind, ...}, ``echo`` (the same body, sent back by the reader thread),
``stats`` {t, to_worker_ms, legs: {leg: {frames, queue_ms, queue_ms_max}}}
every ``STATS_INTERVAL`` while a call carries audio, ``fatal`` {reason};
audio frames by slot.

Times in ``stats`` and ``stamp`` are ``time.monotonic()`` seconds: on Linux
that is CLOCK_MONOTONIC, one clock for every process on the machine, so each
side can tell how long a message spent in the pipe (and waiting to be read).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from . import _frames
from .config import PJSUA_MAX_CALLS, SipConfig
from .events import CallEvent, classify_end
from .protocol import (
    FRAME_BYTES,
    SAMPLE_RATE,
    Audio,
    Control,
    Decoder,
    ProtocolError,
    encode_audio,
    encode_control,
)
from .sdp import audio_crypto_suite, sdp_from_message
from .uri import InvalidSipUri, check_sip_uri, secure_target

logger = logging.getLogger("sip.worker")  # __name__ is "__main__" under -m

#: frames queued towards a call; older ones are dropped (about 60 ms)
INBOX_FRAMES = 3
#: pulls (20 ms each) over which a standing inbox frame is measured and dropped
TRIM_AFTER_PULLS = 50
#: how long the main loop waits inside pjsua per turn, in milliseconds: SIP
#: events wake it at once; control messages wait at most this long
PUMP_MS = 20
#: bound on waiting for calls to clear at shutdown, in seconds
SHUTDOWN_GRACE = 3.0
#: seconds between two ``stats`` messages while calls carry audio
STATS_INTERVAL = 1.0
CODEC_PRIORITY = {"G722/16000/1": 255, "PCMU/8000/1": 254, "PCMA/8000/1": 253}
SILENCE = bytes(FRAME_BYTES)
_PJ_TO_LOGGING = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING}


# -- output -------------------------------------------------------------------


vector_bytes: Callable[[Any], bytes] = _frames.vector_bytes_slow
vector_write: Callable[[Any, bytes], None] = _frames.vector_write_slow


class Output:
    """Writes whole messages to the pipe from any thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.broken = threading.Event()

    def _write(self, data: bytes) -> None:
        if self.broken.is_set():
            return
        with self._lock:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                self.broken.set()

    def control(self, body: dict[str, Any]) -> None:
        self._write(encode_control(body))

    def event(self, leg: str, event: CallEvent) -> None:
        logger.info("leg %s: %s", leg, _describe(event))
        self.control({"type": "event", "leg": leg, **event.to_wire()})

    def audio(self, slot: int, pcm: bytes) -> None:
        self._write(encode_audio(slot, pcm))


def _describe(event: CallEvent) -> str:
    parts = [event.kind]
    for name in ("status", "reason", "codec", "srtp_suite", "by"):
        value = getattr(event, name)
        if value is not None:
            parts.append(f"{name}={value}")
    if event.digit is not None:
        parts.append("digit")  # the digit itself may be part of a PIN
    return " ".join(parts)


# -- pjsua2 objects -------------------------------------------------------------


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """Log what a callback raises: SWIG directors would swallow it silently."""

    @functools.wraps(method)
    def wrapper(self: Any, prm: Any) -> None:
        try:
            method(self, prm)
        except Exception:
            logger.exception("error in %s", method.__name__)

    return wrapper


class QueueStats:
    """How long frames towards one call waited in its inbox (seconds)."""

    __slots__ = ("frames", "total", "peak")

    def __init__(self) -> None:
        self.frames = 0
        self.total = 0.0
        self.peak = 0.0

    def add(self, wait: float) -> None:
        self.frames += 1
        self.total += wait
        if wait > self.peak:
            self.peak = wait

    def to_wire(self) -> dict[str, Any]:
        mean = self.total / self.frames if self.frames else 0.0
        return {
            "frames": self.frames,
            "queue_ms": round(1000.0 * mean, 2),
            "queue_ms_max": round(1000.0 * self.peak, 2),
        }


#: an inbox entry: arrival time (``time.monotonic()``) and one frame of PCM
Inbox = collections.deque[tuple[float, bytes]]


class PcmPort(pj.AudioMediaPort):  # type: ignore[misc]
    """Relays one call's audio between pjsua's clock thread and the pipe."""

    def __init__(self, slot: int, output: Output, inbox: Inbox) -> None:
        super().__init__()
        self._slot = slot
        self._output = output
        self._inbox = inbox
        self.queue_stats = QueueStats()
        self._pulls = 0
        self._least = INBOX_FRAMES

    def take_queue_stats(self) -> QueueStats:
        """The figures since the last call; a frame counted meanwhile may be lost."""
        stats, self.queue_stats = self.queue_stats, QueueStats()
        return stats

    def onFrameReceived(self, frame: Any) -> None:
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO or not frame.size:
            return
        self._output.audio(self._slot, vector_bytes(frame.buf))

    def onFrameRequested(self, frame: Any) -> None:
        # a frame that has waited in the inbox at every pull for a second is
        # pure delay (frames come exactly as fast as pjsua takes them, so a
        # burst never drains by itself): drop it
        inbox = self._inbox
        self._least = min(self._least, len(inbox))
        self._pulls += 1
        if self._pulls >= TRIM_AFTER_PULLS:
            if self._least >= 1 and inbox:
                inbox.popleft()
            self._pulls = 0
            self._least = INBOX_FRAMES
        try:
            arrived, pcm = inbox.popleft()
        except IndexError:
            pcm = SILENCE
        else:
            self.queue_stats.add(time.monotonic() - arrived)
        vector_write(frame.buf, pcm)
        frame.size = len(pcm)
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO


@dataclass
class Leg:
    leg: str
    slot: int
    deadline: float
    inbox: Inbox = field(default_factory=lambda: collections.deque(maxlen=INBOX_FRAMES))
    call: Any = None
    port: PcmPort | None = None
    answered: bool = False
    ringing: bool = False
    by_bridge: bool = False
    no_answer: bool = False
    codec: str | None = None
    srtp_suite: str | None = None
    done: bool = False


def _answer_crypto_suite(event: Any) -> str | None:
    """The SRTP suite in a 2xx to INVITE carried by a pjsua event, if any.

    The answer keeps one ``a=crypto`` per stream (RFC 4568 section 7.1.2).
    pjsua2 gives an empty SDP string above 1024 bytes, so read the message.
    """
    if event.type != pj.PJSIP_EVENT_TSX_STATE:
        return None
    tsx = event.body.tsxState
    if tsx.type != pj.PJSIP_EVENT_RX_MSG or tsx.tsx.method != "INVITE":
        return None
    if not 200 <= tsx.tsx.statusCode < 300:
        return None
    return audio_crypto_suite(sdp_from_message(tsx.src.rdata.wholeMsg))


class LegCall(pj.Call):  # type: ignore[misc]
    def __init__(self, worker: Worker, account: Any, leg: Leg) -> None:
        super().__init__(account)
        self._worker = worker
        self._leg = leg

    @_guarded
    def onCallState(self, prm: Any) -> None:
        # the 200 OK that moves the call to CONNECTING carries the answer
        suite = _answer_crypto_suite(prm.e)
        if suite is not None:
            self._leg.srtp_suite = suite
        self._worker.on_call_state(self._leg, self.getInfo())

    @_guarded
    def onCallMediaState(self, prm: Any) -> None:
        self._worker.on_media_state(self._leg, self)

    @_guarded
    def onDtmfDigit(self, prm: Any) -> None:
        self._worker.on_dtmf(self._leg, prm.digit)


class PjLogWriter(pj.LogWriter):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._log = logging.getLogger("sip.pjsua")

    def write(self, entry: Any) -> None:
        level = _PJ_TO_LOGGING.get(entry.level, logging.DEBUG)
        if self._log.isEnabledFor(level):
            self._log.log(level, "%s", entry.msg.rstrip())


# -- the worker ------------------------------------------------------------------


class Worker:
    def __init__(self, config: SipConfig, output: Output) -> None:
        self.config = config
        self.output = output
        self.max_calls = min(config.calls_per_worker, PJSUA_MAX_CALLS)
        self.legs: dict[str, Leg] = {}
        self.inboxes: dict[int, Inbox] = {}
        self.controls: queue.SimpleQueue[Control | None] = queue.SimpleQueue()
        self.running = True
        #: latest one-way delay of a ``stamp`` from the main process, seconds
        self.to_worker_delay: float | None = None
        self._next_stats = 0.0
        self._ep: Any = None
        self._account: Any = None
        self._log_writer: PjLogWriter | None = None
        self._dead: list[Leg] = []
        #: port of each SIP listener by transport ("tls", "udp", "tcp")
        self.listen: dict[str, int] = {}

    # start and stop

    def start(self) -> None:
        ep = self._ep = pj.Endpoint()
        ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = False
        ep_cfg.uaConfig.maxCalls = PJSUA_MAX_CALLS
        ep_cfg.uaConfig.userAgent = "carebridge"
        self._log_writer = PjLogWriter()
        ep_cfg.logConfig.writer = self._log_writer
        # the writer gets what passes consoleLevel; it replaces the console
        level = 5 if os.environ.get("CAREBRIDGE_SIP_TRACE") else 3
        ep_cfg.logConfig.consoleLevel = level
        ep_cfg.logConfig.level = level
        ep_cfg.logConfig.decor = pj.PJ_LOG_HAS_SENDER
        med = ep_cfg.medConfig
        med.clockRate = SAMPLE_RATE
        med.sndClockRate = SAMPLE_RATE
        med.channelCount = 1
        med.audioFramePtime = 20
        med.ecTailLen = 0
        med.noVad = True
        ep.libInit(ep_cfg)
        ep.audDevManager().setNullDev()

        self._create_transports()
        self._set_codecs()
        ep.libStart()
        self._account = self._create_account()

    def _create_transports(self) -> None:
        cfg = self.config
        tls = pj.TransportConfig()
        tls.port = 0
        tls.boundAddress = cfg.local_address
        tls.tlsConfig.certFile = cfg.tls_cert
        tls.tlsConfig.privKeyFile = cfg.tls_key
        tls.tlsConfig.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2
        tls.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        if cfg.ca_file:
            tls.tlsConfig.CaListFile = cfg.ca_file
            tls.tlsConfig.verifyServer = cfg.verify_server
        else:
            tls.tlsConfig.verifyServer = False
            logger.warning("no CA configured: TLS peers are not verified")
        self._listening("tls", self._ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls))

        if cfg.insecure_lab_mode:
            logger.warning(
                "INSECURE LAB MODE: plain UDP/TCP SIP and unencrypted RTP are "
                "allowed; never use this with patients"
            )
            for kind in (pj.PJSIP_TRANSPORT_UDP, pj.PJSIP_TRANSPORT_TCP):
                plain = pj.TransportConfig()
                plain.port = 0
                plain.boundAddress = cfg.local_address
                name = "udp" if kind == pj.PJSIP_TRANSPORT_UDP else "tcp"
                self._listening(name, self._ep.transportCreate(kind, plain))

    def _listening(self, name: str, transport_id: int) -> None:
        local = self._ep.transportGetInfo(transport_id).localName
        self.listen[name] = int(local.rpartition(":")[2])

    def _set_codecs(self) -> None:
        for info in self._ep.codecEnum2():
            self._ep.codecSetPriority(info.codecId, CODEC_PRIORITY.get(info.codecId, 0))

    def _create_account(self) -> Any:
        cfg = self.config
        acc_cfg = pj.AccountConfig()
        user = cfg.username or "carebridge"
        acc_cfg.idUri = f"sip:{user}@{cfg.local_address}"
        acc_cfg.regConfig.registerOnAdd = False
        if cfg.proxy:
            acc_cfg.sipConfig.proxies.append(self._proxy_uri(cfg.proxy))
        if cfg.username and cfg.password is not None:
            acc_cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", cfg.realm, cfg.username, 0, cfg.password)
            )
        media = acc_cfg.mediaConfig
        media.transportConfig.boundAddress = cfg.local_address
        if cfg.insecure_lab_mode:
            media.srtpUse = pj.PJMEDIA_SRTP_OPTIONAL
            media.srtpSecureSignaling = 0
        else:
            media.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
            media.srtpSecureSignaling = 1
        account = pj.Account()
        account.create(acc_cfg)
        return account

    def _proxy_uri(self, proxy: str) -> str:
        uri = proxy if self.config.insecure_lab_mode else secure_target(proxy)
        # pjsua judges a route's security by its transport parameter alone
        # (get_secure_level in pjsua_call.c): a bare sips: proxy would fail
        # every call with PJSIP_ESESSIONINSECURE under srtpSecureSignaling
        if uri.lower().startswith("sips:") and ";transport=" not in uri.lower():
            uri += ";transport=tls"
        return uri if ";lr" in uri else uri + ";lr"

    def stop(self) -> None:
        """Hang up, let the calls clear, drop every pjsua object, destroy."""
        if self._ep is None:
            return
        if self.legs:
            for leg in self.legs.values():
                leg.by_bridge = True
            self._ep.hangupAllCalls()
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while self.legs and time.monotonic() < deadline:
                self._ep.libHandleEvents(20)
                self._reap()
        # python must let go of calls, ports and the account before libDestroy
        for leg in list(self.legs.values()) + self._dead:
            leg.port = None
            leg.call = None
        self.legs.clear()
        self._dead.clear()
        if self._account is not None:
            self._account.shutdown()
            self._account = None
        ep, self._ep = self._ep, None
        ep.libDestroy()
        self._log_writer = None

    # main loop

    def run(self) -> None:
        while self.running and not self.output.broken.is_set():
            self._ep.libHandleEvents(PUMP_MS)
            self._reap()
            self._check_timers()
            self._send_stats()
            while True:
                try:
                    msg = self.controls.get_nowait()
                except queue.Empty:
                    break
                if msg is None:
                    logger.info("control pipe closed")
                    self.running = False
                    break
                self.handle(msg)

    def handle(self, msg: Control) -> None:
        try:
            self._handle(msg)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("bad %s message from main process: %s", msg.type, exc)

    def _handle(self, msg: Control) -> None:
        kind = msg.type
        body = msg.body
        if kind == "dial":
            self.dial(str(body["leg"]), int(body["slot"]), body.get("uri"))
        elif kind == "hangup":
            self.hangup(str(body.get("leg")))
        elif kind == "shutdown":
            self.running = False
        else:
            logger.warning("ignoring control message of type %s", kind)

    def dial(self, leg_id: str, slot: int, uri: Any) -> None:
        if leg_id in self.legs:
            logger.warning("leg %s is already active", leg_id)
            return
        if len(self.legs) + len(self._dead) >= self.max_calls:
            self.output.event(
                leg_id,
                CallEvent("failed", reason=f"worker is full ({self.max_calls} calls)"),
            )
            return
        try:
            target = check_sip_uri(uri)
            if not self.config.insecure_lab_mode:
                target = secure_target(target)
        except InvalidSipUri as exc:
            self.output.event(leg_id, CallEvent("failed", reason=str(exc)))
            return

        leg = Leg(leg_id, slot, time.monotonic() + self.config.no_answer_timeout)
        leg.call = LegCall(self, self._account, leg)
        self.legs[leg_id] = leg
        self.inboxes[slot] = leg.inbox
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        logger.info("leg %s: dialling", leg_id)
        try:
            leg.call.makeCall(target, prm)
        except pj.Error as exc:
            # pjsua may or may not have reported DISCONNECTED already
            if not leg.done:
                self._finish(leg, CallEvent("failed", reason=exc.reason))

    def hangup(self, leg_id: str) -> None:
        leg = self.legs.get(leg_id)
        if leg is None or leg.done:
            return
        leg.by_bridge = True
        self._hangup(leg)

    def _hangup(self, leg: Leg) -> None:
        try:
            leg.call.hangup(pj.CallOpParam())
        except pj.Error as exc:
            logger.warning("leg %s: hangup failed: %s", leg.leg, exc.reason)

    def _check_timers(self) -> None:
        now = time.monotonic()
        for leg in list(self.legs.values()):
            if not leg.answered and not leg.no_answer and now >= leg.deadline:
                logger.info("leg %s: no answer, giving up", leg.leg)
                leg.no_answer = True
                self._hangup(leg)

    def _send_stats(self) -> None:
        now = time.monotonic()
        if now < self._next_stats:
            return
        self._next_stats = now + STATS_INTERVAL
        legs = {
            leg.leg: leg.port.take_queue_stats().to_wire()
            for leg in self.legs.values()
            if leg.port is not None and not leg.done
        }
        if not legs:
            return
        delay = self.to_worker_delay
        self.output.control(
            {
                "type": "stats",
                "t": time.monotonic(),
                "to_worker_ms": None if delay is None else round(1000 * delay, 3),
                "legs": legs,
            }
        )

    def _reap(self) -> None:
        # drop references to finished calls outside pjsua's callbacks
        if self._dead:
            for leg in self._dead:
                leg.port = None
                leg.call = None
            self._dead.clear()

    # pjsua callbacks (main thread unless noted)

    def on_call_state(self, leg: Leg, info: Any) -> None:
        state = info.state
        logger.debug(
            "leg %s: state %s (%s %s)",
            leg.leg,
            info.stateText,
            info.lastStatusCode,
            info.lastReason,
        )
        if state == pj.PJSIP_INV_STATE_CALLING:
            self.output.event(leg.leg, CallEvent("trying"))
        elif state == pj.PJSIP_INV_STATE_EARLY:
            if not leg.ringing and info.lastStatusCode in (180, 183):
                leg.ringing = True
                self.output.event(
                    leg.leg, CallEvent("ringing", status=info.lastStatusCode)
                )
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            if not leg.answered:
                leg.answered = True
                self.output.event(
                    leg.leg,
                    CallEvent(
                        "answered",
                        status=200,
                        codec=leg.codec,
                        srtp_suite=leg.srtp_suite,
                    ),
                )
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            event = classify_end(
                answered=leg.answered,
                status=info.lastStatusCode,
                reason=info.lastReason,
                by_bridge=leg.by_bridge,
                no_answer=leg.no_answer,
                timeout=self.config.no_answer_timeout,
            )
            self._finish(leg, event)

    def _finish(self, leg: Leg, event: CallEvent) -> None:
        leg.done = True
        self.inboxes.pop(leg.slot, None)
        self.legs.pop(leg.leg, None)
        self._dead.append(leg)
        self.output.event(leg.leg, event)

    def on_media_state(self, leg: Leg, call: LegCall) -> None:
        info = call.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            try:
                leg.codec = call.getStreamInfo(index).codecName
            except pj.Error:
                leg.codec = None
            if leg.port is None:
                leg.port = self._create_port(leg)
            audio = call.getAudioMedia(index)
            audio.startTransmit(leg.port)
            leg.port.startTransmit(audio)
            return

    def _create_port(self, leg: Leg) -> PcmPort:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, SAMPLE_RATE, 1, 20000, 16)
        port = PcmPort(leg.slot, self.output, leg.inbox)
        port.createPort(f"leg{leg.slot}", fmt)
        return port

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        # media thread for RFC 4733, main thread for SIP INFO
        if not leg.done and len(digit) == 1:
            self.output.event(leg.leg, CallEvent("dtmf", digit=digit.upper()))

    # reader thread

    def feed_audio(self, msg: Audio) -> None:
        inbox = self.inboxes.get(msg.slot)
        if inbox is not None and len(msg.pcm) == FRAME_BYTES:
            inbox.append((time.monotonic(), msg.pcm))


def _reader(fd: int, decoder: Decoder, worker: Worker) -> None:
    # the decoder may already hold messages that came with the config
    data = b""
    while True:
        decoder.feed(data)
        while True:
            try:
                msg = decoder.next_message()
            except ProtocolError as exc:
                logger.error("bad input from main process: %s", exc)
                if decoder.failed:
                    worker.controls.put(None)
                    return
                continue
            if msg is None:
                break
            if isinstance(msg, Audio):
                worker.feed_audio(msg)
            elif msg.type == "echo":
                # answered here, not in the main loop: this times the pipes
                worker.output.control(msg.body)
            elif msg.type == "stamp":
                try:
                    worker.to_worker_delay = time.monotonic() - float(msg.body["t"])
                except (KeyError, TypeError, ValueError):
                    logger.warning("bad stamp message from main process")
            else:
                worker.controls.put(msg)
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            worker.controls.put(None)
            return


def _read_config(fd: int, decoder: Decoder) -> SipConfig | None:
    while True:
        msg = decoder.next_message()
        if msg is not None:
            if isinstance(msg, Control) and msg.type == "config":
                return SipConfig.from_wire(msg.body["config"])
            raise ProtocolError("first message is not the config")
        data = os.read(fd, 65536)
        if not data:
            return None
        decoder.feed(data)


def _unreadable_files(config: SipConfig) -> str | None:
    # pjsua reads these only at the first TLS connection: check them up front
    for name in ("tls_cert", "tls_key", "ca_file"):
        path = getattr(config, name)
        if path is not None and not os.access(path, os.R_OK):
            return f"cannot read {name} file {path}"
    return None


def _take_stdio() -> tuple[int, int]:
    """Move the protocol pipes off fds 0/1 so stray prints cannot hit them."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return in_fd, out_fd


def main() -> int:
    global vector_bytes, vector_write

    # Ctrl-C in a terminal reaches the whole process group: the main process
    # stops its workers (shutdown message, then SIGKILL after a bound)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("CAREBRIDGE_SIP_LOG", "INFO").upper(),
        format=os.environ.get(
            "CAREBRIDGE_SIP_LOG_FORMAT", "%(levelname)s %(name)s: %(message)s"
        ),
    )
    sys.setswitchinterval(0.001)
    in_fd, out_fd = _take_stdio()
    output = Output(out_fd)
    decoder = Decoder()
    try:
        config = _read_config(in_fd, decoder)
    except (ProtocolError, KeyError, TypeError, ValueError) as exc:
        output.control({"type": "fatal", "reason": f"bad config: {exc}"})
        return 2
    if config is None:
        return 0

    vector_bytes, vector_write, fast = _frames.select_copy()
    if not fast:
        logger.warning("unexpected std::vector layout: using the slow frame copy")

    problem = _unreadable_files(config)
    if problem is not None:
        logger.error("%s", problem)
        output.control({"type": "fatal", "reason": problem})
        return 1

    worker = Worker(config, output)
    try:
        worker.start()
    except pj.Error as exc:
        logger.error("pjsua start failed: %s", exc.info())
        output.control({"type": "fatal", "reason": exc.reason})
        worker.stop()
        return 1
    threading.Thread(
        target=_reader, args=(in_fd, decoder, worker), name="reader", daemon=True
    ).start()
    output.control({"type": "ready", "pid": os.getpid(), "listen": worker.listen})
    logger.info("worker %d ready, up to %d calls", os.getpid(), worker.max_calls)
    try:
        worker.run()
    finally:
        worker.stop()
        logger.info("worker %d stopped", os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
