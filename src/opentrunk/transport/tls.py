"""TLS for SIP (RFC 3261 section 26.2, port 5061): SSL contexts and a development certificate.

The TLS transport is the TCP transport (`opentrunk.transport.tcp`) with an `ssl.SSLContext`
on its listener and outgoing connections; this module builds those contexts and generates a
self-signed certificate for development and tests (`generate_dev_certificate`). Production
operators supply their own certificate and key files (settings `tls_cert`, `tls_key`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def generate_dev_certificate(
    path_cert: str | os.PathLike[str],
    path_key: str | os.PathLike[str],
    hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    *,
    days: int = 365,
) -> None:
    """Write a self-signed certificate (PEM) and its private key (PEM, mode 0600).

    `hostnames` become subjectAltName entries (IP literals as IP addresses, the rest as DNS
    names); the first one is also the common name. The key is ECDSA P-256: small and fast.
    """
    if not hostnames:
        raise ValueError("at least one hostname is needed")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opentrunk development"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hostnames)), critical=False)
        # CA:TRUE lets a peer use the file itself as its trust anchor.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = Path(path_key)
    # Create the key file private from the start rather than chmod-ing it afterwards.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)
    Path(path_cert).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def server_context(
    path_cert: str | os.PathLike[str],
    path_key: str | os.PathLike[str],
    *,
    client_ca: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A TLS server context; with `client_ca`, peers must present a certificate it signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.fspath(path_cert), os.fspath(path_key))
    if client_ca is not None:
        context.load_verify_locations(os.fspath(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    cafile: str | os.PathLike[str] | None = None, *, verify: bool = True
) -> ssl.SSLContext:
    """A TLS client context trusting `cafile` (or the system store when None).

    `verify=False` turns off certificate and hostname checks; only for labs and tests.
    """
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=os.fspath(cafile) if cafile is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
