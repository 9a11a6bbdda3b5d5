"""Shared set-up for the browser-leg tests: loopback ICE, bounded async runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.bridge.harness import BridgeProcess, write_config
from webrtc import ice

T = TypeVar("T")


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    ice.set_media_addresses(["127.0.0.1"])
    yield
    ice.set_media_addresses(None)


@pytest.fixture
def run() -> Callable[[Callable[[], Awaitable[T]], float], T]:
    """Run a coroutine function on a fresh loop, failing after ``timeout`` s."""

    def runner(func: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(func(), timeout)

        return asyncio.run(bounded())

    return runner


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """A real bridge (SIP off) shared by the tests of one module."""
    directory: Path = tmp_path_factory.mktemp("bridge")
    process = BridgeProcess(write_config(directory), log_level="info")
    try:
        yield process
    finally:
        process.close()
