"""Reads what was negotiated out of a peer's SDP answer (RFC 4566, RFC 4568).

Only what the bridge reports is extracted; the keying material in
``a=crypto`` lines is never returned or logged.
"""

from __future__ import annotations

import re

MAX_SDP_BYTES = 16 * 1024

_CRYPTO = re.compile(r"^a=crypto:(\d{1,9})\s+([A-Za-z0-9_]+)\s", re.ASCII)


def sdp_from_message(message: str) -> str:
    """The body of a SIP message (everything after the first blank line)."""
    for separator in ("\r\n\r\n", "\n\n"):
        head, found, body = message.partition(separator)
        if found:
            return body[:MAX_SDP_BYTES]
    return ""


def audio_crypto_suite(sdp: str) -> str | None:
    """The SRTP crypto suite of the first audio stream, or None without SDES.

    In an answer the peer keeps exactly one ``a=crypto`` line per stream
    (RFC 4568 section 7.1.2), so its suite is the negotiated one.
    """
    in_audio = False
    for raw in sdp[:MAX_SDP_BYTES].splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if in_audio:
                break
            in_audio = line.startswith("m=audio ") and not line.startswith("m=audio 0 ")
            continue
        if in_audio:
            match = _CRYPTO.match(line)
            if match is not None:
                return match.group(2)
    return None
