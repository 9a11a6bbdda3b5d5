"""The bridge's configuration: TOML in, validated frozen dataclasses out.

Every key is checked at start: an unknown key, a wrong type, a value out of
range or two settings that contradict each other stop the bridge with a
:class:`ConfigError` that names the key and the problem.  Secrets (the SIP
trunk password) are never echoed back in an error.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
SECRET_KEYS = frozenset({"sip.password"})


class ConfigError(ValueError):
    """The configuration is malformed or inconsistent."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: str = ""
    tls_cert: str = ""
    tls_key: str = ""


@dataclass(frozen=True)
class MediaConfig:
    mixing_rate: int = 48000
    frame_ms: int = 20
    max_mixed: int = 16
    jitter_ms: int = 20
    max_jitter_ms: int = 120


@dataclass(frozen=True)
class SipSettings:
    enabled: bool = True
    ca_file: str = ""
    verify_server: bool = True
    proxy: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    max_workers: int = 16
    calls_per_worker: int = 4
    no_answer_timeout: float = 45.0
    insecure_lab_mode: bool = False


@dataclass(frozen=True)
class RoomsConfig:
    max_participants: int = 100
    demo_room: bool = True


@dataclass(frozen=True)
class RoomDeclaration:
    name: str
    host_key_sha256: str = ""
    password_scrypt: str = ""


@dataclass(frozen=True)
class RecordingConfig:
    enabled: bool = False


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    media: MediaConfig = MediaConfig()
    sip: SipSettings = SipSettings()
    rooms: RoomsConfig = RoomsConfig()
    recording: RecordingConfig = RecordingConfig()
    log_level: str = "info"
    declared_rooms: tuple[RoomDeclaration, ...] = ()
    source: str = "embedded defaults"

    @property
    def state_dir(self) -> Path:
        return (
            Path(self.server.state_dir)
            if self.server.state_dir
            else default_state_dir()
        )


def default_state_dir() -> Path:
    """Where the bridge keeps its database, certificate and audit log.

    ``$CAREBRIDGE_STATE_DIR`` if set; otherwise ``/var/lib/carebridge`` for
    root and ``$XDG_STATE_HOME/carebridge`` (``~/.local/state/carebridge``)
    for anyone else.
    """
    explicit = os.environ.get("CAREBRIDGE_STATE_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/lib/carebridge")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "carebridge"


# checks: each takes (key, value) and returns the value or raises ConfigError

Check = Callable[[str, Any], Any]


def _fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {problem}")


def _shown(key: str, value: Any) -> str:
    return "(hidden)" if key in SECRET_KEYS else repr(value)


def _integer(low: int, high: int) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"must be an integer, got {_shown(key, value)}")
        if not low <= value <= high:
            raise _fail(key, f"must be between {low} and {high}, got {value}")
        return value

    return check


def _number(low: float, high: float) -> Check:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(key, f"must be a number, got {_shown(key, value)}")
        if not low <= value <= high:
            raise _fail(key, f"must be between {low} and {high}, got {value}")
        return float(value)

    return check


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {_shown(key, value)}")
    return value


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(key, f"must be a string, got {_shown(key, value)}")
    return value


def _choice(*options: Any) -> Check:
    def check(key: str, value: Any) -> Any:
        if value not in options:
            listed = ", ".join(repr(option) for option in options)
            raise _fail(key, f"must be one of {listed}, got {_shown(key, value)}")
        return value

    return check


def _address(key: str, value: Any) -> str:
    _string(key, value)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise _fail(key, f"must be an IP address, got {value!r}") from None
    return str(value)


def _sip_uri(key: str, value: Any) -> str:
    _string(key, value)
    if value and not re.match(r"^sips?:[^\s@]+(@[^\s]+)?$", value):
        raise _fail(key, f"must be a sip: or sips: URI, got {value!r}")
    return str(value)


def _existing_file(key: str, value: Any) -> str:
    _string(key, value)
    if value and not Path(value).is_file():
        raise _fail(key, f"file {value!r} does not exist")
    return str(value)


SCHEMA: dict[str, dict[str, Check]] = {
    "server": {
        "host": _address,
        "port": _integer(0, 65535),
        "state_dir": _string,
        "tls_cert": _existing_file,
        "tls_key": _existing_file,
    },
    "media": {
        "mixing_rate": _choice(16000, 24000, 32000, 48000),
        "frame_ms": _choice(10, 20),
        "max_mixed": _integer(1, 64),
        "jitter_ms": _integer(10, 200),
        "max_jitter_ms": _integer(20, 240),
    },
    "sip": {
        "enabled": _boolean,
        "ca_file": _existing_file,
        "verify_server": _boolean,
        "proxy": _sip_uri,
        "username": _string,
        "password": _string,
        "max_workers": _integer(1, 256),
        "calls_per_worker": _integer(1, 4),
        "no_answer_timeout": _number(5, 600),
        "insecure_lab_mode": _boolean,
    },
    "rooms": {
        "max_participants": _integer(2, 1000),
        "demo_room": _boolean,
    },
    "recording": {"enabled": _boolean},
    "logging": {"level": _choice(*LOG_LEVELS)},
}

ROOM_SCHEMA: dict[str, Check] = {
    "name": _string,
    "host_key_sha256": _string,
    "password_scrypt": _string,
}


def parse(text: str, source: str = "<string>") -> Config:
    """Parses and validates configuration text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    return from_mapping(raw, source)


def load(path: str | os.PathLike[str] | None) -> Config:
    """Loads a configuration file, or the embedded defaults for ``None``."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(path)!r}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
    return parse(text, str(path))


def from_mapping(raw: Mapping[str, Any], source: str) -> Config:
    sections: dict[str, dict[str, Any]] = {}
    declared: list[RoomDeclaration] = []
    for name, body in raw.items():
        if name == "room":
            declared = _rooms(body)
            continue
        if name not in SCHEMA:
            known = ", ".join(sorted([*SCHEMA, "room"]))
            raise ConfigError(f"unknown config section '{name}' (known: {known})")
        if not isinstance(body, dict):
            raise ConfigError(f"config key '{name}' must be a table, e.g. [{name}]")
        checks = SCHEMA[name]
        values: dict[str, Any] = {}
        for key, value in body.items():
            dotted = f"{name}.{key}"
            if key not in checks:
                raise ConfigError(f"unknown config key '{dotted}'")
            values[key] = checks[key](dotted, value)
        sections[name] = values

    logging_section = sections.pop("logging", {})
    config = Config(
        server=ServerConfig(**sections.get("server", {})),
        media=MediaConfig(**sections.get("media", {})),
        sip=SipSettings(**sections.get("sip", {})),
        rooms=RoomsConfig(**sections.get("rooms", {})),
        recording=RecordingConfig(**sections.get("recording", {})),
        log_level=logging_section.get("level", "info"),
        declared_rooms=tuple(declared),
        source=source,
    )
    _check_consistency(config)
    return config


def _rooms(body: Any) -> list[RoomDeclaration]:
    if not isinstance(body, list):
        raise ConfigError("config key 'room' must be an array of tables: [[room]]")
    rooms = []
    names: set[str] = set()
    for index, entry in enumerate(body):
        prefix = f"room[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"config key '{prefix}' must be a table")
        values = {}
        for key, value in entry.items():
            if key not in ROOM_SCHEMA:
                raise ConfigError(f"unknown config key '{prefix}.{key}'")
            values[key] = ROOM_SCHEMA[key](f"{prefix}.{key}", value)
        name = values.get("name")
        if not name:
            raise ConfigError(f"config key '{prefix}.name' is required")
        if not ROOM_NAME.match(name):
            raise _fail(
                f"{prefix}.name",
                "must be 1 to 63 lowercase letters, digits or '-', "
                f"starting with a letter or digit, got {name!r}",
            )
        if name in names:
            raise _fail(f"{prefix}.name", f"room {name!r} is declared twice")
        names.add(name)
        digest = values.get("host_key_sha256", "")
        if digest and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _fail(f"{prefix}.host_key_sha256", "must be 64 lowercase hex digits")
        scrypt = values.get("password_scrypt", "")
        if scrypt and not scrypt.startswith("scrypt$"):
            raise _fail(
                f"{prefix}.password_scrypt",
                "must be a hash from 'carebridge room hash-password'",
            )
        rooms.append(RoomDeclaration(**values))
    return rooms


def _check_consistency(config: Config) -> None:
    server, media, sip = config.server, config.media, config.sip
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError(
            "config keys 'server.tls_cert' and 'server.tls_key' must be set together"
        )
    if media.max_jitter_ms < media.jitter_ms:
        raise ConfigError(
            "config key 'media.max_jitter_ms': must not be below media.jitter_ms "
            f"({media.max_jitter_ms} < {media.jitter_ms})"
        )
    if sip.password and not sip.username:
        raise ConfigError("config key 'sip.password': set 'sip.username' as well")
    if sip.username and not sip.proxy:
        raise ConfigError(
            "config key 'sip.username': digest credentials need a trunk in 'sip.proxy'"
        )
    if sip.proxy.startswith("sip:") and not sip.insecure_lab_mode:
        if ";transport=tls" not in sip.proxy.lower():
            raise ConfigError(
                "config key 'sip.proxy': must be a sips: URI or carry ;transport=tls "
                "(plain SIP needs sip.insecure_lab_mode)"
            )
