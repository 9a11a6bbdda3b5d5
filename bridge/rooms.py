"""Rooms in the state database: names, host keys and passwords, hashed.

A host key is a random token shown once at creation; the database keeps its
SHA-256 (the key has 256 bits of entropy, so a fast hash is enough).  A room
password is chosen by people and may be weak, so it is kept as a salted
scrypt hash.  Checks compare in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ROOM_NAME, RoomDeclaration

# scrypt cost: n=2**15, r=8, p=1 takes about 50 ms and 32 MiB here
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD = 8
MAX_PASSWORD = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    host_key_sha256 TEXT NOT NULL,
    password_scrypt TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'cli'
);
"""


class RoomError(ValueError):
    """A room operation was refused; the message says why."""


@dataclass(frozen=True)
class Room:
    name: str
    host_key_sha256: str
    password_scrypt: str
    created: float
    source: str

    @property
    def has_password(self) -> bool:
        return bool(self.password_scrypt)


def check_room_name(name: str) -> str:
    if not ROOM_NAME.match(name):
        raise RoomError(
            f"room name {name!r} is not valid: use 1 to 63 lowercase letters, "
            "digits or '-', starting with a letter or digit"
        )
    return name


def new_host_key() -> str:
    return secrets.token_urlsafe(32)


def hash_host_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """A salted scrypt hash: ``scrypt$n$r$p$salt$digest`` (base64)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise RoomError(
            f"a room password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
    )
    encode = base64.b64encode
    return (
        f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$"
        f"{encode(salt).decode()}${encode(digest).decode()}"
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8")[: MAX_PASSWORD * 4],
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def verify_host_key(key: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_host_key(key), stored_sha256)


class RoomStore:
    """The ``rooms`` table of the state database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, password: str | None = None) -> str:
        """Creates a room; returns its host key, which is not stored."""
        check_room_name(name)
        key = new_host_key()
        hashed = hash_password(password) if password else ""
        try:
            self._db.execute(
                "INSERT INTO rooms (name, host_key_sha256, password_scrypt, created) "
                "VALUES (?, ?, ?, ?)",
                (name, hash_host_key(key), hashed, time.time()),
            )
        except sqlite3.IntegrityError:
            raise RoomError(f"room {name!r} already exists") from None
        return key

    def declare(self, declaration: RoomDeclaration) -> None:
        """Makes a room declared in the config exist with the declared hashes."""
        existing = self.get(declaration.name)
        if existing is None:
            self._db.execute(
                "INSERT INTO rooms (name, host_key_sha256, password_scrypt, created, "
                "source) VALUES (?, ?, ?, ?, 'config')",
                (
                    declaration.name,
                    declaration.host_key_sha256 or hash_host_key(new_host_key()),
                    declaration.password_scrypt,
                    time.time(),
                ),
            )
            return
        if declaration.host_key_sha256:
            self._db.execute(
                "UPDATE rooms SET host_key_sha256 = ? WHERE name = ?",
                (declaration.host_key_sha256, declaration.name),
            )
        if declaration.password_scrypt:
            self.set_password_hash(declaration.name, declaration.password_scrypt)

    def set_password(self, name: str, password: str) -> None:
        self.set_password_hash(name, hash_password(password))

    def set_password_hash(self, name: str, hashed: str) -> None:
        cursor = self._db.execute(
            "UPDATE rooms SET password_scrypt = ? WHERE name = ?", (hashed, name)
        )
        if cursor.rowcount == 0:
            raise RoomError(f"no room named {name!r}")

    def rotate_host_key(self, name: str) -> str:
        key = new_host_key()
        cursor = self._db.execute(
            "UPDATE rooms SET host_key_sha256 = ? WHERE name = ?",
            (hash_host_key(key), name),
        )
        if cursor.rowcount == 0:
            raise RoomError(f"no room named {name!r}")
        return key

    def delete(self, name: str) -> None:
        cursor = self._db.execute("DELETE FROM rooms WHERE name = ?", (name,))
        if cursor.rowcount == 0:
            raise RoomError(f"no room named {name!r}")

    def get(self, name: str) -> Room | None:
        row = self._db.execute(
            "SELECT name, host_key_sha256, password_scrypt, created, source "
            "FROM rooms WHERE name = ?",
            (name,),
        ).fetchone()
        return Room(*row) if row else None

    def list(self) -> list[Room]:
        rows = self._db.execute(
            "SELECT name, host_key_sha256, password_scrypt, created, source "
            "FROM rooms ORDER BY name"
        ).fetchall()
        return [Room(*row) for row in rows]
