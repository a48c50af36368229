"""TLS transport with a generated development certificate."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from transport_helpers import Collector, options, run

from opentrunk.sip.message import Request, Response, make_response, parse_message
from opentrunk.sip.transaction import Address
from opentrunk.transport.framing import StreamFramer
from opentrunk.transport.tcp import StreamTransport
from opentrunk.transport.tls import client_context, generate_dev_certificate, server_context


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_dev_certificate(cert_path, key_path, ["localhost", "127.0.0.1", "::1"])
    return cert_path, key_path


def test_generated_certificate(cert: tuple[Path, Path]) -> None:
    cert_path, key_path = cert
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_tls_request_and_response_on_same_connection(
    cert: tuple[Path, Path], use_uvloop: bool
) -> None:
    cert_path, key_path = cert

    async def main() -> None:
        collector = Collector()
        tls = StreamTransport(
            collector,
            name="tls",
            server_ssl=server_context(cert_path, key_path),
            client_ssl=client_context(cert_path),
        )
        await tls.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                tls.local_address.port,
                ssl=client_context(cert_path),
                server_hostname="localhost",
            )
            writer.write(options(transport="TLS", call_id="secure-1"))
            await collector.wait_for(1)
            request, source, _transport = collector.items[0]
            assert isinstance(request, Request) and source.transport == "tls"
            tls.send(make_response(request, 200), source)
            framer = StreamFramer()
            frames: list[bytes] = []
            while not frames:
                frames = framer.feed(await asyncio.wait_for(reader.read(65536), 3))
            response = parse_message(frames[0])
            assert isinstance(response, Response) and response.status == 200
            assert response.call_id == "secure-1"
            writer.close()
        finally:
            await tls.close()

    run(main(), uvloop=use_uvloop)


def test_tls_transport_to_tls_transport_verifies_certificate(cert: tuple[Path, Path]) -> None:
    cert_path, key_path = cert

    async def main() -> None:
        collector = Collector()
        server = StreamTransport(
            collector, name="tls", server_ssl=server_context(cert_path, key_path)
        )
        client = StreamTransport(
            Collector(),
            name="tls",
            server_ssl=server_context(cert_path, key_path),
            client_ssl=client_context(cert_path),
        )
        await server.start("127.0.0.1", 0)
        await client.start("127.0.0.1", 0)
        try:
            # The IP literal is checked against the certificate's IP subjectAltName.
            client.send(options(transport="TLS", call_id="verified"), server.local_address)
            await collector.wait_for(1)
            assert collector.items[0][0].call_id == "verified"
        finally:
            await client.close()
            await server.close()

    run(main())


def test_tls_refuses_untrusted_certificate(cert: tuple[Path, Path], tmp_path: Path) -> None:
    cert_path, key_path = cert
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    generate_dev_certificate(other_cert, other_key, ["127.0.0.1"])

    async def main() -> None:
        collector = Collector()
        failures: list[tuple[Address, Exception]] = []
        server = StreamTransport(
            collector, name="tls", server_ssl=server_context(cert_path, key_path)
        )
        client = StreamTransport(
            Collector(),
            name="tls",
            server_ssl=server_context(other_cert, other_key),
            client_ssl=client_context(other_cert),  # trusts only the other certificate
            on_send_error=lambda dest, exc: failures.append((dest, exc)),
        )
        await server.start("127.0.0.1", 0)
        await client.start("127.0.0.1", 0)
        try:
            client.send(options(transport="TLS"), server.local_address)
            for _ in range(200):
                if failures:
                    break
                await asyncio.sleep(0.01)
            assert failures and isinstance(failures[0][1], ssl.SSLError)
            assert collector.items == []
        finally:
            await client.close()
            await server.close()

    run(main())


def test_plain_tcp_to_tls_port_does_not_crash(cert: tuple[Path, Path]) -> None:
    cert_path, key_path = cert

    async def main() -> None:
        collector = Collector()
        tls = StreamTransport(collector, name="tls", server_ssl=server_context(cert_path, key_path))
        await tls.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", tls.local_address.port)
            writer.write(options(transport="TCP"))
            data = await asyncio.wait_for(reader.read(1000), 3)
            assert b"SIP/2.0" not in data
            writer.close()
            assert collector.items == []
            # Still serving TLS afterwards.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", tls.local_address.port, ssl=client_context(cert_path)
            )
            writer.write(options(transport="TLS"))
            await collector.wait_for(1)
            writer.close()
        finally:
            await tls.close()

    run(main())
