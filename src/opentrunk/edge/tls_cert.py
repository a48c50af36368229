"""Development TLS material for the SIP edge's 5061 listener (`opentrunk tls dev-cert`).

Owns making a self-signed certificate and its private key for a host name or address,
written as PEM files the edge loads through `OPENTRUNK_TLS_CERT` / `OPENTRUNK_TLS_KEY`.
Production deployments use a certificate from a real CA; this pair is for labs, tests
and PBXes told to trust it explicitly.

The key is ECDSA P-256 (every current TLS stack and SIP phone takes it, and it is quick
to make); the certificate names the host in subjectAltName (as a DNS name or an IP
address), which is what clients check (RFC 5922 for SIP, RFC 6125 in general), and is
marked as a CA so that a client can use the file itself as its trust anchor.

`DevCA` is a lab certificate authority: it issues server certificates (not CAs
themselves) for PBX names, so that a client trusting the CA alone must tell one name from
another by the certificate's subjectAltName, as it does with a real CA (RFC 5922).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opentrunk.transport.tls import subject_alt_names

__all__ = ["DevCA", "DevCert", "make_dev_cert", "write_dev_cert"]


@dataclass(frozen=True)
class DevCert:
    """Where `write_dev_cert` put the pair."""

    cert_path: Path
    key_path: Path


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
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
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


def _write_pair(out_dir: str | Path, cert_pem: bytes, key_pem: bytes) -> DevCert:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path = out / "cert.pem"
    key_path = out / "key.pem"
    cert_path.write_bytes(cert_pem)
    # The private key is created unreadable to others from its first byte.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)
    return DevCert(cert_path, key_path)


def write_dev_cert(out_dir: str | Path, hosts: list[str], *, days: int = 365) -> DevCert:
    """Write `cert.pem` and `key.pem` (mode 0600) into `out_dir`, creating it."""
    cert_pem, key_pem = make_dev_cert(hosts, days=days)
    return _write_pair(out_dir, cert_pem, key_pem)


class DevCA:
    """A lab certificate authority (ECDSA P-256, in memory) issuing server certificates."""

    def __init__(self, name: str = "opentrunk lab CA", *, days: int = 365) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.days = days
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, what a client puts in its trust store."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_cert(self, path: str | Path) -> Path:
        """Write the CA certificate (public, no key) to `path`."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.cert_pem)
        return out

    def issue(self, hosts: list[str]) -> tuple[bytes, bytes]:
        """A server certificate for `hosts` (subjectAltName DNS or IP entries) signed by
        this CA, and its key, both PEM: (cert, key). The subject's CN is a label that
        names no host, so only subjectAltName can match (RFC 6125 section 6.4.4)."""
        if not hosts:
            raise ValueError("at least one host name or address is needed")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab server")]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=self.days))
            .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def write_issued(self, out_dir: str | Path, hosts: list[str]) -> DevCert:
        """`issue` for `hosts`, written as `cert.pem` and `key.pem` (0600) in `out_dir`."""
        cert_pem, key_pem = self.issue(hosts)
        return _write_pair(out_dir, cert_pem, key_pem)
