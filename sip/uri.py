"""Checks and normalises the SIP URIs the bridge dials (RFC 3261 section 19.1)."""

from __future__ import annotations

import re

MAX_URI_LENGTH = 256

# userinfo and params are kept to the unreserved/escaped characters plus the
# few separators RFC 3261 allows; no spaces, quotes, angle brackets or CR/LF.
_URI = re.compile(
    r"""
    (?P<scheme>sips?):
    (?:(?P<user>[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+)@)?
    (?P<host>
        [A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*
      | \[[0-9A-Fa-f:.]+\]
    )
    (?::(?P<port>[0-9]{1,5}))?
    (?P<params>(?:;[A-Za-z0-9\-_.!~*'()%]+(?:=[A-Za-z0-9\-_.!~*'()%\[\]:]+)?)*)
    """,
    re.VERBOSE,
)


class InvalidSipUri(ValueError):
    """A dial target is not a SIP URI this bridge accepts."""


def check_sip_uri(uri: str) -> str:
    """Return ``uri`` if it is a plain ``sip:``/``sips:`` URI, else raise."""
    if not isinstance(uri, str):
        raise InvalidSipUri("SIP URI must be a string")
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidSipUri(
            f"SIP URI of {len(uri)} characters exceeds the "
            f"{MAX_URI_LENGTH}-character cap"
        )
    match = _URI.fullmatch(uri)
    if match is None:
        raise InvalidSipUri(f"malformed SIP URI {uri!r}")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidSipUri(f"SIP URI port {port} is out of range")
    return uri


def secure_target(uri: str) -> str:
    """Make a checked URI go over TLS: ``sip:`` gains ``;transport=tls``.

    ``sips:`` already means TLS on every hop.  An explicit other transport
    is refused rather than silently rewritten.
    """
    match = _URI.fullmatch(check_sip_uri(uri))
    if match is None or match.group("scheme") == "sips":
        return uri
    params = match.group("params").lower()
    found = re.search(r";transport=([a-z0-9]+)", params)
    if found is None:
        return uri + ";transport=tls"
    if found.group(1) != "tls":
        raise InvalidSipUri(
            f"SIP URI asks for transport {found.group(1)}; only TLS is allowed"
        )
    return uri
