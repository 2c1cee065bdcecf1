"""Bearer-token authentication and the admin kubeconfig.

Two static tokens stand in for kube-apiserver's authenticators: the admin token (full access,
written into the kubeconfig kubectl uses) and the node token (what node agents present; the
server sees it as ``system:node``). Both are made once and kept in the data directory so
clients survive server restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from loguru import logger

log = logger.bind(component="apiserver.auth")

ADMIN_USER = "admin"
NODE_USER = "system:node"


@dataclass
class Tokens:
    admin: str
    node: str

    def __repr__(self) -> str:  # keep tokens out of tracebacks and logs
        return "Tokens(admin=<hidden>, node=<hidden>)"


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ensure_token(path: Path) -> str:
    if path.exists():
        token = path.read_text().strip()
        if token:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return token
    token = secrets.token_urlsafe(32)
    _atomic_write(path, (token + "\n").encode())
    log.info("created token file {}", path)
    return token


def node_secret(token: str) -> str:
    """The secret of a node token: ``K10<CA hash>::node:<secret>`` (k3s' form) or a bare secret."""
    token = token.strip()
    if token.startswith("K10") and "::" in token:
        return token.partition("::")[2].partition(":")[2]
    return token


def ensure_tokens(data_dir: Path) -> Tokens:
    """Read DATA_DIR/token and DATA_DIR/node-token, creating missing ones (mode 0600).

    The node token is kept as ``K10<sha256 of DATA_DIR/tls/ca.crt>::node:<secret>`` once the CA
    exists, so an agent given only the server URL and the token can check the CA it fetches
    from ``/cacerts``; an older bare secret is rewritten in that form and stays valid.
    """
    data_dir = Path(data_dir)
    admin = _ensure_token(data_dir / "token")
    path = data_dir / "node-token"
    node = _ensure_token(path)
    ca = data_dir / "tls" / "ca.crt"
    if ca.exists():
        full = f"K10{hashlib.sha256(ca.read_bytes()).hexdigest()}::node:{node_secret(node)}"
        if full != node:
            _atomic_write(path, (full + "\n").encode())
            node = full
    return Tokens(admin=admin, node=node)


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer X`` header (scheme case-insensitive)."""
    if not authorization_header:
        return None
    scheme, _, value = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def authenticate(authorization_header: str | None, tokens: Tokens) -> str | None:
    """The user a request authenticates as: ``admin``, ``system:node`` or None."""
    token = bearer_token(authorization_header)
    if token is None:
        return None
    given = token.encode()
    # compare against both so timing does not tell which token came close
    is_admin = hmac.compare_digest(given, tokens.admin.encode())
    is_node = hmac.compare_digest(node_secret(token).encode(), node_secret(tokens.node).encode())
    if is_admin:
        return ADMIN_USER
    if is_node:
        return NODE_USER
    return None


def kubeconfig_dict(server_url: str, ca_pem: bytes, token: str, name: str = "kybern") -> dict:
    """The kubeconfig document :func:`write_kubeconfig` writes."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, server_url: str, ca_pem: bytes, token: str, name: str = "kybern") -> None:
    """Write a kubeconfig for ``token`` atomically with mode 0600 (it holds a credential)."""
    doc = kubeconfig_dict(server_url, ca_pem, token, name)
    _atomic_write(Path(path), yaml.safe_dump(doc, sort_keys=False).encode())
    log.info("wrote kubeconfig {} for {}", path, server_url)
