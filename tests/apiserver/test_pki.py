"""The cluster CA and serving certificate: real TLS handshakes with the generated files."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from kybern.plugins.apiserver import pki as pki_mod
from kybern.plugins.apiserver.pki import ensure_pki, issue_client_or_serving_cert, load_ca


def _sans(path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
        set(san.get_values_for_type(x509.DNSName)),
    )


def test_files_modes_and_sans(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["10.1.2.3", "api.example.test"])
    assert pki.ca_cert.parent == tmp_path / "tls"
    for key in (pki.ca_key, pki.serving_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ips, names = _sans(pki.serving_cert)
    assert {"127.0.0.1", "::1", "10.1.2.3"} <= ips
    assert {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "api.example.test",
        socket.gethostname().lower(),
    } <= names
    ca = x509.load_pem_x509_certificate(pki.ca_pem())
    assert ca.subject.rfc4514_string() == "CN=kybern-ca"
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > dt.timedelta(days=3640)
    x509.load_pem_x509_certificate(pki.serving_cert.read_bytes()).verify_directly_issued_by(ca)


def test_ca_kept_and_serving_reissued_for_new_host(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, [])
    ca_before = first.ca_pem()
    serving_before = first.serving_cert.read_bytes()
    again = ensure_pki(tmp_path, [])
    assert again.ca_pem() == ca_before
    assert again.serving_cert.read_bytes() == serving_before
    third = ensure_pki(tmp_path, ["192.0.2.7"])
    assert third.ca_pem() == ca_before
    assert third.serving_cert.read_bytes() != serving_before
    assert "192.0.2.7" in _sans(third.serving_cert)[0]


def test_serving_reissued_when_close_to_expiry(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, [])
    ca_cert, ca_key = load_ca(pki)
    cert_pem, key_pem = issue_client_or_serving_cert(
        ca_cert, ca_key, "kube-apiserver", pki_mod.wanted_hosts([]), days=10
    )
    pki.serving_cert.write_bytes(cert_pem)
    pki.serving_key.write_bytes(key_pem)
    ensure_pki(tmp_path, [])
    cert = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> bytes:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readline()
        writer.write(b"echo " + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
        )
        writer.write(b"hello\n")
        await writer.drain()
        answer = await reader.readline()
        writer.close()
        return answer
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "kubernetes.default.svc"])
def test_tls_handshake_verifies(tmp_path: Path, name: str) -> None:
    pki = ensure_pki(tmp_path, [])
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert asyncio.run(_handshake(pki.server_ssl_context(), client, name)) == b"echo hello\n"


def test_tls_rejects_unknown_name_and_foreign_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "a", [])
    other = ensure_pki(tmp_path / "b", [])
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_handshake(pki.server_ssl_context(), client, "not-in-the-cert.example"))
    foreign = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_handshake(pki.server_ssl_context(), foreign, "localhost"))


def test_tls_refuses_tls11(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, [])
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    client.minimum_version = ssl.TLSVersion.TLSv1_1
    try:
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    except ValueError:
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        asyncio.run(_handshake(pki.server_ssl_context(), client, "localhost"))


def test_issue_client_cert(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, [])
    ca_cert, ca_key = load_ca(pki)
    cert_pem, _ = issue_client_or_serving_cert(
        ca_cert, ca_key, "system:node:n1", ["10.0.0.5"], organizations=["system:nodes"], client=True
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    assert "O=system:nodes" in cert.subject.rfc4514_string()
    assert ipaddress.ip_address("10.0.0.5") in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.IPAddress)
