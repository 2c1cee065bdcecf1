"""Registry credentials for image pulls, from the pod's imagePullSecrets.

Secrets of type ``kubernetes.io/dockerconfigjson`` (``{"auths": {KEY: ENTRY}}`` under
``.dockerconfigjson``) and the legacy ``kubernetes.io/dockercfg`` (``{KEY: ENTRY}`` under
``.dockercfg``) are read; an ENTRY has ``username``/``password`` or ``auth`` (base64 of
``user:password``). A KEY is matched against the image the way the kubelet's keyring does it:
same host (a ``*`` label matches one label), same port, and its path a prefix of the image's
repository; longer keys are tried first, since they are more specific.

The secrets named by ``spec.imagePullSecrets`` come first, then those of the pod's
ServiceAccount: Kubernetes copies the latter into the pod at admission, kybern has no such
admission step, so the kubelet reads them when it pulls.

Credentials are values the caller passes to the runtime; nothing here logs them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from kybern.client import ApiError
from loguru import logger

log = logger.bind(component="kubelet")

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


class SecretSource(Protocol):
    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Credential:
    """One registry login; ``key`` is the config entry it came from (for messages)."""

    key: str
    username: str
    password: str

    def auth_config(self, registry: str) -> dict[str, str]:
        """What Podman's pull takes (X-Registry-Auth)."""
        return {"username": self.username, "password": self.password, "serveraddress": registry}

    def __repr__(self) -> str:  # never show the password
        return f"Credential(key={self.key!r}, username={self.username!r})"


def split_image(image: str) -> tuple[str, str]:
    """(registry host[:port], repository path) of an image reference, Docker's normalisation:
    the first part is a host only when it has a dot or a colon or is ``localhost``."""
    name = image.split("@", 1)[0]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name if "/" in name else f"library/{name}"
    last = path.rsplit("/", 1)
    if ":" in last[-1]:  # drop the tag
        path = path[: len(path) - len(last[-1])] + last[-1].split(":", 1)[0]
    host = DOCKER_HUB if host in _HUB_ALIASES else host
    return host.lower(), path


def _parse_key(key: str) -> tuple[str, str, str]:
    """(host without port, port, path) of a config key such as ``https://host:5000/v1/``."""
    text = key.strip()
    if "://" not in text:
        text = "//" + text
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    port = str(parts.port or "") if parts.netloc else ""
    path = parts.path.strip("/")
    if path in ("v1", "v2"):  # the Docker Hub style ".../v1/" suffix is no repository path
        path = ""
    if host in _HUB_ALIASES:
        host = DOCKER_HUB
    return host, port, path


def _host_matches(pattern: str, host: str) -> bool:
    want, have = pattern.split("."), host.split(".")
    if len(want) != len(have):
        return False
    return all(w == "*" or w == h for w, h in zip(want, have, strict=True))


def key_matches(key: str, image: str) -> bool:
    registry, repo = split_image(image)
    host, _, port = registry.partition(":")
    key_host, key_port, key_path = _parse_key(key)
    if not key_host or not _host_matches(key_host, host) or key_port != port:
        return False
    return not key_path or repo == key_path or repo.startswith(key_path + "/")


def _decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return b""


def credentials_of(secret: dict[str, Any]) -> list[Credential]:
    """The entries of one docker config secret (other types and broken data: none)."""
    kind = secret.get("type")
    data = secret.get("data") or {}
    try:
        if kind == "kubernetes.io/dockerconfigjson":
            auths = json.loads(_decode(data.get(".dockerconfigjson", ""))).get("auths") or {}
        elif kind == "kubernetes.io/dockercfg":
            auths = json.loads(_decode(data.get(".dockercfg", "")))
        else:
            return []
    except (ValueError, AttributeError):
        return []
    out: list[Credential] = []
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if not isinstance(entry, dict):
            continue
        username, password = entry.get("username") or "", entry.get("password") or ""
        if not username and entry.get("auth"):
            username, _, password = _decode(entry["auth"]).decode(errors="replace").partition(":")
        if username:
            out.append(Credential(str(key), str(username), str(password)))
    return out


def matching(credentials: list[Credential], image: str) -> list[Credential]:
    """The credentials for ``image``, most specific key first, duplicates dropped."""
    found = [c for c in credentials if key_matches(c.key, image)]
    found.sort(key=lambda c: len(_parse_key(c.key)[2]), reverse=True)
    unique: list[Credential] = []
    for cred in found:
        if all((u.username, u.password) != (cred.username, cred.password) for u in unique):
            unique.append(cred)
    return unique


async def pod_credentials(
    source: SecretSource, pod: dict[str, Any], image: str, missing: list[str] | None = None
) -> list[Credential]:
    """Credentials to try for ``image``: the pod's imagePullSecrets, then its ServiceAccount's.
    A secret that is missing or cannot be read is skipped (its name goes to ``missing``), as
    the kubelet does: the pull then may fail unauthorised, and is retried with back-off."""
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"

    async def read(resource: str, name: str) -> dict[str, Any] | None:
        try:
            return await source.get(resource, namespace, name)
        except ApiError as exc:
            log.warning("cannot read {} {}/{} for an image pull: {}", resource, namespace, name, exc)
            return None

    names = [r.get("name") for r in spec.get("imagePullSecrets") or [] if r.get("name")]
    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if account:
        sa = await read("serviceaccounts", account)
        names += [r.get("name") for r in (sa or {}).get("imagePullSecrets") or [] if r.get("name")]
    credentials: list[Credential] = []
    for name in dict.fromkeys(names):
        secret = await read("secrets", name)
        if secret is None:
            log.debug("imagePullSecret {}/{} not found; skipped", namespace, name)
            if missing is not None:
                missing.append(name)
            continue
        credentials += credentials_of(secret)
    return matching(credentials, image)
