"""Agent join with CA trust, k3s style.

A node token ``K10<sha256 hex of the CA PEM>::node:<secret>`` lets an agent that knows nothing
but the server URL trust it: fetch ``/cacerts`` without verification, check its hash against
the token, keep it under DATA_DIR/tls/server-ca.crt (core's API client factory reads it from
there). A bare secret (older tokens) skips the check; then ``--server-ca`` is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import aiohttp
from kybern.components import ConfigurationError
from loguru import logger

log = logger.bind(component="kubelet-streams")

#: relative to the agent's data dir; core/runner.py's api_factory uses the same path
SERVER_CA = Path("tls") / "server-ca.crt"


def split_token(token: str) -> tuple[str | None, str]:
    """(CA hash or None, secret) of a node token in either form."""
    token = token.strip()
    if token.startswith("K10") and "::" in token:
        head, _, rest = token.partition("::")
        _, _, secret = rest.partition(":")
        return head[3:].lower(), secret
    return None, token


async def fetch_server_ca(server_url: str, token: str, data_dir: Path) -> Path | None:
    """The verified CA file of the server, or None when the token carries no hash."""
    want, _ = split_token(token)
    if not want:
        return None
    url = server_url.rstrip("/") + "/cacerts"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            session.get(url, ssl=False) as resp,
        ):
            if resp.status != 200:
                raise ConfigurationError(f"cannot fetch the server's CA from {url}: HTTP {resp.status}")
            pem = await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot reach the server at {server_url}: {exc}") from None
    got = hashlib.sha256(pem).hexdigest()
    if not hmac.compare_digest(got, want):
        raise ConfigurationError(
            f"the CA certificate of {server_url} does not match the hash in the join token "
            "(wrong server or wrong token)"
        )
    path = Path(data_dir) / SERVER_CA
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)
    log.info("trusting the server's CA (hash from the join token) in {}", path)
    return path
