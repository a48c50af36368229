"""Development TLS material for the SIP edge's 5061 listener (`opentrunk tls dev-cert`).

Owns making a self-signed certificate and its private key for a host name or address,
written as PEM files the edge loads through `OPENTRUNK_TLS_CERT` / `OPENTRUNK_TLS_KEY`.
Production deployments use a certificate from a real CA; this pair is for labs, tests
and PBXes told to trust it explicitly.

The key is ECDSA P-256 (every current TLS stack and SIP phone takes it, and it is quick
to make); the certificate names the host in subjectAltName (as a DNS name or an IP
address), which is what clients check (RFC 5922 for SIP, RFC 6125 in general), and is
marked as a CA so that a client can use the file itself as its trust anchor.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCert", "make_dev_cert", "write_dev_cert"]


@dataclass(frozen=True)
class DevCert:
    """Where `write_dev_cert` put the pair."""

    cert_path: Path
    key_path: Path


def _subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_dev_cert(hosts: list[str], *, days: int = 365) -> tuple[bytes, bytes]:
    """A self-signed certificate for `hosts` and its key, both PEM: (cert, key)."""
    if not hosts:
        raise ValueError("at least one host name or address is needed")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little slack for clocks that run behind.
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def write_dev_cert(out_dir: str | Path, hosts: list[str], *, days: int = 365) -> DevCert:
    """Write `cert.pem` and `key.pem` (mode 0600) into `out_dir`, creating it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = make_dev_cert(hosts, days=days)
    cert_path = out / "cert.pem"
    key_path = out / "key.pem"
    cert_path.write_bytes(cert_pem)
    # The private key is created unreadable to others from its first byte.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)
    return DevCert(cert_path, key_path)
