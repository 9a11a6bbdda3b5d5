"""The host API and the site, against a real bridge process over HTTPS."""

from __future__ import annotations

import re

from tests.bridge.harness import BridgeProcess, cli, write_config


def test_health_and_security_headers(bridge):
    status, body, headers = bridge.request("GET", "/api/health")
    assert status == 200 and body["status"] == "ok"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_roster_needs_the_host_key(bridge):
    key = bridge.demo_secrets()["host key"]
    status, body, headers = bridge.request("GET", "/api/rooms/demo/roster", key=key)
    assert status == 200
    assert body["room"] == "demo" and body["legs"] == [] and body["recording"] is False
    assert headers["Cache-Control"] == "no-store"

    wrong = bridge.request("GET", "/api/rooms/demo/roster", key="not-the-key")
    missing = bridge.request("GET", "/api/rooms/demo/roster")
    no_room = bridge.request("GET", "/api/rooms/nowhere/roster", key=key)
    for status, body, _ in (wrong, missing, no_room):
        # the same answer whether the key is wrong or the room does not exist
        assert status == 401
        assert body == {"error": "host key missing or not valid for this room"}


def test_malformed_requests_say_what_was_wrong(bridge):
    key = bridge.demo_secrets()["host key"]
    path = "/api/rooms/demo/dialout"
    cases = [
        (dict(raw=b"{not json"), "body is not valid JSON"),
        (dict(raw=b"[1, 2]"), "body must be a JSON object"),
        (dict(body={}), "field 'uri' is required"),
        (dict(body={"uri": 42}), "field 'uri' is required"),
        (dict(body={"uri": "http://example.org"}), "field 'uri': malformed SIP URI"),
        (dict(body={"uri": "sips:a@b", "colour": 1}), "unknown field(s): colour"),
        (dict(body={"uri": "sips:a@b", "display_name": ""}), "field 'display_name'"),
        (dict(raw=b"{}", content_type="text/plain"), "body must be JSON"),
        (dict(raw=b"{" + b" " * 20000 + b"}"), "body exceeds 16384 bytes"),
    ]
    for kwargs, message in cases:
        status, body, _ = bridge.request("POST", path, key=key, **kwargs)
        assert status == 400, (kwargs, body)
        assert body["error"].startswith(message), (kwargs, body)

    # SIP is disabled in this bridge: a well-formed dial-out is refused clearly
    status, body, _ = bridge.request("POST", path, key=key, body={"uri": "sips:a@b"})
    assert status == 503 and "SIP is disabled" in body["error"]

    status, body, _ = bridge.request("DELETE", "/api/rooms/demo/legs/p-nobody", key=key)
    assert status == 404 and body["error"] == "no leg 'p-nobody' in room 'demo'"
    status, body, _ = bridge.request("GET", path, key=key)
    assert status == 405 and body["error"] == "method GET not allowed here; use POST"
    status, body, _ = bridge.request("GET", "/api/rooms/demo/nothing", key=key)
    assert status == 404

    # the bridge is still well after all that
    assert bridge.request("GET", "/api/health")[0] == 200


def test_join_page_is_self_contained(bridge):
    status, page, headers = bridge.request("GET", "/rooms/demo")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    # every script, style and image comes from the bridge itself
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for asset in re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html):
        assert bridge.request("GET", asset)[0] == 200, asset
    assert bridge.request("GET", "/rooms/Not_A_Room")[0] == 404
    assert bridge.request("GET", "/static/../setup.cfg")[0] == 404


def test_secrets_stay_out_of_the_log_and_sigterm_stops_it(tmp_path):
    config = write_config(tmp_path)
    created = cli(config, "room", "create", "ward-7", stdin="correct horse battery\n")
    assert created.returncode == 0, created.stderr
    key = re.search(r"host key \(shown once, keep it safe\): (\S+)", created.stdout)[1]

    bridge = BridgeProcess(config)
    try:
        assert bridge.request("GET", "/api/rooms/ward-7/roster", key=key)[0] == 200
        assert (
            bridge.request("GET", "/api/rooms/ward-7/roster", key=key + "x")[0] == 401
        )
        assert bridge.terminate() == 0
    finally:
        bridge.close()
    log = bridge.log()
    demo = bridge.demo_secrets()
    assert "stopped" in log
    for secret in (key, demo["host key"], demo["password"], "correct horse battery"):
        assert secret not in log
    database = (tmp_path / "state" / "carebridge.db").read_bytes()
    assert key.encode() not in database
    assert b"correct horse battery" not in database
