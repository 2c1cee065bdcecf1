"""The streaming server's serving certificate: self-signed, one per node, kept in DATA_DIR/tls.

Like a kubelet without ``--tls-cert-file``: kube-apiserver does not verify kubelet serving
certificates unless ``--kubelet-certificate-authority`` is set, and neither does kybern's; the
node token (a bearer secret only the API server and the node share) authenticates the caller.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode)
    tmp.chmod(mode)
    tmp.write_bytes(data)
    tmp.replace(path)


def ensure_serving_cert(data_dir: Path, node_name: str, ips: list[str]) -> tuple[Path, Path]:
    """DATA_DIR/tls/kubelet.crt and .key, made once (10 years: nothing checks its chain)."""
    tls = Path(data_dir) / "tls"
    cert_path, key_path = tls / "kubelet.crt", tls / "kubelet.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@kybern-kubelet")])
    sans: list[x509.GeneralName] = [x509.DNSName(node_name), x509.DNSName("localhost")]
    for ip in dict.fromkeys([*ips, "127.0.0.1"]):
        sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
