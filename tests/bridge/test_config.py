"""Configuration: the annotated default file, and refusals that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge import config
from tests.bridge.harness import ROOT, BridgeProcess, cli

DEFAULTS = ROOT / "conf" / "carebridge.toml"


def test_annotated_default_file_is_the_embedded_default():
    loaded = config.load(DEFAULTS)
    assert dataclasses.replace(loaded, source="embedded defaults") == config.Config()
    assert loaded.server.host == "127.0.0.1"
    assert loaded.recording.enabled is False
    assert loaded.sip.insecure_lab_mode is False


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[server]\nport = 'https'",
            "config key 'server.port': must be an integer, got 'https'",
        ),
        (
            "[server]\nport = 70000",
            "config key 'server.port': must be between 0 and 65535, got 70000",
        ),
        (
            "[server]\nhost = 'example'",
            "config key 'server.host': must be an IP address, got 'example'",
        ),
        ("[server]\ncolour = 1", "unknown config key 'server.colour'"),
        ("[servers]\nport = 1", "unknown config section 'servers'"),
        (
            "[media]\nframe_ms = 25",
            "config key 'media.frame_ms': must be one of 10, 20, got 25",
        ),
        (
            "[media]\njitter_ms = 100\nmax_jitter_ms = 50",
            "config key 'media.max_jitter_ms': must not be below",
        ),
        (
            "[sip]\ncalls_per_worker = 5",
            "config key 'sip.calls_per_worker': must be between 1 and 4, got 5",
        ),
        (
            "[sip]\nproxy = 'sip:trunk.example.org'",
            "config key 'sip.proxy': must be a sips: URI",
        ),
        (
            "[sip]\npassword = 'hunter22'",
            "config key 'sip.password': set 'sip.username' as well",
        ),
        (
            "[sip]\npassword = 7",
            "config key 'sip.password': must be a string, got (hidden)",
        ),
        (
            "[server]\ntls_cert = '/nonexistent.pem'",
            "config key 'server.tls_cert': file '/nonexistent.pem' does not exist",
        ),
        (
            "[recording]\nenabled = 'yes'",
            "config key 'recording.enabled': must be true or false, got 'yes'",
        ),
        (
            "[[room]]\nname = 'Ward 7'",
            "config key 'room[0].name': must be 1 to 63 lowercase",
        ),
        (
            "[[room]]\nname = 'a'\n[[room]]\nname = 'a'",
            "config key 'room[1].name': room 'a' is declared twice",
        ),
        ("[server\nport = 1", "is not valid TOML"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(text, message):
    with pytest.raises(config.ConfigError) as error:
        config.parse(text, "test.toml")
    assert message in str(error.value)


def test_secret_values_are_not_echoed():
    with pytest.raises(config.ConfigError) as error:
        config.parse("[sip]\npassword = ['s3cret-value']")
    assert "s3cret-value" not in str(error.value)


def test_serve_refuses_a_bad_config_at_start(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[media]\nmax_mixed = 0\n")
    result = cli(bad, "serve")
    assert result.returncode == 2
    assert (
        "config key 'media.max_mixed': must be between 1 and 64, got 0" in result.stderr
    )
    missing = cli(tmp_path / "absent.toml", "serve")
    assert missing.returncode == 2
    assert "cannot read config file" in missing.stderr


def test_declared_rooms_are_created(tmp_path: Path):
    from bridge.rooms import hash_host_key

    digest = hash_host_key("declared-key")
    path = tmp_path / "c.toml"
    path.write_text(
        f"[server]\nport = 0\nstate_dir = '{tmp_path / 'state'}'\n"
        "[sip]\nenabled = false\n"
        f"[[room]]\nname = 'ward-7'\nhost_key_sha256 = '{digest}'\n"
    )
    listed = cli(path, "room", "list", "--json")
    assert listed.returncode == 0
    assert listed.stdout.strip() == "[]"  # declared rooms appear when the bridge starts

    bridge = BridgeProcess(path)
    try:
        status, body, _ = bridge.request(
            "GET", "/api/rooms/ward-7/roster", key="declared-key"
        )
        assert status == 200 and body["room"] == "ward-7"
    finally:
        bridge.close()
    listed = cli(path, "room", "list", "--json")
    assert '"source": "config"' in listed.stdout
