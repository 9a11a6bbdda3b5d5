"""The outbound proxy as the worker hands it to pjsua (no pjsua endpoint)."""

from __future__ import annotations

import pytest

from sip.config import SipConfig
from sip.uri import InvalidSipUri
from sip.worker import Worker


def proxy_uri(proxy: str, lab: bool = False) -> str:
    config = SipConfig(tls_cert="cert.pem", tls_key="key.pem", insecure_lab_mode=lab)
    return Worker(config, output=None)._proxy_uri(proxy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("proxy", "route"),
    [
        ("sip:trunk.example.org", "sip:trunk.example.org;transport=tls;lr"),
        (
            "sip:trunk.example.org:5061;transport=tls",
            "sip:trunk.example.org:5061;transport=tls;lr",
        ),
        # pjsua rates a route as secure by ;transport=tls only, not by sips:
        ("sips:trunk.example.org", "sips:trunk.example.org;transport=tls;lr"),
        ("sips:10.0.0.1:5061;lr", "sips:10.0.0.1:5061;lr;transport=tls"),
    ],
)
def test_the_proxy_route_always_says_tls(proxy: str, route: str) -> None:
    assert proxy_uri(proxy) == route


def test_a_plain_transport_proxy_is_refused() -> None:
    with pytest.raises(InvalidSipUri, match="only TLS is allowed"):
        proxy_uri("sip:trunk.example.org;transport=udp")


def test_lab_mode_keeps_a_plain_proxy() -> None:
    assert proxy_uri("sip:10.0.0.1", lab=True) == "sip:10.0.0.1;lr"
