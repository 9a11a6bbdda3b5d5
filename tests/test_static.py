"""Lint and type checks, so CI holds the code to the project's own rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )


def test_ruff_lint_and_format() -> None:
    pytest.importorskip("ruff")
    lint = run(sys.executable, "-m", "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    layout = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert layout.returncode == 0, layout.stdout + layout.stderr


def test_mypy_strict_on_bridge_and_mixer() -> None:
    pytest.importorskip("mypy")
    pytest.importorskip("mypy_zope")
    checked = run(sys.executable, "-m", "mypy", "bridge", "mixer")
    assert checked.returncode == 0, checked.stdout + checked.stderr
