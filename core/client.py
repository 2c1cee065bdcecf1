"""The API client interface components use to talk to the API server.

Components write through the API like any client (kube-controller-manager does the same), so
they work unchanged whether the API server runs in the same process or on another machine.
Resources are named like kubectl does: ``pods``, ``deployments.apps``, ``leases.coordination.k8s.io``.
Objects travel as plain dicts in the wire format; convert to a model with
``msgspec.convert(obj, kybern.models.X)`` where typed access helps.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

import aiohttp
import msgspec
import yaml

PatchType = Literal["json", "merge", "strategic", "apply"]


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the Kubernetes Status object the server sent."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.code: int = int(status.get("code") or 0)
        self.reason: str = status.get("reason") or ""
        super().__init__(f"{self.code} {self.reason}: {status.get('message', '')}")

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
    object: dict[str, Any]


class ApiClient(Protocol):
    async def get(
        self, resource: str, name: str, namespace: str | None = None, subresource: str | None = None
    ) -> dict[str, Any]: ...

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The whole list (pages followed); ``metadata.resourceVersion`` is the list's RV."""
        ...

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``; ends when the server closes the stream."""
        ...

    async def create(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]: ...

    async def update(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]: ...

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        patch_type: PatchType = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]: ...

    async def delete(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...

    async def close(self) -> None: ...


# --- the HTTP implementation -----------------------------------------------------------------

#: msgspec's JSON codec: several times faster than the json module on every request and event
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_VERSION_SEGMENT = re.compile(r"^v\d+(?:(?:alpha|beta)\d+)?$")

#: the reason kube-apiserver gives each status code (apimachinery's StatusReason values); the
#: API server words its Status objects with it and the client fills it into error bodies that
#: are not a Status
STATUS_REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


def split_resource(resource: str) -> tuple[str, str, str]:
    """``pods`` -> ("", "v1", "pods"); ``deployments.apps`` -> ("apps", "v1", "deployments");
    ``deployments.v1.apps`` -> ("apps", "v1", "deployments"); ``leases.coordination.k8s.io``
    -> ("coordination.k8s.io", "v1", "leases"); ``pods.v1beta1.metrics.k8s.io`` picks v1beta1.
    """
    plural, _, rest = resource.partition(".")
    if not rest:
        return "", "v1", plural
    first, _, after = rest.partition(".")
    if _VERSION_SEGMENT.match(first):
        return after, first, plural
    return rest, "v1", plural


def resource_path(
    resource: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    """The URL path of a collection, an object or a subresource."""
    group, version, plural = split_resource(resource)
    parts = [f"/api/{version}" if not group else f"/apis/{group}/{version}"]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


def status_from_response(code: int, body: bytes, content_type: str | None = None) -> dict[str, Any]:
    """The server's Status object, or one made up around a non-Status error body."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        parsed.setdefault("code", code)
        return parsed
    text = body.decode("utf-8", "replace").strip() if body else ""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": text or f"the server responded with HTTP {code}",
        "reason": STATUS_REASONS.get(code, "Unknown"),
        "code": code,
    }


class HttpApiClient:
    """:class:`ApiClient` over HTTP(S) with one aiohttp session per client.

    Resources are addressed as kubectl names them (``pods``, ``deployments.apps``,
    ``deployments.v1.apps``); the URL follows from the name alone (core group under /api,
    version v1 unless named), so no discovery round trip is needed.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        ca_file: str | Path | None = None,
        *,
        user_agent: str = "kybern",
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float = 60.0,
        unix_socket: str | Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: the API server's local Unix socket (plain HTTP, same auth): components in the server's
        #: process skip TCP and TLS, which cost more than the request itself
        self._unix_socket = str(unix_socket) if unix_socket else None
        self._base = "http://localhost" if self._unix_socket else self.url
        self._token = token
        self._user_agent = user_agent
        if ssl_context is None and ca_file is not None:
            ssl_context = ssl.create_default_context(cafile=str(ca_file))
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=30)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the token
        return f"HttpApiClient({self.url!r})"

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path, context: str | None = None, *, user_agent: str = "kybern"
    ) -> HttpApiClient:
        """A client for a kubeconfig's (current) context: server, CA and bearer token."""
        path = Path(path)
        doc = yaml.safe_load(path.read_text()) or {}
        ctx_name = context or doc.get("current-context")
        contexts = {c["name"]: c.get("context") or {} for c in doc.get("contexts") or []}
        if ctx_name not in contexts:
            raise ValueError(f"{path}: context {ctx_name!r} not found")
        ctx = contexts[ctx_name]
        clusters = {c["name"]: c.get("cluster") or {} for c in doc.get("clusters") or []}
        users = {u["name"]: u.get("user") or {} for u in doc.get("users") or []}
        cluster = clusters.get(ctx.get("cluster"), {})
        user = users.get(ctx.get("user"), {})
        server = cluster.get("server")
        if not server:
            raise ValueError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
        ssl_context: ssl.SSLContext | None = None
        if cluster.get("certificate-authority-data"):
            cadata = base64.b64decode(cluster["certificate-authority-data"]).decode("ascii")
            ssl_context = ssl.create_default_context(cadata=cadata)
        elif cluster.get("certificate-authority"):
            ca_path = Path(cluster["certificate-authority"])
            if not ca_path.is_absolute():
                ca_path = path.parent / ca_path
            ssl_context = ssl.create_default_context(cafile=str(ca_path))
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context = ssl.create_default_context()
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(server, token, user_agent=user_agent, ssl_context=ssl_context)

    # --- plumbing -----------------------------------------------------------------------------

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self._unix_socket)
                if self._unix_socket
                else aiohttp.TCPConnector(ssl=self._ssl)
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes | str) else _encode(body)
        session = self._get_session()
        async with session.request(
            method,
            self._base + path,
            params=params,
            data=data,
            headers=self._headers(content_type if data is not None else None),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise ApiError(status_from_response(resp.status, raw, resp.content_type))
            if not raw:
                return {}
            try:
                return _decode(raw)  # type: ignore[no-any-return]
            except ValueError:
                raise ApiError(
                    status_from_response(500, b"the server sent a non-JSON answer: " + raw[:200])
                ) from None

    @staticmethod
    def _params(**values: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            out[key] = str(value)
        return out

    # --- the ApiClient protocol ---------------------------------------------------------------

    async def get(
        self, resource: str, name: str, namespace: str | None = None, subresource: str | None = None
    ) -> dict[str, Any]:
        return await self._request("GET", resource_path(resource, namespace, name, subresource))

    async def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        path = resource_path(resource, namespace)
        params = self._params(
            labelSelector=label_selector or None,
            fieldSelector=field_selector or None,
            resourceVersion=resource_version,
            limit=limit,
        )
        first = await self._request("GET", path, params=params)
        items = list(first.get("items") or [])
        meta = first.setdefault("metadata", {})
        token = meta.get("continue")
        while token:
            page = await self._request(
                "GET",
                path,
                params={**{k: v for k, v in params.items() if k != "resourceVersion"}, "continue": token},
            )
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
        meta.pop("continue", None)
        meta.pop("remainingItemCount", None)
        first["items"] = items
        return first

    async def watch(
        self,
        resource: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        params = self._params(
            watch=True,
            resourceVersion=resource_version,
            labelSelector=label_selector or None,
            fieldSelector=field_selector or None,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks=allow_bookmarks or None,
        )
        session = self._get_session()
        # a watch lives as long as the server keeps it: no total timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        async with session.get(
            self._base + resource_path(resource, namespace),
            params=params,
            headers=self._headers(),
            timeout=timeout,
        ) as resp:
            if resp.status >= 400:
                raise ApiError(status_from_response(resp.status, await resp.read(), resp.content_type))
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while True:
                    line, sep, rest = buffer.partition(b"\n")
                    if not sep:
                        break
                    buffer = rest
                    if line.strip():
                        yield _watch_event(line)
            if buffer.strip():
                yield _watch_event(buffer)

    async def create(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        namespace = namespace or meta.get("namespace")
        if subresource:
            name = name or meta.get("name")
            if not name:
                raise ValueError("creating a subresource needs the parent's name")
            path = resource_path(resource, namespace, name, subresource)
        else:
            path = resource_path(resource, namespace)
        return await self._request("POST", path, body=obj)

    async def update(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ValueError("update needs metadata.name")
        path = resource_path(resource, namespace or meta.get("namespace"), name, subresource)
        return await self._request("PUT", path, body=obj)

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        patch_type: PatchType = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        if patch_type not in _PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}")
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field manager")
        params = self._params(fieldManager=field_manager)
        return await self._request(
            "PATCH",
            resource_path(resource, namespace, name, subresource),
            params=params or None,
            body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def delete(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        return await self._request("DELETE", resource_path(resource, namespace, name), body=options)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> HttpApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _watch_event(line: bytes) -> WatchEvent:
    try:
        event = _decode(line)
    except ValueError:
        status = status_from_response(500, b"malformed watch event: " + line[:200])
        return WatchEvent("ERROR", status)
    return WatchEvent(event.get("type", "ERROR"), event.get("object") or {})
