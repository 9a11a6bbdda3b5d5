"""Rooms: host keys shown once, passwords salted and slow to guess."""

from __future__ import annotations

import re

import pytest

from bridge import rooms
from tests.bridge.harness import cli, write_config


def test_password_hash_is_salted_scrypt():
    first = rooms.hash_password("correct horse")
    second = rooms.hash_password("correct horse")
    assert first.startswith("scrypt$32768$8$1$") and first != second
    assert rooms.verify_password("correct horse", first)
    assert not rooms.verify_password("correct hors", first)
    assert not rooms.verify_password("correct horse", "garbage")
    with pytest.raises(rooms.RoomError, match="8 to 256 characters"):
        rooms.hash_password("short")


def test_store_keeps_only_hashes(tmp_path):
    store = rooms.RoomStore(tmp_path / "db.sqlite")
    key = store.create("ward-7", "a long password")
    room = store.get("ward-7")
    assert room is not None and room.has_password
    assert rooms.verify_host_key(key, room.host_key_sha256)
    assert not rooms.verify_host_key(key + "x", room.host_key_sha256)
    with pytest.raises(rooms.RoomError, match="room 'ward-7' already exists"):
        store.create("ward-7")
    with pytest.raises(rooms.RoomError, match="room name 'Ward 7' is not valid"):
        store.create("Ward 7")
    new_key = store.rotate_host_key("ward-7")
    assert not rooms.verify_host_key(key, store.get("ward-7").host_key_sha256)
    assert rooms.verify_host_key(new_key, store.get("ward-7").host_key_sha256)
    store.close()
    raw = (tmp_path / "db.sqlite").read_bytes()
    assert key.encode() not in raw and b"a long password" not in raw


def test_cli_room_lifecycle(tmp_path):
    config = write_config(tmp_path)
    created = cli(config, "room", "create", "clinic", stdin="\n")
    assert created.returncode == 0, created.stderr
    assert re.search(r"host key \(shown once, keep it safe\): \S{40,}", created.stdout)
    assert "browsers cannot join until" in created.stdout

    listed = cli(config, "room", "list")
    assert re.search(r"^clinic\s+no password", listed.stdout, re.M)

    # the password comes from stdin, never from the command line
    changed = cli(config, "room", "set-password", "clinic", stdin="s3cure-enough\n")
    assert changed.returncode == 0, changed.stderr
    assert "s3cure-enough" not in changed.stdout + changed.stderr
    assert re.search(
        r"^clinic\s+password set", cli(config, "room", "list").stdout, re.M
    )

    short = cli(config, "room", "set-password", "clinic", stdin="short\n")
    assert short.returncode == 1 and "8 to 256 characters" in short.stderr
    absent = cli(config, "room", "set-password", "nowhere", stdin="whatever-long\n")
    assert absent.returncode == 2 and "no room named 'nowhere'" in absent.stderr
    twice = cli(config, "room", "create", "clinic", "--no-password")
    assert twice.returncode == 1 and "already exists" in twice.stderr

    audit = cli(config, "audit", "--room", "clinic").stdout.splitlines()
    assert [line for line in audit if '"room-created"' in line]
    assert [line for line in audit if '"password-changed"' in line]
    assert "s3cure-enough" not in "".join(audit)
