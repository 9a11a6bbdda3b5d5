"""The ``carebridge`` command."""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys

from . import config as config_module
from .config import LOG_LEVELS, Config, ConfigError

EXIT_CONFIG = 2


def _load(path: str | None) -> Config:
    return config_module.load(path)


def _read_password(prompt: str, allow_empty: bool) -> str:
    """A password from the terminal (asked twice) or one line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if not first and allow_empty:
            return ""
        second = getpass.getpass("Repeat it: ")
        if first != second:
            raise ConfigError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _store(config: Config):  # type: ignore[no-untyped-def]
    from .app import prepare_state_dir
    from .core import DATABASE_NAME
    from .rooms import RoomStore

    state_dir = prepare_state_dir(config.state_dir)
    return state_dir, RoomStore(state_dir / DATABASE_NAME)


def cmd_serve(args: argparse.Namespace) -> int:
    from . import logs
    from .app import serve

    config = _load(args.config)
    logs.setup(args.log_level or config.log_level)
    return serve(config)


def cmd_room_create(args: argparse.Namespace) -> int:
    from .audit import AUDIT_NAME, AuditLog
    from .rooms import check_room_name

    config = _load(args.config)
    check_room_name(args.name)
    password = ""
    if not args.no_password:
        password = _read_password(
            f"Password for room {args.name} (empty for none): ", allow_empty=True
        )
    state_dir, store = _store(config)
    key = store.create(args.name, password or None)
    AuditLog(state_dir / AUDIT_NAME).record(
        "room-created", args.name, by="cli", password_set=bool(password)
    )
    print(f"room {args.name} created")
    print(f"host key (shown once, keep it safe): {key}")
    if not password:
        print(
            f"no password yet: browsers cannot join until "
            f"'carebridge room set-password {args.name}'"
        )
    return 0


def cmd_room_list(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _, store = _store(config)
    rooms = store.list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": room.name,
                        "password": room.has_password,
                        "created": room.created,
                        "source": room.source,
                    }
                    for room in rooms
                ]
            )
        )
        return 0
    if not rooms:
        print("no rooms")
    for room in rooms:
        created = datetime.datetime.fromtimestamp(room.created).strftime(
            "%Y-%m-%d %H:%M"
        )
        password = "password set" if room.has_password else "no password"
        print(f"{room.name:<24} {password:<12} created {created} ({room.source})")
    return 0


def cmd_room_set_password(args: argparse.Namespace) -> int:
    from .audit import AUDIT_NAME, AuditLog

    config = _load(args.config)
    state_dir, store = _store(config)
    if store.get(args.name) is None:
        raise ConfigError(f"no room named {args.name!r}")
    password = _read_password(f"New password for room {args.name}: ", allow_empty=False)
    store.set_password(args.name, password)
    AuditLog(state_dir / AUDIT_NAME).record("password-changed", args.name, by="cli")
    print(f"password of room {args.name} changed")
    return 0


def cmd_room_rotate_key(args: argparse.Namespace) -> int:
    from .audit import AUDIT_NAME, AuditLog

    config = _load(args.config)
    state_dir, store = _store(config)
    key = store.rotate_host_key(args.name)
    AuditLog(state_dir / AUDIT_NAME).record("host-key-rotated", args.name, by="cli")
    print(f"new host key for {args.name} (shown once): {key}")
    return 0


def cmd_room_hash_password(args: argparse.Namespace) -> int:
    from .rooms import hash_password

    password = _read_password("Password to hash: ", allow_empty=False)
    print(hash_password(password))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import AUDIT_NAME, read

    config = _load(args.config)
    for entry in read(config.state_dir / AUDIT_NAME, args.room):
        print(json.dumps(entry, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carebridge",
        description="Secure conferencing bridge: dial-out phones, SIP phones and "
        "browsers in one encrypted conference.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration (default: embedded defaults)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the bridge")
    serve.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="TOML configuration (default: embedded defaults)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="overrides logging.level of the configuration",
    )
    serve.set_defaults(func=cmd_serve)

    room = commands.add_parser("room", help="manage rooms")
    room_commands = room.add_subparsers(
        dest="room_command", required=True, metavar="ACTION"
    )
    create = room_commands.add_parser(
        "create", help="create a room and print its host key once"
    )
    create.add_argument("name")
    create.add_argument(
        "--no-password", action="store_true", help="do not ask for a room password now"
    )
    create.set_defaults(func=cmd_room_create)
    listing = room_commands.add_parser("list", help="list rooms")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_room_list)
    password = room_commands.add_parser(
        "set-password", help="set a room's password (asked, or read from stdin)"
    )
    password.add_argument("name")
    password.set_defaults(func=cmd_room_set_password)
    rotate = room_commands.add_parser("rotate-key", help="replace a room's host key")
    rotate.add_argument("name")
    rotate.set_defaults(func=cmd_room_rotate_key)
    hashing = room_commands.add_parser(
        "hash-password", help="print a password hash for a [[room]] in the config"
    )
    hashing.set_defaults(func=cmd_room_hash_password)
    for sub in (create, listing, password, rotate, hashing):
        sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)

    audit = commands.add_parser("audit", help="print the audit trail as JSON lines")
    audit.add_argument("--room")
    audit.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)
    audit.set_defaults(func=cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"carebridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:  # RoomError and friends
        print(f"carebridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
