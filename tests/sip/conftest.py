"""Fixtures for driving the SIP pool against real baresip phones on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import task

from sip.config import SipConfig
from sip.events import CallEvent
from sip.pool import SipService
from tests.e2e.baresip import Phone, Pki, make_pki

needs_baresip = pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip is not installed"
)


def the_reactor() -> Any:
    """The installed reactor, looked up late so pytest-twisted can choose it."""
    from twisted.internet import reactor

    return reactor


def sleep(seconds: float) -> Any:
    return task.deferLater(the_reactor(), seconds, lambda: None)


class CallLog:
    """Everything a SipService reported, per leg."""

    def __init__(self) -> None:
        self.events: dict[str, list[CallEvent]] = {}
        self.audio: dict[str, list[np.ndarray]] = {}
        self.on_audio_hook: Callable[[str, np.ndarray], None] | None = None

    def on_event(self, leg: str, event: CallEvent) -> None:
        self.events.setdefault(leg, []).append(event)

    def on_audio(self, leg: str, data: bytes) -> None:
        pcm = np.frombuffer(data, dtype="<i2")
        self.audio.setdefault(leg, []).append(pcm)
        if self.on_audio_hook is not None:
            self.on_audio_hook(leg, pcm)

    def kinds(self, leg: str) -> list[str]:
        return [e.kind for e in self.events.get(leg, [])]

    def find(self, leg: str, kind: str) -> CallEvent | None:
        for event in self.events.get(leg, []):
            if event.kind == kind:
                return event
        return None

    async def wait_for(
        self, leg: str, kinds: str | tuple[str, ...], timeout: float = 15.0
    ) -> CallEvent:
        wanted = (kinds,) if isinstance(kinds, str) else kinds
        for _ in range(int(timeout / 0.05)):
            for event in self.events.get(leg, []):
                if event.kind in wanted:
                    return event
            await sleep(0.05)
        raise AssertionError(
            f"no {wanted} for {leg} in {timeout:g}s; got {self.kinds(leg)}"
        )

    async def wait_terminal(self, leg: str, timeout: float = 15.0) -> CallEvent:
        for _ in range(int(timeout / 0.05)):
            for event in self.events.get(leg, []):
                if event.terminal:
                    return event
            await sleep(0.05)
        raise AssertionError(f"leg {leg} did not end; got {self.kinds(leg)}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def phones(pki: Pki) -> Iterator[Callable[..., Phone]]:
    started: list[Phone] = []

    def start(tone_hz: float | None = 440.0, **kwargs: Any) -> Phone:
        phone = Phone(pki, tone_hz, **kwargs)
        started.append(phone)
        return phone.start()

    yield start
    for phone in started:
        phone.stop()
        shutil.rmtree(phone.dir, ignore_errors=True)


@pytest.fixture
def sip_config(pki: Pki) -> Callable[..., SipConfig]:
    def make(**overrides: Any) -> SipConfig:
        settings: dict[str, Any] = {
            "tls_cert": pki.bridge_cert,
            "tls_key": pki.bridge_key,
            "ca_file": pki.ca_file,
            "no_answer_timeout": 20.0,
        }
        settings.update(overrides)
        return SipConfig(**settings)

    return make


@pytest.fixture
def service(
    sip_config: Callable[..., SipConfig],
) -> Iterator[Callable[..., tuple[SipService, CallLog]]]:
    made: list[SipService] = []

    def make(warm_workers: int = 0, **overrides: Any) -> tuple[SipService, CallLog]:
        log = CallLog()
        svc = SipService(
            the_reactor(),
            sip_config(**overrides),
            log.on_event,
            log.on_audio,
            warm_workers=warm_workers,
            stop_timeout=3.0,
        )
        made.append(svc)
        return svc, log

    yield make
    for svc in made:
        pytest_twisted.blockon(svc.stop())
