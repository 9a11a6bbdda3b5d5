"""TLS material: a self-signed certificate on first start, TLS 1.2+ contexts."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl

logger = logging.getLogger(__name__)

CERT_NAME = "bridge-cert.pem"
KEY_NAME = "bridge-key.pem"
VALID_DAYS = 825

# ECDHE with AEAD ciphers only for TLS 1.2; TLS 1.3 suites are all AEAD
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    generated: bool


def ensure_certificate(
    state_dir: Path, cert: str = "", key: str = "", host: str = "127.0.0.1"
) -> TlsFiles:
    """The configured certificate, or a self-signed one kept in ``state_dir``."""
    if cert and key:
        return TlsFiles(Path(cert), Path(key), generated=False)
    cert_path = state_dir / CERT_NAME
    key_path = state_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return TlsFiles(cert_path, key_path, generated=False)

    cert_pem, key_pem = self_signed(host)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    cert_path.write_bytes(cert_pem)
    logger.warning(
        "generated a self-signed TLS certificate in %s; browsers will warn until "
        "server.tls_cert and server.tls_key point at a certificate they trust",
        cert_path,
    )
    return TlsFiles(cert_path, key_path, generated=True)


def self_signed(host: str, common_name: str = "carebridge") -> tuple[bytes, bytes]:
    """A new P-256 key and a certificate for ``host``, localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1", host}
    for address in sorted(addresses):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def server_context(files: TlsFiles) -> ssl.CertificateOptions:
    """A Twisted context factory: TLS 1.2 or newer, forward-secret AEAD ciphers."""
    with open(files.cert, "rb") as handle:
        cert = ssl.Certificate.loadPEM(handle.read())
    with open(files.key, "rb") as handle:
        key = ssl.KeyPair.load(handle.read(), 1)  # FILETYPE_PEM
    options = ssl.CertificateOptions(
        privateKey=key.original,
        certificate=cert.original,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
    )
    return options


def describe(connection: SSL.Connection) -> tuple[str, str]:
    """The negotiated protocol version and cipher of a live TLS connection."""
    return connection.get_protocol_version_name(), connection.get_cipher_name() or ""
