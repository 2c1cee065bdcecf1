"""The API client interface components use to talk to the API server.

Components write through the API like any client (kube-controller-manager does the same), so
they work unchanged whether the API server runs in the same process or on another machine.
Resources are named like kubectl does: ``pods``, ``deployments.apps``, ``leases.coordination.k8s.io``.
Objects travel as plain dicts in the wire format; convert to a model with
``msgspec.convert(obj, kybern.models.X)`` where typed access helps.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import httptools
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

#: names that need no quoting in a URL path (every DNS-1123 name): a regex match costs a tenth of
#: urllib's quote, which runs twice on every request
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+").fullmatch

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


@functools.lru_cache(maxsize=512)
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
        parts.append(f"namespaces/{namespace if _URL_SAFE(namespace) else quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(name if _URL_SAFE(name) else quote(name, safe=""))
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


# --- the request path: HTTP/1.1 on kept-alive connections ------------------------------------


class _ResponseError(Exception):
    """The connection broke or sent something that is not an HTTP/1.1 answer."""

    def __init__(self, message: str, before_answer: bool) -> None:
        super().__init__(message)
        #: nothing of an answer came: a kept-alive connection the server had closed
        self.before_answer = before_answer


class _AnswerProtocol(asyncio.Protocol):
    """An HTTP/1.1 client connection whose answers llhttp (httptools) parses as bytes arrive:
    status, framing (Content-Length, chunked, or until the connection closes) and keep-alive
    come from the parser; subclasses take the body (``on_body``) and the end of an answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.code = 0
        #: bytes of an answer arrived / its headers are complete / it has a length or chunks
        self.started = self.headers_done = self.framed = False
        self.closed = False
        self._writable: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.broken(_ResponseError(f"not an HTTP answer: {exc}", before_answer=False))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self.started and self.headers_done and not self.framed:
            self.on_message_complete()  # its body ended with the connection: complete
            return
        self.broken(
            _ResponseError(
                "the answer broke off" if self.started else "the server closed the connection",
                before_answer=not self.started,
            )
        )

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        if self._writable is not None:
            await self._writable  # a large body: wait until the socket takes it
            self._writable = None

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self.started, self.headers_done, self.framed = True, False, False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.code = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        raise NotImplementedError

    def on_message_complete(self) -> None:
        raise NotImplementedError

    def broken(self, error: _ResponseError) -> None:
        raise NotImplementedError


class _Connection(_AnswerProtocol):
    """A kept-alive connection for unary requests: one answer at a time, whole."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def request(self, data: bytes) -> tuple[int, bytes, bool]:
        """Send a request; its answer's status, body and whether the connection stays open."""
        self._waiter = self.loop.create_future()
        await self.send(data)
        return await self._waiter

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep = not self.closed and self.parser.should_keep_alive()
        result = (self.code, b"".join(self._body), keep)
        self._body = []
        self.started = self.headers_done = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def broken(self, error: _ResponseError) -> None:
        self._body = []
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class _Transport:
    """Unary requests (everything but watches) on a pool of kept-alive HTTP/1.1 connections
    whose answers llhttp parses (httptools, the parser uvicorn uses). aiohttp's client spends
    ~3x the CPU of the request itself on its machinery (~400 us against ~130 us a request on
    uvloop and TLS); a thousand hollow nodes' status and lease writes are most of the agent's
    CPU."""

    def __init__(
        self,
        url: str,
        ssl_context: ssl.SSLContext | bool,
        unix_socket: str | None,
        timeout: float,
        limit: int = 100,
    ) -> None:
        parts = urlsplit(url)
        self._unix = unix_socket
        self._tls = None if unix_socket or parts.scheme != "https" else ssl_context
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        host_header = "localhost" if unix_socket else parts.netloc
        self.host_line = f"Host: {host_header}\r\n"
        self._timeout = timeout
        self._limit = limit
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _for_this_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            # connections belong to the loop that made them: a client used from a new loop
            # (asyncio.run called again) starts afresh
            self._loop, self._idle, self._slots = loop, [], asyncio.Semaphore(self._limit)
        return self._slots

    async def _connect(self, protocol: _AnswerProtocol) -> None:
        """Connect ``protocol`` to the server (Unix socket, TCP or TLS); a refused or
        unreachable server is aiohttp's ClientOSError, as callers of the client catch."""
        loop = asyncio.get_running_loop()
        try:
            if self._unix:
                await loop.create_unix_connection(lambda: protocol, self._unix)
            else:
                await loop.create_connection(
                    lambda: protocol,
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls else None,
                )
        except ssl.SSLCertVerificationError:
            raise
        except OSError as exc:
            where = self._unix or f"{self._host}:{self._port}"
            raise aiohttp.ClientOSError(exc.errno, f"Cannot connect to host {where}: {exc}") from exc

    async def _open(self) -> _Connection:
        conn = _Connection(asyncio.get_running_loop())
        await self._connect(conn)
        return conn

    async def request(self, head: bytes, body: bytes | None) -> tuple[int, bytes]:
        """Send one request (``head`` ends with the blank line); the answer's status and body."""
        slots = self._for_this_loop()
        async with slots, asyncio.timeout(self._timeout):
            for attempt in (0, 1):
                conn: _Connection | None = None
                while self._idle:
                    candidate = self._idle.pop()
                    if candidate.usable():
                        conn = candidate
                        break
                    candidate.close()
                reused = conn is not None
                if conn is None:
                    conn = await self._open()
                try:
                    status, data, keep = await conn.request(head + body if body else head)
                except (_ResponseError, OSError) as exc:
                    conn.close()
                    if reused and attempt == 0 and (not isinstance(exc, _ResponseError) or exc.before_answer):
                        continue  # the server had closed the idle connection: once more on a new one
                    raise aiohttp.ClientOSError(None, f"the API server connection broke: {exc}") from exc
                except BaseException:  # cancelled or timed out halfway: the connection is unusable
                    conn.close()
                    raise
                if keep:
                    self._idle.append(conn)
                else:
                    conn.close()
                return status, data
        raise AssertionError("unreachable")

    async def watch(self, head: bytes) -> AsyncIterator[WatchEvent]:
        """A watch on a connection of its own, read by :class:`_WatchProtocol`. The connection
        is closed when the iteration ends, however it ends (cancelled, left by the caller, the
        server closing): a watch's connection is never reused, so the server sees the client
        go at once."""
        loop = asyncio.get_running_loop()
        proto = _WatchProtocol(loop)
        async with asyncio.timeout(30):  # connecting only: events may take as long as they like
            await self._connect(proto)
        transport = proto.transport
        assert transport is not None
        events = proto.events
        try:
            transport.write(head)
            while True:
                while events:
                    if proto.paused and len(events) < 256:
                        proto.paused = False
                        transport.resume_reading()
                    yield events.popleft()
                if proto.done:
                    if proto.code >= 400:
                        raise ApiError(status_from_response(proto.code, b"".join(proto.body)))
                    if proto.error is not None:
                        raise proto.error
                    return
                proto.waiter = loop.create_future()
                await proto.waiter
        finally:
            transport.abort()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle = []


class _WatchProtocol(_AnswerProtocol):
    """A watch's answer, parsed as it arrives: one JSON event a line, each decoded in one pass
    into a :class:`WatchEvent` right in ``data_received``. The reader is woken once per
    network read however many events it brought; no stream reader, no chunk-by-chunk awaits.
    Far behind readers pause the socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.events: collections.deque[WatchEvent] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.body: list[bytes] = []  # an error answer's body (code >= 400)
        self.done = False
        self.error: BaseException | None = None
        self.paused = False
        self._line = b""  # an event line split across reads

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        super().data_received(data)
        if self.events and len(self.events) > 4096 and not self.paused and not self.done:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def on_message_complete(self) -> None:
        self.started = False
        self._finish(None)  # the server ended the watch

    def broken(self, error: _ResponseError) -> None:
        if error.before_answer:
            self._finish(aiohttp.ServerDisconnectedError())
        else:
            self._finish(aiohttp.ClientPayloadError(f"the watch stream broke off: {error}"))

    def _finish(self, error: BaseException | None) -> None:
        if self.done:
            return
        if error is None and self._line.strip() and self.code < 400:
            self.events.append(_watch_event(self._line))
        self._line = b""
        self.done = True
        self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, data: bytes) -> None:
        """Body bytes: an error answer's are kept whole, a watch's cut into events."""
        if self.code >= 400:
            self.body.append(data)
            return
        if self._line:
            data = self._line + data
            self._line = b""
        start = 0
        find = data.find
        append = self.events.append
        while True:
            eol = find(b"\n", start)
            if eol < 0:
                break
            if eol - start > 8 or data[start:eol].strip():  # an event is never that short
                append(_watch_event(data[start:eol]))
            start = eol + 1
        if start < len(data):
            self._line = data[start:]


class HttpApiClient:
    """:class:`ApiClient` over HTTP(S): requests on kept-alive HTTP/1.1 connections, each watch
    on a connection of its own, both written and read by this module (see :class:`_Transport`).

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
        #: only for callers of _get_session (raw requests such as /metrics); requests and
        #: watches go through the leaner transport
        self._session: aiohttp.ClientSession | None = None
        self._transport = _Transport(self.url, self._ssl, self._unix_socket, request_timeout)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._head_fields = (
            f"{self._transport.host_line}Accept: application/json\r\nUser-Agent: {user_agent}\r\n{auth}"
        )

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
        data: bytes | None = None
        if body is not None:
            data = (
                body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else _encode(body)
            )
        target = self._transport.prefix + path
        if params:
            target += "?" + urlencode(params, quote_via=quote)
        head = f"{method} {target} HTTP/1.1\r\n{self._head_fields}"
        if data is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        status, raw = await self._transport.request((head + "\r\n").encode(), data)
        if status >= 400:
            raise ApiError(status_from_response(status, raw))
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
        params = self._params(
            watch=True,
            resourceVersion=resource_version,
            labelSelector=label_selector or None,
            fieldSelector=field_selector or None,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks=allow_bookmarks or None,
        )
        target = self._transport.prefix + resource_path(resource, namespace)
        target += "?" + urlencode(params, quote_via=quote)
        head = f"GET {target} HTTP/1.1\r\n{self._head_fields}\r\n".encode()
        return self._transport.watch(head)

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
        self._transport.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> HttpApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


#: a watch event decoded in one pass straight into WatchEvent (no intermediate dict)
_decode_event = msgspec.json.Decoder(WatchEvent).decode


def _watch_event(line: bytes) -> WatchEvent:
    try:
        return _decode_event(line)
    except msgspec.ValidationError:
        pass  # valid JSON of another shape (an unknown type, no object): as the generic path says
    except ValueError:
        return _malformed(line)
    try:
        event = _decode(line)
    except ValueError:
        return _malformed(line)
    if not isinstance(event, dict):
        return _malformed(line)
    return WatchEvent(event.get("type", "ERROR"), event.get("object") or {})


def _malformed(line: bytes) -> WatchEvent:
    return WatchEvent("ERROR", status_from_response(500, b"malformed watch event: " + line[:200]))
