"""One logging tree for the bridge, Twisted and the SIP workers."""

from __future__ import annotations

import logging
import sys

from twisted.logger import STDLibLogObserver, globalLogBeginner

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup(level: str) -> None:
    """Sends our loggers and Twisted's to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # aioice and aiortc are chatty at info
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(LEVELS[level], logging.WARNING))
    globalLogBeginner.beginLoggingTo(
        [STDLibLogObserver(name="twisted")], redirectStandardIO=False
    )
