"""Runs the real bridge in a subprocess and talks to it over HTTPS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def write_config(directory: Path, extra: str = "", sip: bool = False) -> Path:
    path = directory / "carebridge.toml"
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = 0
state_dir = "{directory / "state"}"

[sip]
enabled = {"true" if sip else "false"}
{extra}
"""
    )
    return path


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``carebridge --config CONFIG ARGS...`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_env(),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CAREBRIDGE_STATE_DIR", None)
    return env


class BridgeProcess:
    """``carebridge serve`` on a free port, with its log kept for inspection."""

    def __init__(self, config: Path, log_level: str = "debug") -> None:
        self.config = config
        self.state_dir = config.parent / "state"
        self.log_path = config.parent / "bridge.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge",
                "serve",
                "--config",
                str(config),
                "--log-level",
                log_level,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=_env(),
            start_new_session=True,
        )
        self.url = ""
        self.stdout_lines: list[str] = []
        self._wait_for_url()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.context = ssl.create_default_context(
            cafile=str(self.state_dir / "bridge-cert.pem")
        )

    def _wait_for_url(self) -> None:
        found = threading.Event()
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def read() -> None:
            for raw in stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stdout_lines.append(line)
                if line.startswith("carebridge listening on "):
                    self.url = line.split()[-1]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(START_TIMEOUT):
            self.kill()
            raise RuntimeError(f"bridge did not start; log:\n{self.log()}")

    def demo_secrets(self) -> dict[str, str]:
        text = (self.state_dir / "demo-room.txt").read_text()
        pairs = (line.split(": ", 1) for line in text.splitlines() if ": " in line)
        return {key: value for key, value in pairs}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any, dict[str, str]]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=30
        )
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = content_type
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        kind = response.getheader("Content-Type", "")
        parsed: Any = (
            json.loads(payload) if kind.startswith("application/json") else payload
        )
        return response.status, parsed, dict(response.getheaders())

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait; returns the exit code (kills on timeout)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def close(self) -> None:
        try:
            self.terminate()
        finally:
            self.kill()
            self._log.close()


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
