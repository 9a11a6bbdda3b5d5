"""SipService against real baresip phones: TLS, SRTP, call outcomes, DTMF."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted

from sip.events import CallEvent
from sip.pool import CapacityError
from tests.e2e.baresip import PhoneError
from tests.sip.conftest import needs_baresip, sleep

pytestmark = [needs_baresip, pytest.mark.timeout(90)]


@pytest_twisted.ensureDeferred
async def test_answered_with_g722_and_srtp(phones, service) -> None:
    phone = phones(440.0)
    svc, log = service()
    svc.dial("leg-a", phone.uri)

    answered = await log.wait_for("leg-a", "answered")
    assert answered.codec == "G722"
    assert answered.srtp_suite in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
    assert log.kinds("leg-a")[0] == "trying"
    assert svc.workers()[0]["calls"] == 1
    phone.wait_event("CALL_ESTABLISHED")

    await sleep(0.5)
    svc.hangup("leg-a")
    ended = await log.wait_terminal("leg-a")
    assert (ended.kind, ended.by) == ("ended", "bridge")
    phone.wait_event("CALL_CLOSED")
    assert svc.workers()[0]["calls"] == 0


@pytest_twisted.ensureDeferred
async def test_remote_hangup(phones, service) -> None:
    phone = phones(440.0)
    svc, log = service()
    svc.dial("leg-a", phone.uri)
    await log.wait_for("leg-a", "answered")
    phone.hangup()
    ended = await log.wait_terminal("leg-a")
    assert (ended.kind, ended.by) == ("ended", "remote")


@pytest_twisted.ensureDeferred
async def test_dtmf_from_phone(phones, service) -> None:
    phone = phones(440.0)
    svc, log = service()
    svc.dial("leg-a", phone.uri)
    await log.wait_for("leg-a", "answered")
    await sleep(0.3)
    for digit in "1590*#":
        phone.command("sndcode", digit)
        await sleep(0.3)
    await sleep(0.5)
    digits = "".join(e.digit or "" for e in log.events["leg-a"] if e.kind == "dtmf")
    assert digits == "1590*#"
    svc.hangup("leg-a")
    await log.wait_terminal("leg-a")


@pytest_twisted.ensureDeferred
async def test_no_answer_times_out(phones, service) -> None:
    phone = phones(440.0, answer="manual")
    svc, log = service(no_answer_timeout=2.0)
    svc.dial("leg-a", phone.uri)
    await log.wait_for("leg-a", "ringing")
    end = await log.wait_terminal("leg-a", timeout=10)
    assert end.kind == "no-answer"
    assert end.reason == "no answer in 2s"
    phone.wait_event("CALL_CLOSED")


@pytest_twisted.ensureDeferred
async def test_rejected_while_ringing_is_busy(phones, service) -> None:
    phone = phones(440.0, answer="manual")
    svc, log = service()
    svc.dial("leg-a", phone.uri)
    await log.wait_for("leg-a", "ringing")
    phone.hangup()  # baresip 1.0 answers a ringing call's hangup with 486
    end = await log.wait_terminal("leg-a")
    assert (end.kind, end.status) == ("busy", 486)


@pytest_twisted.ensureDeferred
async def test_unknown_user_is_rejected(phones, service) -> None:
    phone = phones(440.0)
    svc, log = service()
    svc.dial("leg-a", phone.uri.replace("sip:phone@", "sip:nobody@"))
    end = await log.wait_terminal("leg-a")
    assert end.kind == "rejected"
    assert end.status == 404


@pytest_twisted.ensureDeferred
async def test_phone_without_srtp_is_not_connected(phones, service) -> None:
    phone = phones(440.0, mediaenc=None)
    svc, log = service()
    svc.dial("leg-a", phone.uri)
    end = await log.wait_terminal("leg-a")
    assert end.kind == "failed"
    assert end.status == 488
    assert "SRTP is mandatory" in (end.reason or "")
    assert "answered" not in log.kinds("leg-a")
    with pytest.raises(PhoneError):
        phone.wait_event("CALL_ESTABLISHED", timeout=0.5)


@pytest_twisted.ensureDeferred
async def test_untrusted_phone_certificate_fails_tls(phones, service, pki) -> None:
    phone = phones(440.0)
    svc, log = service(ca_file=pki.other_ca_file)
    svc.dial("leg-a", phone.uri)
    end = await log.wait_terminal("leg-a")
    assert end.kind == "failed"
    assert end.reason is not None and end.reason.startswith("TLS handshake failed")
    assert "answered" not in log.kinds("leg-a")


@pytest_twisted.ensureDeferred
async def test_killed_worker_drops_its_legs_and_pool_recovers(phones, service) -> None:
    first, second = phones(440.0), phones(1000.0)
    svc, log = service()
    svc.dial("leg-a", first.uri)
    await log.wait_for("leg-a", "answered")
    (worker,) = svc.workers()

    os.kill(worker["pid"], signal.SIGKILL)
    dropped = await log.wait_terminal("leg-a")
    assert dropped.kind == "dropped"
    assert "signal 9" in (dropped.reason or "")
    assert svc.workers() == []

    svc.dial("leg-b", second.uri)
    answered = await log.wait_for("leg-b", "answered")
    assert answered.codec == "G722"
    assert svc.workers()[0]["pid"] != worker["pid"]
    svc.hangup("leg-b")
    await log.wait_terminal("leg-b")


@pytest_twisted.ensureDeferred
async def test_pool_grows_and_refuses_when_full(phones, service) -> None:
    phone = phones(440.0, answer="manual")
    svc, log = service(max_workers=2, calls_per_worker=2)
    for leg in ("l1", "l2", "l3", "l4"):
        svc.dial(leg, phone.uri)
    with pytest.raises(CapacityError, match="^all 2 SIP workers are full$"):
        svc.dial("l5", phone.uri)
    assert sorted(w["calls"] for w in svc.workers()) == [2, 2]
    for leg in ("l1", "l2", "l3", "l4"):
        await log.wait_for(leg, "ringing")
        svc.hangup(leg)
    for leg in ("l1", "l2", "l3", "l4"):
        end = await log.wait_terminal(leg)
        assert (end.kind, end.by) == ("ended", "bridge")


def test_malformed_uri_and_duplicate_leg(service) -> None:
    svc, _ = service()
    with pytest.raises(ValueError, match="^malformed SIP URI 'sip:bad uri@x'$"):
        svc.dial("leg-a", "sip:bad uri@x")
    with pytest.raises(ValueError, match="only TLS is allowed"):
        svc.dial("leg-a", "sip:a@127.0.0.1;transport=udp")
    assert svc.workers() == []


@pytest_twisted.ensureDeferred
async def test_worker_that_cannot_start_fails_the_leg(service) -> None:
    svc, log = service(tls_key="/nonexistent/key.pem")
    svc.dial("leg-a", "sip:phone@127.0.0.1:5061;transport=tls")
    end = await log.wait_terminal("leg-a")
    assert end == CallEvent(
        "failed", reason="cannot read tls_key file /nonexistent/key.pem"
    )
    assert svc.workers() == []


@pytest_twisted.ensureDeferred
async def test_insecure_lab_mode_allows_plain_udp_and_rtp(phones, service) -> None:
    phone = phones(440.0, mediaenc=None)
    svc, log = service(insecure_lab_mode=True)
    svc.dial("leg-a", f"sip:phone@127.0.0.1:{phone.sip_port}")
    answered = await log.wait_for("leg-a", "answered")
    assert answered.codec == "G722"
    assert answered.srtp_suite is None
    svc.hangup("leg-a")
    await log.wait_terminal("leg-a")
