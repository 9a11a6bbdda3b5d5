"""The audit trail: who joined, who left, what the host did, what failed.

One JSON object a line in ``audit.log`` in the state directory, appended and
flushed to disk as each event happens, readable by ``carebridge audit``.  It
records identities and actions, never conference content or secrets.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

AUDIT_NAME = "audit.log"

# fields that must never reach the trail, whatever a caller passes
FORBIDDEN = frozenset({"password", "pin", "host_key", "key", "secret", "sdp"})


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def record(self, event: str, room: str | None = None, **fields: Any) -> None:
        """Appends one event; ``fields`` are plain JSON values."""
        leaked = FORBIDDEN.intersection(fields)
        if leaked:
            raise ValueError(f"audit fields {sorted(leaked)} would record a secret")
        entry = {"time": round(time.time(), 3), "event": event}
        if room is not None:
            entry["room"] = room
        entry.update(fields)
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        logger.info("audit: %s %s %s", event, room or "-", _summary(fields))

    def close(self) -> None:
        self._file.close()


def _summary(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(fields.items()))


def read(path: Path, room: str | None = None) -> Iterator[dict[str, Any]]:
    """Events from an audit log, optionally only those of one room."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if room is None or entry.get("room") == room:
                yield entry
