"""A baresip phone for tests: TLS + SRTP on loopback, a tone in, a recording out.

Debian's baresip-core 1.0.0 is driven through its ``ctrl_tcp`` module
(netstring-framed JSON).  Each :class:`Phone` gets its own config directory,
listens for SIP over TLS on 127.0.0.1, answers by itself (or not), plays a
WAV tone with ``aufile`` and records what it hears with ``sndfile``
(``dump-<time>-dec.wav`` in its ``snd_path``).

Also here: a throw-away PKI (:func:`make_pki`) and tone helpers
(:func:`write_tone`, :func:`tone_levels`, :func:`dominant_frequency`).
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.io import wavfile

BARESIP = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
TONE_RATE = 16000


# -- certificates -----------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: str
    bridge_cert: str
    bridge_key: str
    phone_pem: str  # certificate and key in one file, as baresip wants
    other_ca_file: str  # a CA that signed nothing here, for failing verification


def make_pki(directory: str) -> Pki:
    """A CA, a bridge client certificate and a phone server certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject: str, issuer: Any, issuer_key: Any, key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def pem_cert(cert: Any) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def write(path: str, data: bytes) -> str:
        full = os.path.join(directory, path)
        with open(full, "wb") as f:
            f.write(data)
        return full

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("carebridge test CA", name("carebridge test CA"), ca_key, ca_key, True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = build("unrelated CA", name("unrelated CA"), other_key, other_key, True)
    bridge_key = ec.generate_private_key(ec.SECP256R1())
    bridge = build("bridge", ca.subject, ca_key, bridge_key, False)
    phone_key = ec.generate_private_key(ec.SECP256R1())
    phone = build("127.0.0.1", ca.subject, ca_key, phone_key, False)
    return Pki(
        ca_file=write("ca.pem", pem_cert(ca)),
        bridge_cert=write("bridge.pem", pem_cert(bridge)),
        bridge_key=write("bridge.key", pem_key(bridge_key)),
        phone_pem=write("phone.pem", pem_cert(phone) + pem_key(phone_key)),
        other_ca_file=write("other-ca.pem", pem_cert(other)),
    )


# -- tones -----------------------------------------------------------------------


def write_tone(
    path: str, freq: float, seconds: float = 120.0, level: float = 0.3
) -> str:
    """A mono 16-bit WAV at 16 kHz holding a sine at ``freq`` Hz."""
    t = np.arange(int(seconds * TONE_RATE), dtype=np.float64) / TONE_RATE
    samples = np.round(level * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    wavfile.write(path, TONE_RATE, samples)
    return path


def read_wav(path: str) -> tuple[int, np.ndarray]:
    """Rate and mono float samples in [-1, 1) of a 16-bit WAV."""
    rate, data = wavfile.read(path)
    if data.ndim > 1:
        data = data[:, 0]
    return rate, data.astype(np.float64) / 32768.0


def tone_levels(
    samples: np.ndarray, rate: int, freqs: list[float], skip: float = 0.5
) -> dict[float, float]:
    """RMS amplitude of each frequency in ``freqs`` (windowed FFT, +-15 Hz)."""
    x = samples[int(skip * rate) :]
    if len(x) < rate // 10:
        return {f: 0.0 for f in freqs}
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window)) * 2 / window.sum()
    bins = np.fft.rfftfreq(len(x), 1 / rate)
    out = {}
    for f in freqs:
        band = (bins > f - 15) & (bins < f + 15)
        out[f] = float(spectrum[band].max()) if band.any() else 0.0
    return out


def dominant_frequency(samples: np.ndarray, rate: int, skip: float = 0.5) -> float:
    x = samples[int(skip * rate) :]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[:3] = 0
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


# -- the phone ---------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port p with p and p + 1 free for UDP and TCP (baresip puts TLS on p + 1)."""
    for _ in range(50):
        base = free_port()
        if base >= 65535:
            continue
        socks = []
        try:
            for port in (base, base + 1):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise PhoneError("no free port pair")


class PhoneError(RuntimeError):
    pass


class Phone:
    """One baresip process acting as a telephone.

    ``mediaenc`` is "srtp-mand" (default) or None for a phone without SRTP;
    ``answer`` is "auto" or "manual" (it rings until told otherwise).
    """

    def __init__(
        self,
        pki: Pki,
        tone_hz: float | None = 440.0,
        *,
        mediaenc: str | None = "srtp-mand",
        answer: str = "auto",
        codecs: str = "G722/16000/1,PCMU/8000/1,PCMA/8000/1",
        user: str = "phone",
        tone_file: str | None = None,
    ) -> None:
        self.pki = pki
        self.user = user
        self.dir = tempfile.mkdtemp(prefix="baresip-")
        self.rec_dir = os.path.join(self.dir, "rec")
        os.mkdir(self.rec_dir)
        self.sip_port = free_port_pair()
        self.ctrl_port = free_port()
        if tone_file is None:
            tone_file = os.path.join(self.dir, "tone.wav")
            if tone_hz is None:
                write_tone(tone_file, 1000.0, level=0.0)
            else:
                write_tone(tone_file, tone_hz)
        self.tone_file = tone_file
        self._write_config(mediaenc, answer, codecs)
        self.proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._rx = b""
        self.events: list[dict[str, Any]] = []
        self._token = 0

    @property
    def uri(self) -> str:
        # baresip listens for TLS one port above sip_listen
        return f"sip:{self.user}@127.0.0.1:{self.sip_port + 1};transport=tls"

    def _write_config(self, mediaenc: str | None, answer: str, codecs: str) -> None:
        modules = [
            "g722.so",
            "g711.so",
            "aufile.so",
            "sndfile.so",
            "srtp.so",
            "account.so",
            "menu.so",
            "ctrl_tcp.so",
        ]
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            f"sip_certificate {self.pki.phone_pem}",
            f"sip_cafile {self.pki.ca_file}",
            "net_interface 127.0.0.1",
            "call_local_timeout 120",
            "call_max_calls 4",
            "audio_path /usr/share/baresip",
            "audio_player aufile,/dev/null",
            f"audio_source aufile,{self.tone_file}",
            "audio_alert aufile,/dev/null",
            f"ausrc_srate {TONE_RATE}",
            "ausrc_channels 1",
            "audio_level no",
            "rtp_stats no",
            f"module_path {MODULE_PATH}",
            *(f"module {m}" for m in modules),
            f"snd_path {self.rec_dir}",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            "dtmf_mode rtpevent",
        ]
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write("\n".join(lines) + "\n")
        params = ["regint=0", f"answermode={answer}", f"audio_codecs={codecs}"]
        if mediaenc:
            params.append(f"mediaenc={mediaenc}")
        with open(os.path.join(self.dir, "accounts"), "w") as f:
            f.write(f"<sip:{self.user}@127.0.0.1;transport=tls>;{';'.join(params)}\n")
        open(os.path.join(self.dir, "contacts"), "w").close()

    def start(self, timeout: float = 10.0) -> Phone:
        log = open(os.path.join(self.dir, "baresip.log"), "wb")
        self.proc = subprocess.Popen(
            [BARESIP, "-f", self.dir],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PhoneError(f"baresip exited: {self.log()[-2000:]}")
            try:
                self._ctrl = socket.create_connection(
                    ("127.0.0.1", self.ctrl_port), timeout=1
                )
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PhoneError(f"baresip did not open ctrl_tcp in {timeout:g}s")

    def log(self) -> str:
        with open(os.path.join(self.dir, "baresip.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    # ctrl_tcp: netstrings of JSON

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> Any:
        if self._ctrl is None:
            raise PhoneError("phone is not running")
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token})
        data = body.encode()
        self._ctrl.sendall(b"%d:%s," % (len(data), data))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self._receive(deadline - time.monotonic()):
                if msg.get("response") and msg.get("token") == token:
                    return msg
        raise PhoneError(f"no response to {command}")

    def poll_events(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        self._receive(timeout)
        return self.events

    def wait_event(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("type") == type_:
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhoneError(f"no {type_} event in {timeout:g}s")
            self._receive(min(left, 0.2))

    def _receive(self, timeout: float) -> list[dict[str, Any]]:
        assert self._ctrl is not None
        self._ctrl.settimeout(max(timeout, 0.001))
        try:
            chunk = self._ctrl.recv(65536)
        except (TimeoutError, BlockingIOError):
            chunk = b""
        self._rx += chunk
        out = []
        while True:
            length, colon, rest = self._rx.partition(b":")
            if not colon or not length.isdigit() or len(rest) < int(length) + 1:
                break
            size = int(length)
            msg = json.loads(rest[:size])
            self._rx = rest[size + 1 :]
            if msg.get("event"):
                self.events.append(msg)
            out.append(msg)
        return out

    def send_dtmf(self, digits: str, gap: float = 0.25) -> None:
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(gap)

    def hangup(self) -> Any:
        return self.command("hangup")

    # recordings

    def recording(self, which: str = "dec") -> str | None:
        files = sorted(glob.glob(os.path.join(self.rec_dir, f"dump-*-{which}.wav")))
        return files[-1] if files else None

    def stop(self, timeout: float = 3.0) -> None:
        if self._ctrl is not None:
            try:
                self.command("quit", timeout=1.0)
            except (OSError, PhoneError):
                pass
            self._ctrl.close()
            self._ctrl = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Phone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
