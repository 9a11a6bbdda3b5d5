"""Browser joins against the real bridge: passwords, guessing, bad messages."""

from __future__ import annotations

import time

from tests.bridge.wsclient import WebSocket

REFUSED = "room or password not accepted"


def join(bridge, room, password, name="Ann"):
    socket = WebSocket(bridge.port, f"/rooms/{room}/ws", bridge.context)
    assert socket.status == 101
    socket.send_json(
        {
            "type": "join",
            "name": name,
            "password": password,
            "audio": True,
            "video": False,
        }
    )
    return socket, socket.receive()


def test_right_password_joins_and_leaving_empties_the_roster(bridge):
    secrets = bridge.demo_secrets()
    socket, reply = join(bridge, "demo", secrets["password"])
    assert reply["type"] == "joined" and reply["room"] == "demo"
    leg = reply["leg"]
    status, roster, _ = bridge.request(
        "GET", "/api/rooms/demo/roster", key=secrets["host key"]
    )
    assert [entry["leg"] for entry in roster["legs"]] == [leg]
    assert roster["legs"][0]["kind"] == "browser"
    assert roster["legs"][0]["display_name"] == "Ann"

    socket.close()  # the tab goes away
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        roster = bridge.request(
            "GET", "/api/rooms/demo/roster", key=secrets["host key"]
        )[1]
        if not roster["legs"]:
            break
        time.sleep(0.2)
    assert roster["legs"] == []
    assert [entry["leg"] for entry in roster["ended"]] == [leg]


def test_wrong_password_and_unknown_room_look_the_same(bridge):
    _, wrong = join(bridge, "demo", "not the password")
    _, unknown = join(bridge, "no-such-room", "whatever password")
    assert wrong == unknown
    assert wrong["type"] == "error" and wrong["message"] == REFUSED
    log = bridge.log()
    assert "not the password" not in log and "whatever password" not in log


def test_guessing_from_one_address_is_slowed_down(bridge):
    times = []
    for attempt in range(6):
        start = time.monotonic()
        _, reply = join(bridge, "demo", f"guess number {attempt}")
        times.append(time.monotonic() - start)
        assert reply["message"] == REFUSED
    # three free tries, then 1 s, 2 s, 4 s of deliberate delay
    assert times[-1] >= 3.5
    assert times[-1] > times[0] + 3


def test_malformed_messages_are_answered_and_disturb_nobody(bridge):
    secrets = bridge.demo_secrets()
    member, reply = join(bridge, "demo", secrets["password"], name="Bob")
    assert reply["type"] == "joined"

    rude = WebSocket(bridge.port, "/rooms/demo/ws", bridge.context)
    for text, fragment in [
        ("{not json", "not valid JSON"),
        ('{"type": "fly"}', "unknown message type"),
        ('{"type": "join", "name": 5}', "name"),
        ("x" * (70 * 1024), "the limit is 65536"),
    ]:
        rude.send_text(text)
        error = rude.receive()
        assert error is not None and error["type"] == "error", text[:20]
        assert fragment in error["message"], (text[:20], error)
    rude.close()

    roster = bridge.request("GET", "/api/rooms/demo/roster", key=secrets["host key"])[1]
    assert [entry["display_name"] for entry in roster["legs"]] == ["Bob"]
    member.close()
