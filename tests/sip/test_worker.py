"""The worker process on its own: limits, bad input, shutdown; pure helpers."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from sip.config import SipConfig
from sip.events import CallEvent, classify_end
from sip.protocol import Audio, Control, Decoder, encode_control
from tests.sip.conftest import needs_baresip

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WorkerClient:
    """A worker subprocess driven synchronously, always killed at the end."""

    def __init__(self, config: SipConfig) -> None:
        env = dict(os.environ, PYTHONPATH=REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sip.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        self.decoder = Decoder()
        self.controls: list[dict[str, Any]] = []
        self.audio = 0
        self.send({"type": "config", "config": config.to_wire()})

    def send(self, body: dict[str, Any]) -> None:
        self.send_raw(encode_control(body))

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def pump(self, timeout: float) -> bool:
        """Read what is there; False at end of stream."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if select.select([fd], [], [], timeout)[0]:
            data = os.read(fd, 65536)
            if not data:
                return False
            self.decoder.feed(data)
            while (msg := self.decoder.next_message()) is not None:
                if isinstance(msg, Audio):
                    self.audio += 1
                else:
                    assert isinstance(msg, Control)
                    self.controls.append(msg.body)
        return True

    def wait(self, match: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in self.controls:
                if all(body.get(k) == v for k, v in match.items()):
                    return body
            self.pump(0.05)
        raise AssertionError(f"no {match} in {self.controls}")

    def close(self, timeout: float = 8.0) -> int:
        try:
            self.send({"type": "shutdown"})
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pump(0.1):
            pass
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode("utf-8", "replace")


@needs_baresip
@pytest.mark.timeout(60)
def test_fifth_call_is_refused_and_worker_survives(phones, sip_config) -> None:
    phone = phones(440.0, answer="manual")
    client = WorkerClient(sip_config())
    try:
        client.wait({"type": "ready"})
        for n in range(1, 6):
            client.send({"type": "dial", "leg": f"l{n}", "slot": n, "uri": phone.uri})
        refused = client.wait({"leg": "l5", "kind": "failed"})
        assert refused["reason"] == "worker is full (4 calls)"
        for n in range(1, 5):
            client.wait({"leg": f"l{n}", "kind": "ringing"})
        assert client.proc.poll() is None
        assert client.close() == 0  # hangs up the four and exits cleanly
    finally:
        client.close()
    ended = [b for b in client.controls if b.get("kind") == "ended"]
    assert sorted(b["leg"] for b in ended) == ["l1", "l2", "l3", "l4"]
    assert all(b["by"] == "bridge" for b in ended)


@pytest.mark.timeout(30)
def test_garbage_on_the_pipe_stops_the_worker_cleanly(sip_config) -> None:
    client = WorkerClient(sip_config())
    try:
        client.wait({"type": "ready"})
        client.send_raw(b"GET / HTTP/1.1\r\n\r\n")
        assert client.proc.wait(10) == 0
    finally:
        client.close()
    assert "unknown message kind 0x47" in client.stderr()


@pytest.mark.timeout(30)
def test_password_never_reaches_the_log(sip_config) -> None:
    config = sip_config(
        username="bridge", password="s3cret-Pa55", proxy="sip:127.0.0.1:9"
    )
    assert "s3cret" not in repr(config)
    client = WorkerClient(config)
    try:
        client.wait({"type": "ready"})
        client.send({"type": "dial", "leg": "x", "slot": 1, "uri": "sip:a@127.0.0.1:9"})
        client.wait({"leg": "x", "kind": "failed"}, timeout=20)
    finally:
        client.close()
    assert "s3cret" not in client.stderr()


@pytest.mark.timeout(30)
def test_bad_certificate_path_is_fatal(sip_config) -> None:
    client = WorkerClient(sip_config(tls_key="/nonexistent/key.pem"))
    try:
        fatal = client.wait({"type": "fatal"})
        assert client.proc.wait(10) == 1
    finally:
        client.close()
    assert fatal["reason"] == "cannot read tls_key file /nonexistent/key.pem"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            dict(answered=True, status=200, reason="OK", by_bridge=False),
            CallEvent("ended", status=200, by="remote"),
        ),
        (
            dict(answered=True, status=200, reason="OK", by_bridge=True),
            CallEvent("ended", status=200, by="bridge"),
        ),
        (
            dict(
                answered=False, status=487, reason="Request Terminated", by_bridge=True
            ),
            CallEvent("ended", status=487, reason="Request Terminated", by="bridge"),
        ),
        (
            dict(answered=False, status=486, reason="Busy Here", by_bridge=False),
            CallEvent("busy", status=486, reason="Busy Here"),
        ),
        (
            dict(answered=False, status=600, reason="Busy Everywhere", by_bridge=False),
            CallEvent("busy", status=600, reason="Busy Everywhere"),
        ),
        (
            dict(answered=False, status=603, reason="Decline", by_bridge=False),
            CallEvent("rejected", status=603, reason="Decline"),
        ),
        (
            dict(answered=False, status=408, reason="Request Timeout", by_bridge=False),
            CallEvent("rejected", status=408, reason="Request Timeout"),
        ),
        (
            dict(
                answered=False,
                status=503,
                reason="SSL certificate verification error (PJSIP_TLS_ECERTVERIF)",
                by_bridge=False,
            ),
            CallEvent(
                "failed",
                status=503,
                reason="TLS handshake failed: SSL certificate verification error "
                "(PJSIP_TLS_ECERTVERIF)",
            ),
        ),
        (
            dict(
                answered=False, status=503, reason="Connection refused", by_bridge=False
            ),
            CallEvent("failed", status=503, reason="Connection refused"),
        ),
    ],
)
def test_classify_end(kwargs: dict[str, Any], expected: CallEvent) -> None:
    assert classify_end(no_answer=False, timeout=45.0, **kwargs) == expected


def test_classify_no_answer_and_488() -> None:
    event = classify_end(
        answered=False,
        status=487,
        reason="Request Terminated",
        by_bridge=False,
        no_answer=True,
        timeout=45.0,
    )
    assert event == CallEvent("no-answer", status=487, reason="no answer in 45s")
    event = classify_end(
        answered=False,
        status=488,
        reason="Not Acceptable Here",
        by_bridge=False,
        no_answer=False,
        timeout=45.0,
    )
    assert event.kind == "failed" and event.status == 488
    assert event.reason == (
        "peer refused the offer (SRTP is mandatory; codecs G722/PCMU/PCMA): "
        "Not Acceptable Here"
    )
