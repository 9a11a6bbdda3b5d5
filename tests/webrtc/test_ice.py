"""Host candidate selection and remote candidate filtering."""

from __future__ import annotations

import aioice.ice
import pytest

from webrtc import ice

OFFER = (
    "v=0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n"
    "a=candidate:2 1 udp 2122194687 192.0.2.2 50001 typ host generation 0\r\n"
    "a=candidate:3 1 udp 2122194687 4f1d.local 50002 typ host generation 0\r\n"
    "a=mid:0\r\n"
)


def test_configured_addresses_replace_aioice_lookup() -> None:
    # the autouse fixture configured loopback
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == []
    ice.set_media_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
        "127.0.0.1",
        "::1",
    ]
    ice.set_media_addresses(None)
    assert ice.media_addresses() is None
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(
        use_ipv4=True, use_ipv6=False
    )


def test_bad_addresses_refused() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        ice.set_media_addresses(["localhost"])
    with pytest.raises(ValueError, match="^media address list is empty$"):
        ice.set_media_addresses([])
    assert ice.media_addresses() == ("127.0.0.1",)


def test_loopback_bridge_keeps_only_loopback_candidates() -> None:
    filtered = ice.filter_remote_candidates(OFFER)
    assert "127.0.0.1 50000" in filtered
    assert "192.0.2.2" not in filtered
    assert ".local" not in filtered
    assert filtered.endswith("a=mid:0\r\n")
    assert ice.candidate_reachable("candidate:1 1 udp 1 127.0.0.1 5 typ host")
    assert not ice.candidate_reachable("candidate:1 1 udp 1 192.0.2.2 5 typ host")
    assert not ice.candidate_reachable("candidate:garbage")


def test_unrestricted_bridge_keeps_everything() -> None:
    ice.set_media_addresses(None)
    assert ice.filter_remote_candidates(OFFER) == OFFER
