"""TLS for SIP (RFC 3261 section 26.2, port 5061): SSL contexts, the name a TLS peer must
prove, and a development certificate.

The TLS transport is the TCP transport (`opentrunk.transport.tcp`) with an `ssl.SSLContext`
on its listener and outgoing connections; this module builds those contexts and generates a
self-signed certificate for development and tests (`generate_dev_certificate`). Production
operators supply their own certificate and key files (settings `tls_cert`, `tls_key`).

Whom a TLS client checks (RFC 5922 section 7, RFC 6125): a server found from a SIP URI
naming a domain must prove that domain, whatever IP address or SRV target DNS led to; a
server addressed by IP literal must present that address as a subjectAltName IP entry. A
`NamedAddress` is the destination of the first kind: the IP to connect to plus the domain
to send as SNI and verify; a plain `Address` is verified against its IP.

OpenSSL verifies the chain; the transport checks the identity itself after the handshake
(`identity_error`), because OpenSSL's hostname check is not SIP's: RFC 5922 section 7.1
takes a certificate's SIP domains from its `sip:` URI subjectAltNames when it has any
(DNS entries only when it has none, the common name only when it has no subjectAltName
at all), and section 7.2 compares them exactly, with no wildcards. So `client_context`
turns OpenSSL's hostname check off and leaves certificate verification on.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.transaction import Address
from opentrunk.sip.uri import SipURI, parse_uri


class NamedAddress(Address):
    """A TLS destination: the IP address and port to connect to, plus `server_name`, the
    SIP domain the server's certificate must name (and the SNI the client sends).

    Two destinations on one IP:port for different names are different destinations (they
    compare and hash unequal, and never share a connection), so a transport failure of
    one name fails only that name's transactions. `_replace` drops the name (its copy
    falls back to the class default, "": verify against the IP).
    """

    server_name: str = ""

    def __new__(cls, transport: str, host: str, port: int, server_name: str) -> NamedAddress:
        address = super().__new__(cls, transport, host, port)
        address.server_name = server_name
        return address

    def __getnewargs__(self) -> tuple[str, str, int, str]:
        return (self.transport, self.host, self.port, self.server_name)

    def __eq__(self, other: object) -> bool:
        return tuple.__eq__(self, other) is True and server_name_of(other) == self.server_name

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.transport, self.host, self.port, self.server_name))

    def __repr__(self) -> str:
        return (
            f"NamedAddress(transport={self.transport!r}, host={self.host!r}, "
            f"port={self.port}, server_name={self.server_name!r})"
        )


def server_name_of(dest: object) -> str:
    """The name a TLS peer at `dest` must prove; "" when it is to prove its IP address."""
    return dest.server_name if isinstance(dest, NamedAddress) else ""


def sip_domains(peercert: dict[str, Any]) -> tuple[list[str], str]:
    """The SIP domain identities a verified certificate carries, per RFC 5922 section
    7.1, and where they were found ("URI", "DNS" or "CN"):

    1. the host parts of its subjectAltName URIs of scheme `sip` without a user part
       (one with a user part names a user, not a domain);
    2. if it has none, its subjectAltName DNS entries;
    3. if it has no subjectAltName at all, the subject's common name.
    """
    alt_names = peercert.get("subjectAltName", ())
    uris = [domain for kind, value in alt_names if kind == "URI" for domain in _sip_domain(value)]
    if uris:
        return uris, "URI"
    if alt_names:
        return [str(value) for kind, value in alt_names if kind == "DNS"], "DNS"
    subject = peercert.get("subject", ())
    return [str(value) for rdn in subject for key, value in rdn if key == "commonName"], "CN"


def _sip_domain(text: object) -> list[str]:
    """The domain a subjectAltName URI names for SIP: its host when it is a `sip:` URI
    without a user part, else nothing (a `sips:` or other scheme, a user, no URI)."""
    try:
        uri = parse_uri(str(text))
    except SipParseError:
        return []
    if not isinstance(uri, SipURI) or uri.scheme.lower() != "sip" or uri.user is not None:
        return []
    return [uri.host_bare]


def identity_error(peercert: dict[str, Any], server_name: str, host: str) -> str | None:
    """Why a certificate OpenSSL verified does not prove the destination, or None if it
    does: `server_name` (a SIP domain, RFC 5922 section 7) when the destination was
    reached through a name, else the IP address `host` (a subjectAltName IP entry,
    RFC 6125). An empty `peercert` (verification turned off) is never refused."""
    if not peercert:
        return None
    if not server_name:
        try:
            wanted_ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return f"{host!r} is not an IP address to verify"
        for kind, value in peercert.get("subjectAltName", ()):
            if kind == "IP Address" and _same_ip(str(value), wanted_ip):
                return None
        return f"certificate has no subjectAltName IP entry for {host}"
    wanted = _domain(server_name)
    names, found_in = sip_domains(peercert)
    if any(_domain(name) == wanted for name in names):
        return None
    parent = wanted.partition(".")[2]
    if any(name[:2] == "*." and _domain(name[2:]) == parent for name in names):
        return f"certificate names {server_name!r} only through a wildcard (RFC 5922 7.2)"
    listed = ", ".join(names) or "nothing"
    return f"certificate does not name {server_name!r} (its SIP domains, from {found_in}: {listed})"


def _domain(name: str) -> str:
    return name.rstrip(".").lower()


def _same_ip(text: str, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text.strip()) == wanted
    except ValueError:
        return False


def subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    """subjectAltName entries naming `hostnames`: IP entries for addresses (an IPv6 one
    may be in brackets, as in a URI), URI entries for `sip:` URIs (RFC 5922 section
    7.1), DNS entries for names."""
    names: list[x509.GeneralName] = []
    for host in hostnames:
        if host[:4].lower() == "sip:":
            names.append(x509.UniformResourceIdentifier(host))
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
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
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hostnames)), critical=False)
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
    """A TLS client context trusting `cafile` (or the system store when None; OpenSSL
    honours SSL_CERT_FILE / SSL_CERT_DIR there). It verifies the peer's certificate
    chain; whom the certificate names is the transport's check (`identity_error`, see
    the module docstring), so OpenSSL's hostname check is off.

    `verify=False` turns off certificate and identity checks; only for labs and tests.
    """
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=os.fspath(cafile) if cafile is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    return context
