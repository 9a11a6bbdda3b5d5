import pytest

from sip.config import SipConfig, SipConfigError
from sip.events import CallEvent, EventError
from sip.uri import InvalidSipUri, check_sip_uri, secure_target


def test_config_hides_password_and_round_trips() -> None:
    config = SipConfig(tls_cert="c", tls_key="k", username="u", password="hunter2")
    assert "hunter2" not in repr(config)
    assert SipConfig.from_wire(config.to_wire()) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"calls_per_worker": 5}, "calls_per_worker must be between 1 and 4, not 5"),
        ({"calls_per_worker": 0}, "calls_per_worker must be between 1 and 4, not 0"),
        ({"max_workers": 0}, "max_workers must be at least 1, not 0"),
        ({"no_answer_timeout": 0}, "no_answer_timeout must be positive, not 0"),
        ({"password": "x"}, "password given without username"),
    ],
)
def test_config_limits(kwargs: dict, message: str) -> None:
    with pytest.raises(SipConfigError, match=f"^{message}$"):
        SipConfig(tls_cert="c", tls_key="k", **kwargs)
    assert issubclass(SipConfigError, ValueError)


def test_config_from_wire_refuses_unknown_keys() -> None:
    with pytest.raises(SipConfigError, match="^unknown SIP config keys: evil$"):
        SipConfig.from_wire({"tls_cert": "c", "tls_key": "k", "evil": 1})


def test_events() -> None:
    event = CallEvent("answered", status=200, codec="G722", srtp_suite="X")
    assert CallEvent.from_wire(event.to_wire()) == event
    assert not event.terminal and CallEvent("dropped").terminal
    with pytest.raises(EventError, match="^unknown call event kind 'boom'$"):
        CallEvent("boom")
    with pytest.raises(EventError, match="^dtmf event with bad digit 'x'$"):
        CallEvent("dtmf", digit="x")
    with pytest.raises(EventError, match="^call event has unknown fields$"):
        CallEvent.from_wire({"kind": "ended", "pin": "1234"})


@pytest.mark.parametrize(
    "uri",
    [
        "sip:alice@example.org",
        "sips:alice@example.org:5061",
        "sip:+4930123456@trunk.example.org;user=phone",
        "sip:phone@127.0.0.1:5061;transport=tls",
        "sip:[2001:db8::1]:5061",
    ],
)
def test_good_uris(uri: str) -> None:
    assert check_sip_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("tel:+4930123", "malformed SIP URI 'tel:+4930123'"),
        ("sip:bad uri@x", "malformed SIP URI 'sip:bad uri@x'"),
        ("sip:a@b\r\nVia: x", "malformed SIP URI 'sip:a@b\\r\\nVia: x'"),
        ("<sip:a@b>", "malformed SIP URI '<sip:a@b>'"),
        ("sip:a@b:70000", "SIP URI port 70000 is out of range"),
        ("sip:" + "a" * 300, "SIP URI of 304 characters exceeds the 256-character cap"),
    ],
)
def test_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(
        InvalidSipUri,
        match="^{}$".format(
            message.replace("\\", "\\\\")
            .replace("(", "\\(")
            .replace(")", "\\)")
            .replace("+", "\\+")
        ),
    ):
        check_sip_uri(uri)


def test_secure_target() -> None:
    assert secure_target("sip:a@b") == "sip:a@b;transport=tls"
    assert secure_target("sips:a@b") == "sips:a@b"
    assert secure_target("sip:a@b;transport=TLS") == "sip:a@b;transport=TLS"
    with pytest.raises(InvalidSipUri, match="^SIP URI asks for transport udp; only"):
        secure_target("sip:a@b;transport=udp")
