"""Two phones cross-connected through SipService: each hears the other only."""

from __future__ import annotations

import numpy as np
import pytest
import pytest_twisted

from tests.e2e.baresip import read_wav, tone_levels
from tests.sip.conftest import needs_baresip, sleep

pytestmark = [needs_baresip, pytest.mark.timeout(90)]


@pytest_twisted.ensureDeferred
async def test_cross_connected_phones_hear_each_other(phones, service) -> None:
    phone_a, phone_b = phones(440.0), phones(1000.0)
    svc, log = service()
    peer = {"a": "b", "b": "a"}

    def relay(leg: str, pcm: np.ndarray) -> None:
        svc.send_audio(peer[leg], pcm)

    log.on_audio_hook = relay
    svc.dial("a", phone_a.uri)
    svc.dial("b", phone_b.uri)
    await log.wait_for("a", "answered")
    await log.wait_for("b", "answered")
    await sleep(4.0)

    # the worker reports, each second, how long frames waited in its inboxes,
    # and the pool how long messages spent in its pipes
    (worker,) = svc.workers()
    assert sorted(worker["queues"]) == ["a", "b"]
    for stats in worker["queues"].values():
        assert 25 <= stats["frames"] <= 75, stats  # about 50 a second
        assert 0.0 <= stats["queue_ms"] <= stats["queue_ms_max"], stats
    assert 0.0 <= worker["pipe_from_worker_ms"] < 1000.0, worker
    assert 0.0 <= worker["pipe_to_worker_ms"] < 1000.0, worker

    svc.hangup("a")
    svc.hangup("b")
    await log.wait_terminal("a")
    await log.wait_terminal("b")
    phone_a.wait_event("CALL_CLOSED")
    phone_b.wait_event("CALL_CLOSED")

    # what the bridge received from each phone is that phone's tone
    for leg, own, other in (("a", 440.0, 1000.0), ("b", 1000.0, 440.0)):
        got = np.concatenate(log.audio[leg]).astype(np.float64) / 32768
        assert len(got) > 3 * 16000
        levels = tone_levels(got, 16000, [own, other])
        assert levels[own] > 0.1 and levels[other] < 0.01 * levels[own], levels

    # what each phone heard is the other phone's tone, not its own
    for phone, own, other in ((phone_a, 440.0, 1000.0), (phone_b, 1000.0, 440.0)):
        path = phone.recording("dec")
        assert path is not None
        rate, heard = read_wav(path)
        assert len(heard) > 3 * rate
        levels = tone_levels(heard, rate, [own, other], skip=1.0)
        assert levels[other] > 0.1, levels
        assert levels[own] < 0.01 * levels[other], levels
