from __future__ import annotations

import pytest

from tests.bridge.harness import BridgeProcess, write_config


@pytest.fixture
def bridge(tmp_path):
    process = BridgeProcess(write_config(tmp_path))
    yield process
    process.close()
