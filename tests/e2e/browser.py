"""A headless Chromium harness for the join page.

Launches Debian's ``/usr/bin/chromium`` through Playwright (never a browser
Playwright downloads) with fake media devices fed from a WAV file, kept off
every network but loopback. A :class:`Browser` joins a room the way a person
would (name, password, camera or microphone only, the Join button) and reads
back what it received: the page's captured audio as int16 samples, and its
WebRTC statistics.

    with Chromium() as chromium:
        with chromium.browser(tone_hz=440) as tab:
            tab.join(url, "Ann", "secret")
            tab.wait_connected()
            pcm = tab.read_audio(1.0)
"""

from __future__ import annotations

import base64
import logging
import math
import os
import shutil
import tempfile
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
RATE = 48000

#: Flags that give fake devices and keep Chromium off the network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--ignore-certificate-errors",
    # WebRTC on a loopback-only set-up: offer 127.0.0.1 and the real address,
    # not an mDNS name the bridge would have to resolve by multicast
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # received audio plays (and reaches Web Audio) without a real gesture
    "--autoplay-policy=no-user-gesture-required",
]


def write_tone_wav(
    path: Path, frequency: float, seconds: float = 30.0, amplitude: float = 0.3
) -> Path:
    """A 48 kHz mono 16-bit sine WAV (Chromium loops it)."""
    n = np.arange(int(seconds * RATE))
    # a whole number of cycles, so the loop point does not click
    cycles = round(frequency * seconds)
    tone = amplitude * 32767 * np.sin(2 * math.pi * cycles * n / len(n))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(tone.astype("<i2").tobytes())
    return path


def dominant_frequency(pcm: npt.NDArray[np.int16], rate: int = RATE) -> float:
    """The strongest frequency in ``pcm`` (Hz)."""
    if len(pcm) < 1024:
        return 0.0
    data = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft((data - data.mean()) * np.hanning(len(data))))
    spectrum[:5] = 0
    return float(np.argmax(spectrum) * rate / len(data))


def tone_power(pcm: npt.NDArray[np.int16], frequency: float, rate: int = RATE) -> float:
    """Share of the signal's power within 20 Hz of ``frequency`` (0 to 1)."""
    if len(pcm) < 1024:
        return 0.0
    data = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft((data - data.mean()) * np.hanning(len(data)))) ** 2
    freqs = np.fft.rfftfreq(len(data), 1 / rate)
    total = spectrum[5:].sum()
    band = spectrum[np.abs(freqs - frequency) <= 20].sum()
    return float(band / total) if total > 0 else 0.0


class Browser:
    """One Chromium process with one page."""

    def __init__(self, page: Any, default_timeout: float) -> None:
        self.page = page
        self._timeout_ms = default_timeout * 1000
        page.set_default_timeout(self._timeout_ms)
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def open(self, url: str) -> None:
        self.page.goto(url)

    def join(self, url: str, name: str, password: str, video: bool = True) -> None:
        """Open the room page, fill in the form and press Join."""
        self.open(url)
        self.page.fill("#name", name)
        self.page.fill("#password", password)
        self.page.check(
            f'input[name="media"][value="{"camera" if video else "microphone"}"]'
        )
        self.page.click("#join")

    def state(self) -> str:
        return str(self.page.evaluate("window.carebridge.state"))

    def wait_state(self, *states: str, timeout: float | None = None) -> str:
        """Wait until ``window.carebridge.state`` is one of ``states``."""
        self.page.wait_for_function(
            "states => states.includes(window.carebridge.state)",
            arg=list(states),
            timeout=(timeout * 1000) if timeout else self._timeout_ms,
        )
        return self.state()

    def wait_connected(self, timeout: float | None = None) -> None:
        state = self.wait_state("connected", "error", "left", timeout=timeout)
        if state != "connected":
            raise AssertionError(
                f"page is {state!r}: {self.page.evaluate('window.carebridge.error')}"
                f"\n{self.console[-10:]}"
            )

    def status_text(self) -> str:
        return str(self.page.text_content("#status") or "")

    def read_audio(self, seconds: float) -> npt.NDArray[np.int16]:
        """The last ``seconds`` of audio the page received, mono int16."""
        result = self.page.evaluate("s => window.carebridge.readAudio(s)", seconds)
        raw = base64.b64decode(result["pcm"])
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)

    def stats(self) -> dict[str, Any]:
        return dict(self.page.evaluate("window.carebridge.stats()"))

    def messages(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.carebridge.messages"))

    def click(self, selector: str) -> None:
        self.page.click(selector)

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path=str(path))


class Chromium:
    """Playwright driving Debian's Chromium; a context manager.

    Every Chromium it starts is closed on exit, and killed if closing fails.
    """

    def __init__(self, headless: bool = True, timeout: float = 20.0) -> None:
        if not os.path.exists(CHROMIUM):
            raise FileNotFoundError(f"{CHROMIUM} is not installed")
        self._headless = headless
        self._timeout = timeout
        self._playwright: Any = None
        self._manager: Any = None
        self._tmp = Path(tempfile.mkdtemp(prefix="carebridge-chromium-"))
        self._browsers: list[Any] = []

    def __enter__(self) -> Chromium:
        # never let Playwright fetch a browser of its own
        os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        from playwright.sync_api import sync_playwright

        self._manager = sync_playwright()
        self._playwright = self._manager.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for browser in self._browsers:
            self._close(browser)
        self._browsers.clear()
        if self._manager is not None:
            self._manager.__exit__(None, None, None)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _close(self, browser: Any) -> None:
        try:
            browser.close()
        except Exception:  # noqa: BLE001 - fall back to killing it
            logger.warning("chromium did not close; killing it")
            process = getattr(browser, "process", None)
            if process is not None:
                process.kill()

    @contextmanager
    def browser(
        self, tone_hz: float | None = 440.0, wav: Path | None = None
    ) -> Iterator[Browser]:
        """A fresh Chromium whose microphone plays ``tone_hz`` (or ``wav``)."""
        if wav is None:
            wav = self._tmp / f"tone-{tone_hz or 0:g}.wav"
            if not wav.exists():
                write_tone_wav(wav, tone_hz or 0.0, amplitude=0.3 if tone_hz else 0.0)
        args = CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={wav}"]
        browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=self._headless,
            args=args,
            timeout=self._timeout * 1000,
        )
        self._browsers.append(browser)
        try:
            context = browser.new_context(
                ignore_https_errors=True,
                permissions=["camera", "microphone"],
                viewport={"width": 900, "height": 800},
            )
            yield Browser(context.new_page(), self._timeout)
        finally:
            self._browsers.remove(browser)
            self._close(browser)
