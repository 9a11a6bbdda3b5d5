"""Configuration of the SIP side, shared by the pool and its workers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: pjsua's compiled-in PJSUA_MAX_CALLS; going past it aborts the process
PJSUA_MAX_CALLS = 4


class SipConfigError(ValueError):
    """A SIP configuration value is out of range."""


@dataclass(frozen=True)
class SipConfig:
    """How the bridge places SIP calls.

    ``password`` is kept out of ``repr`` so the config can be logged.
    """

    tls_cert: str
    tls_key: str
    ca_file: str | None = None
    verify_server: bool = True
    proxy: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    realm: str = "*"
    max_workers: int = 16
    calls_per_worker: int = 4
    no_answer_timeout: float = 45.0
    insecure_lab_mode: bool = False
    local_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not 1 <= self.calls_per_worker <= PJSUA_MAX_CALLS:
            raise SipConfigError(
                f"calls_per_worker must be between 1 and {PJSUA_MAX_CALLS}, "
                f"not {self.calls_per_worker}"
            )
        if self.max_workers < 1:
            raise SipConfigError(
                f"max_workers must be at least 1, not {self.max_workers}"
            )
        if not self.no_answer_timeout > 0:
            raise SipConfigError(
                f"no_answer_timeout must be positive, not {self.no_answer_timeout!r}"
            )
        if self.password is not None and self.username is None:
            raise SipConfigError("password given without username")

    def to_wire(self) -> dict[str, Any]:
        """The settings a worker needs, as a JSON-ready dict (password included)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SipConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SipConfigError(f"unknown SIP config keys: {', '.join(unknown)}")
        return cls(**data)
