"""Service account tokens: the signing key, the JWTs kube-apiserver issues, and their checks.

A token is an ES256 JWT with kube-apiserver 1.32's claims (``iss``, ``sub``
``system:serviceaccount:NS:NAME``, ``aud``, ``exp``/``iat``/``nbf``, ``jti`` and the private
``kubernetes.io`` claim naming the namespace, the service account and the object the token is
bound to). The key is made once next to the cluster CA so tokens outlive server restarts.
What only the signature cannot tell (the service account or the bound pod still exists with
the same uid) is checked by the caller against the store: see :mod:`satoken_handlers`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kybern.plugins.apiserver.pki import _key_pem, _write_private
from loguru import logger

log = logger.bind(component="apiserver.satokens")

#: kube-apiserver's --service-account-issuer and --api-audiences defaults in most distributions
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES: tuple[str, ...] = (DEFAULT_ISSUER,)
KEY_FILE = "service-account.key"
ALGORITHM = "ES256"
USER_PREFIX = "system:serviceaccount:"
#: TokenRequest bounds (kube's validation)
MIN_EXPIRATION_S = 600
MAX_EXPIRATION_S = 1 << 32
DEFAULT_EXPIRATION_S = 3600
#: a token bound to an object deleted longer ago than this is refused (kube's grace)
DELETION_GRACE_S = 60


@dataclass(frozen=True)
class BoundObject:
    kind: str  # Pod, Secret or Node
    name: str
    uid: str


@dataclass
class TokenIdentity:
    """Who a valid token speaks for, and what the store must still confirm."""

    namespace: str
    name: str
    uid: str
    bound: BoundObject | None = None
    node: dict[str, str] = field(default_factory=dict)
    jti: str = ""

    @property
    def username(self) -> str:
        return f"{USER_PREFIX}{self.namespace}:{self.name}"

    def user_info(self) -> dict[str, Any]:
        """kube's UserInfo for a service account token (``kubectl auth whoami``)."""
        extra: dict[str, list[str]] = {}
        if self.jti:
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={self.jti}"]
        if self.node:
            extra["authentication.kubernetes.io/node-name"] = [self.node.get("name", "")]
            if self.node.get("uid"):
                extra["authentication.kubernetes.io/node-uid"] = [self.node["uid"]]
        if self.bound is not None and self.bound.kind == "Pod":
            extra["authentication.kubernetes.io/pod-name"] = [self.bound.name]
            extra["authentication.kubernetes.io/pod-uid"] = [self.bound.uid]
        info: dict[str, Any] = {
            "username": self.username,
            "uid": self.uid,
            "groups": service_account_groups(self.namespace),
        }
        if extra:
            info["extra"] = extra
        return info


def service_account_groups(namespace: str) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]


def split_username(user: str) -> tuple[str, str] | None:
    """(namespace, name) of a ``system:serviceaccount:NS:NAME`` user, else None."""
    if not user.startswith(USER_PREFIX):
        return None
    namespace, sep, name = user[len(USER_PREFIX) :].partition(":")
    if not sep or not namespace or not name:
        return None
    return namespace, name


def _key_id(key: ec.EllipticCurvePublicKey) -> str:
    """kube's key id: base64url of the SHA-256 of the DER public key (lets verifiers pick a key)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def ensure_signing_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """DATA_DIR/tls/service-account.key, made once (mode 0600) and never replaced: replacing
    it would invalidate every token pods hold."""
    tls = Path(data_dir) / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    path = tls / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: expected an ECDSA key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, _key_pem(key), 0o600)
    log.info("created service account signing key {}", path)
    return key


class TokenSigner:
    """Issues and verifies service account JWTs with one key."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        issuer: str = DEFAULT_ISSUER,
        api_audiences: tuple[str, ...] = DEFAULT_AUDIENCES,
    ) -> None:
        self._key = key
        self._public = key.public_key()
        self.kid = _key_id(self._public)
        self.issuer = issuer
        self.api_audiences = api_audiences

    def __repr__(self) -> str:  # keep the key out of tracebacks
        return f"TokenSigner(issuer={self.issuer!r}, kid={self.kid!r})"

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        audiences: list[str],
        expiration_s: int,
        bound: BoundObject | None = None,
        node: dict[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A signed token and its expiry (unix seconds)."""
        iat = int(now if now is not None else time.time())
        exp = iat + expiration_s
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if bound is not None:
            private[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
        if node:
            private["node"] = dict(node)
        claims = {
            "aud": list(audiences),
            "exp": exp,
            "iat": iat,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": iat,
            "sub": f"{USER_PREFIX}{namespace}:{name}",
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, exp

    def verify(self, token: str) -> TokenIdentity | None:
        """The identity of a token this server signed for its own audiences, or None (bad
        signature, another issuer or audience, expired, malformed)."""
        if token.count(".") != 2:
            return None
        options = {"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]}
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=list(self.api_audiences),
                issuer=self.issuer,
                options=options,  # type: ignore[arg-type]
                leeway=0,
            )
        except jwt.PyJWTError:
            return None
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        sa = private.get("serviceaccount") or {}
        namespace, name, uid = private.get("namespace"), sa.get("name"), sa.get("uid")
        if not all(isinstance(v, str) and v for v in (namespace, name, uid)):
            return None
        if claims["sub"] != f"{USER_PREFIX}{namespace}:{name}":
            return None
        bound = None
        # a pod-bound token also names the pod's node, as information: the pod is what binds it
        for kind in ("Pod", "Secret", "Node"):
            ref = private.get(kind.lower())
            if isinstance(ref, dict) and ref.get("name") and ref.get("uid"):
                bound = BoundObject(kind, str(ref["name"]), str(ref["uid"]))
                break
        node = private.get("node") if isinstance(private.get("node"), dict) else {}
        return TokenIdentity(
            namespace=namespace,
            name=name,
            uid=uid,
            bound=bound,
            node={k: str(v) for k, v in node.items() if k in ("name", "uid")},
            jti=str(claims.get("jti") or ""),
        )


def rfc3339(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
