"""Which local addresses the bridge offers as ICE host candidates.

aioice builds its host candidates from every interface address except
127.0.0.1 (``aioice.ice.get_host_addresses``), and aiortc gives no way to pass
a list of its own. A bridge that serves browsers on the same machine, and every
test here, needs the loopback address; a bridge on a multi-homed server wants
to offer only its public media address. :func:`set_media_addresses` replaces
aioice's lookup, process-wide, with a fixed list; ``None`` restores it.

This is a patch of a module attribute that aioice reads each time it gathers,
so it takes effect for every peer connection created after the call, and it
does not survive an aioice that stops reading it there: tests in
``tests/webrtc`` assert that the answer really carries the configured address.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

import aioice.ice

logger = logging.getLogger(__name__)

_original = aioice.ice.get_host_addresses
_configured: tuple[str, ...] | None = None


def _configured_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _configured is None:
        return _original(use_ipv4, use_ipv6)
    return [
        address
        for address in _configured
        if (use_ipv4 and ipaddress.ip_address(address).version == 4)
        or (use_ipv6 and ipaddress.ip_address(address).version == 6)
    ]


def set_media_addresses(addresses: Sequence[str] | None) -> None:
    """Offer exactly ``addresses`` as host candidates (``None``: aioice's own).

    Raises :class:`ValueError` for a string that is not an IP address.
    """
    global _configured

    if addresses is None:
        _configured = None
        aioice.ice.get_host_addresses = _original
        logger.info("ICE host candidates: every interface but loopback")
        return

    checked = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    if not checked:
        raise ValueError("media address list is empty")
    _configured = checked
    aioice.ice.get_host_addresses = _configured_addresses
    logger.info("ICE host candidates restricted to %s", ", ".join(checked))


def media_addresses() -> tuple[str, ...] | None:
    """The configured list, or ``None`` when aioice chooses."""
    return _configured


def _reachable(address: str) -> bool:
    """Whether a remote candidate address can be reached from ours."""
    if _configured is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # an mDNS name (.local): not resolved here
    ours = [ipaddress.ip_address(a) for a in _configured]
    if all(a.is_loopback for a in ours):
        return ip.is_loopback
    return any(ip.version == a.version for a in ours)


def filter_remote_candidates(sdp: str) -> str:
    """Drop ``a=candidate`` lines we cannot reach from the configured addresses.

    A bridge restricted to loopback cannot reach a browser's interface address
    from a socket bound to 127.0.0.1 (and must not try); the browser also
    offers a loopback candidate when Chromium runs with
    ``--allow-loopback-in-peer-connection``.
    """
    if _configured is None:
        return sdp
    kept = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("a=candidate:") and not candidate_reachable(line[2:]):
            continue
        kept.append(line)
    return "".join(kept)


def candidate_reachable(line: str) -> bool:
    """Whether a ``candidate:...`` line's address is reachable (RFC 8839 5.1)."""
    fields = line.split()
    if len(fields) < 8:
        return False
    return _reachable(fields[4])
