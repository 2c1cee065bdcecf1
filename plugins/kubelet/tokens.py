"""The kubelet's service account token manager: tokens for projected ``serviceAccountToken``
volume sources, requested through TokenRequest bound to the pod, kept until 80 % of their
lifetime (or 24 h) has passed, then requested again so the file in the pod is renewed in time.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

from kybern.client import ApiClient

#: renew once this share of a token's lifetime has gone by (the kubelet's 80 %)
REFRESH_AT = 0.8
#: renew tokens older than this whatever their lifetime (the kubelet's 24 h)
MAX_AGE_S = 24 * 3600


@dataclass
class _Token:
    value: str
    issued: float
    expires: float

    def needs_refresh(self, now: float) -> bool:
        ttl = self.expires - self.issued
        return now >= self.issued + REFRESH_AT * ttl or now - self.issued > MAX_AGE_S


def _parse_time(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")))


class TokenManager:
    """One per node agent process; keyed by everything a token request depends on."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._tokens: dict[tuple[str, str, str, int, str], _Token] = {}

    def __repr__(self) -> str:  # tokens never show
        return f"TokenManager({len(self._tokens)} tokens)"

    async def token(self, pod: dict[str, Any], source: dict[str, Any]) -> str:
        """The token of a ``serviceAccountToken`` projection for ``pod`` (bound to it)."""
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        namespace = meta.get("namespace") or "default"
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        audience = source.get("audience") or ""
        seconds = int(source.get("expirationSeconds") or 3600)
        key = (namespace, account, audience, seconds, meta.get("uid", ""))
        now = time.time()
        held = self._tokens.get(key)
        if held is not None and not held.needs_refresh(now):
            return held.value
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.get("name", ""),
                    "uid": meta.get("uid", ""),
                },
            },
        }
        out = await self._api.create("serviceaccounts", body, namespace, subresource="token", name=account)
        status = out.get("status") or {}
        expires = (
            _parse_time(status["expirationTimestamp"]) if status.get("expirationTimestamp") else now + seconds
        )
        self._tokens[key] = _Token(status.get("token", ""), now, expires)
        return self._tokens[key].value

    def forget(self, uid: str) -> None:
        """Drop the tokens of a pod that is gone."""
        for key in [k for k in self._tokens if k[4] == uid]:
            del self._tokens[key]
