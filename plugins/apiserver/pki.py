"""The API server's certificates: a cluster CA made once, and a serving certificate it signs.

The CA lives as long as the data directory, so kubeconfigs and node agents keep trusting the
server; the serving certificate is re-issued (same CA) whenever it lacks a host name the server
is reached by or comes close to expiring.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from loguru import logger

log = logger.bind(component="apiserver.pki")

CA_NAME = "kybern-ca"
CA_DAYS = 3650
SERVING_DAYS = 365
#: a serving certificate closer than this to its end is re-issued at start
RENEW_BEFORE = dt.timedelta(days=30)
#: names every serving certificate carries (in-cluster clients use the kubernetes.default forms)
DEFAULT_HOSTS: tuple[str, ...] = (
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path

    def server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.serving_cert, self.serving_key)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """A context trusting only this cluster's CA (for in-process clients and tests)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write atomically so a crash never leaves a half-written key or certificate."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        host = host.strip().strip("[]")
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host.lower()))
    return entries


def issue_client_or_serving_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    hosts: Sequence[str] = (),
    *,
    organizations: Sequence[str] = (),
    client: bool = False,
    serving: bool = True,
    days: int = SERVING_DAYS,
) -> tuple[bytes, bytes]:
    """Sign a new key pair with the CA; returns (certificate PEM, key PEM).

    Node agents will need serving certificates for their own endpoints (logs, exec) and
    client certificates; both come from here.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = []
    if serving:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans = _san_entries(hosts)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _cert_pem(cert), _key_pem(key)


def wanted_hosts(hosts: Sequence[str]) -> list[str]:
    """Every name the serving certificate must carry: the defaults, the host name, ``hosts``."""
    names = list(DEFAULT_HOSTS)
    hostname = socket.gethostname()
    if hostname:
        names.append(hostname)
    names.extend(h.strip().strip("[]") for h in hosts if h and h.strip())
    return list(dict.fromkeys(names))


def _serving_is_current(cert_path: Path, key_path: Path, ca: x509.Certificate, hosts: Sequence[str]) -> bool:
    if not cert_path.exists() or not key_path.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    have |= {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    for entry in _san_entries(hosts):
        value = str(entry.value) if isinstance(entry, x509.IPAddress) else str(entry.value).lower()
        if value not in have:
            return False
    return True


def ensure_pki(data_dir: Path, hosts: Sequence[str] = ()) -> Pki:
    """Create or refresh DATA_DIR/tls/{ca,apiserver}.{crt,key}; the CA is never replaced."""
    tls = Path(data_dir) / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    pki = Pki(
        ca_cert=tls / "ca.crt",
        ca_key=tls / "ca.key",
        serving_cert=tls / "apiserver.crt",
        serving_key=tls / "apiserver.key",
    )
    if pki.ca_cert.exists() and pki.ca_key.exists():
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{pki.ca_key}: expected an ECDSA key")
        ca_key = loaded
    else:
        ca_cert, ca_key = _new_ca()
        _write_private(pki.ca_key, _key_pem(ca_key), 0o600)
        _write_private(pki.ca_cert, _cert_pem(ca_cert), 0o644)
        log.info("created cluster CA {}", pki.ca_cert)
    names = wanted_hosts(hosts)
    if not _serving_is_current(pki.serving_cert, pki.serving_key, ca_cert, names):
        cert_pem, key_pem = issue_client_or_serving_cert(ca_cert, ca_key, "kube-apiserver", names)
        _write_private(pki.serving_key, key_pem, 0o600)
        _write_private(pki.serving_cert, cert_pem, 0o644)
        log.info("issued API server certificate {} for {}", pki.serving_cert, ", ".join(names))
    return pki


def load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key, for issuing further certificates."""
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_key}: expected an ECDSA key")
    return cert, key
