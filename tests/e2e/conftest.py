"""Fixtures for end-to-end tests: a test PKI, the real bridge with SIP, phones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bridge.harness import BridgeProcess, write_config
from tests.e2e.baresip import Phone, Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(str(directory))


@pytest.fixture
def bridge(tmp_path: Path, pki: Pki) -> Iterator[BridgeProcess]:
    config = write_config(tmp_path, sip=True, extra=f'ca_file = "{pki.ca_file}"')
    process = BridgeProcess(config, log_level="info")
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def phones(pki: Pki) -> Iterator[Callable[..., Phone]]:
    started: list[Phone] = []

    def start(tone_hz: float, **kwargs: Any) -> Phone:
        phone = Phone(pki, tone_hz, **kwargs).start()
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()
