"""The aiohttp application: routing of kube-apiserver's URL space, authentication, errors.

One catch-all route parses paths the way kube-apiserver's installer lays them out
(``/api/v1/namespaces/NS/pods/NAME/status``, ``/apis/GROUP/VERSION/PLURAL``) into a
:class:`Target`, then hands off to the REST, watch or subresource handlers. Every failure
leaves as a Status object; an unexpected exception is a logged 500, never a traceback page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web
from kybern.labels import Selector, parse_selector
from kybern.plugins.apiserver import bodies, componentstatus, discovery, errors, reviews
from kybern.plugins.apiserver.auth import Tokens, authenticate, bearer_token
from kybern.plugins.apiserver.cache import WatchCache
from kybern.plugins.apiserver.registry import Registry
from kybern.plugins.apiserver.storage import Storage, WriteOptions
from kybern.resources import ResourceType
from kybern.store import Store, StoreError, StoreUnavailableError
from loguru import logger

log = logger.bind(component="apiserver")

_PLAIN_TYPES = ("application/json", "*/*", "application/*", "application/yaml")
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})
#: a pod connect handler: (request, pod object, subresource) -> the response it streamed
ConnectHandler = Callable[[web.BaseRequest, dict[str, Any], str], Awaitable[web.StreamResponse]]
#: RunContext.shared key under which node agents register pod connect handlers (log, exec,
#: attach, portforward): ``shared[CONNECT_HANDLERS_KEY]["log"] = handler``
CONNECT_HANDLERS_KEY = "apiserver.pod_connect_handlers"


@dataclass
class Target:
    """What a resource URL addresses."""

    group: str
    version: str
    rt: ResourceType | None
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""
    watch_prefix: bool = False


@dataclass
class RequestInfo:
    request: web.BaseRequest
    user: str
    target: Target
    query: Any = None
    warnings: list[str] = field(default_factory=list)

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.request.query.get(name, default)

    def flag(self, name: str) -> bool:
        value = self.request.query.get(name)
        return value is not None and value.lower() in ("true", "1", "")

    @property
    def rt(self) -> ResourceType:
        assert self.target.rt is not None
        return self.target.rt

    def dry_run(self) -> bool:
        values = self.request.query.getall("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
        return bool(values)

    def manager(self, required: bool = False) -> str:
        fm = self.request.query.get("fieldManager")
        if fm is not None:
            if len(fm) > 128:
                raise errors.bad_request("fieldManager: Too long: may not be more than 128 bytes")
            if not fm:
                if required:
                    raise errors.bad_request(
                        "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
                    )
            return fm
        if required:
            raise errors.bad_request(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
            )
        agent = self.request.headers.get("User-Agent", "")
        return agent.split("/", 1)[0][:128] if agent else "unknown"

    def write_options(
        self, subresource: str = "", operation: str = "Update", required_manager: bool = False
    ) -> WriteOptions:
        return WriteOptions(
            dry_run=self.dry_run(),
            manager=self.manager(required_manager),
            user=self.user,
            subresource=subresource,
            operation=operation,
        )

    def field_validation(self) -> str:
        return bodies.field_validation_mode(self.request.query.get("fieldValidation"))

    def label_selector(self) -> Selector | None:
        text = self.request.query.get("labelSelector")
        if not text:
            return None
        try:
            return parse_selector(text)
        except ValueError as exc:
            raise errors.bad_request(f"unable to parse requirement: {exc}") from None

    def accept(self) -> list[bodies.MediaType]:
        return bodies.parse_accept(self.request.headers.get("Accept"))

    def output(self) -> str:
        """ "table", "metadata" (PartialObjectMetadata) or "object": the first the client accepts."""
        for mt in self.accept():
            if mt.is_table:
                return "table"
            if mt.is_partial_metadata:
                return "metadata"
            if mt.type in _PLAIN_TYPES and not mt.params.get("as"):
                return "object"
        return "object"

    def wants_table(self) -> bool:
        return self.output() == "table"

    def include_object(self) -> str:
        value = self.request.query.get("includeObject") or "Metadata"
        if value not in ("None", "Metadata", "Object"):
            raise errors.bad_request(f'includeObject: Unsupported value: "{value}"')
        return value

    async def body(self) -> bytes:
        length = self.request.content_length
        if length is not None and length > bodies.MAX_BODY_BYTES:
            raise errors.too_large(bodies.MAX_BODY_BYTES)
        if length == 0:
            return b""
        if length is not None:  # the common case: one read, no wait for the end of the stream
            try:
                return await self.request.content.readexactly(length)
            except asyncio.IncompleteReadError:
                raise errors.bad_request("the request body ended before its Content-Length") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await self.request.content.read(256 * 1024)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > bodies.MAX_BODY_BYTES:
                raise errors.too_large(bodies.MAX_BODY_BYTES)
            chunks.append(chunk)


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    data = body if isinstance(body, bytes) else bodies.dumps(body)
    resp = web.Response(body=data, status=status, content_type="application/json")
    for w in warnings or []:
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def status_response(exc: errors.ApiStatusError) -> web.Response:
    return json_response(exc.status(), exc.code)


def _write(_result: Any) -> None:
    """run_write's ``then`` when the caller has none (what marks a write)."""


class ApiServer:
    """Everything a request handler needs: the kinds, the store, the cache, the tokens."""

    def __init__(
        self,
        store: Store,
        types: list[ResourceType],
        pm: Any,
        tokens: Tokens,
        shared: dict[str, Any],
        server_address: str = "",
    ) -> None:
        self.store = store
        self.registry = Registry(types, reviews.REVIEW_TYPES + componentstatus.TYPES)
        self.pm = pm
        self.tokens = tokens
        self.shared = shared
        self.server_address = server_address
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="apiserver-store")
        self.cache = WatchCache(store, self.registry, self.run)
        self.storage = Storage(store, self.registry, self.cache, pm, self.run, self.run_key, self.run_write)
        #: see run_write; None when the store wants every call on a worker thread
        self._inline_lock: Any = getattr(store, "inline_lock", None)
        #: the store's group commit (SQLite), and the future of the group open now
        self._begin_group: Callable[[], bool] | None = getattr(store, "begin_group", None)
        self._group_commit: asyncio.Future[str | None] | None = None
        #: signs and checks service account tokens (satokens.TokenSigner), set by the component
        self.token_signer: Any = None
        #: the cluster CA (PEM), served unauthenticated at /cacerts when set
        self.ca_pem: bytes | None = None
        self._instrumented: Callable[..., Awaitable[web.StreamResponse]] | None = None
        #: the server's metrics (metrics.ApiServerMetrics), None without prometheus_client
        self.metrics: Any = None
        try:
            from kybern.plugins.apiserver.metrics import ApiServerMetrics, instrumented

            self._instrumented = instrumented
            self.metrics = ApiServerMetrics()
        except ImportError:  # prometheus_client missing: serve without metrics
            pass
        self.ready = False
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        shared.setdefault(CONNECT_HANDLERS_KEY, {})

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args))

    async def run_key(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A short store read on one key (get, current revision); see :meth:`run_write`."""
        return await self._run_inline(fn, args, None)

    async def run_write(
        self, fn: Callable[..., Any], *args: Any, then: Callable[[Any], None] | None = None
    ) -> Any:
        """A store write on one key (create, update, delete); ``then(result)`` runs as soon as
        it returned, before it committed (the writer primes the watch cache with the object
        it encoded, before the commit publishes the event).

        On a store that allows it (SQLite: a local file, writers serialized in this process)
        it runs right here on the event loop, unless another thread of this process is writing
        at the moment: a hand-off to a worker thread and back costs more than the operation
        (two GIL switches, each up to the 5 ms switch interval when the loop is busy).
        There, the writes of the requests that run in one turn of the loop share one
        transaction (a group commit, as etcd batches its writes): the first opens it, the
        loop's next turn commits it, and each write (and each read that saw the group's
        writes) returns only once it committed, so no answer or watch event gets ahead of the
        data. In the scheduler benchmark's hollow-node run that cut the server's write syscalls
        per pod from 48 to 15.
        Elsewhere (PostgreSQL: network round trips) it runs on the store's worker threads like
        :meth:`run`. Writers call ``cache.drain()`` afterwards, so their event reaches the watch
        cache (and the watchers) before the response leaves, without the cache's thread.
        """
        return await self._run_inline(fn, args, then or _write)

    async def _run_inline(
        self, fn: Callable[..., Any], args: tuple[Any, ...], then: Callable[[Any], None] | None
    ) -> Any:
        """``then`` None: a read (it joins an open group, never opens one)."""
        lock = self._inline_lock
        if lock is not None and lock.acquire(blocking=False):
            try:
                committed = self._group_commit
                if committed is None and then is not None and self._begin_group is not None:
                    if self._begin_group():
                        loop = asyncio.get_running_loop()
                        committed = self._group_commit = loop.create_future()
                        loop.call_soon(self._commit_group)
                result = fn(*args)
                if then is not None:
                    then(result)
            finally:
                lock.release()
            if committed is not None:
                failure = await committed
                if failure is not None:
                    raise StoreUnavailableError(failure)
            return result
        result = await self.run(fn, *args)
        if then is not None:
            then(result)
        return result

    def _commit_group(self) -> None:
        """The loop turn after a group opened: commit it and wake its requests (a failure is
        each one's, as a message: every waiter raises an error of its own)."""
        committed, self._group_commit = self._group_commit, None
        failure: str | None = None
        try:
            writes = self.store.commit_group()
        except StoreError as exc:
            failure = str(exc)
            self.cache.forget_primed()  # their revisions were never written: another may get one
        else:
            if self.metrics is not None and writes:
                self.metrics.group_commits.inc()
                self.metrics.group_commit_writes.inc(writes)
        if committed is not None and not committed.done():
            committed.set_result(failure)

    def connect_handlers(self) -> dict[str, ConnectHandler]:
        return self.shared.setdefault(CONNECT_HANDLERS_KEY, {})

    # ----------------------------------------------------------------- app

    def make_server(self) -> web.Server:
        """aiohttp's low-level server, which hands every request to :meth:`handle`: the API
        server does its own routing, so an application around it (a router resolving a
        catch-all route, the middleware chain, a Request per request) only cost CPU, about 4%
        of the server's CPU per pod in the scheduler benchmark."""
        loop = asyncio.get_running_loop()

        def request_factory(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=bodies.MAX_BODY_BYTES * 2
            )

        return web.Server(self.handle, request_factory=request_factory, access_log=None)

    def make_app(self) -> web.Application:
        """The same handler as an application with one catch-all route (for aiohttp's test
        server, which wants an application)."""
        app = web.Application(client_max_size=bodies.MAX_BODY_BYTES * 2)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.ca_pem is not None and request.path == "/cacerts" and request.method == "GET":
            # k3s' join step, unauthenticated: an agent checks the CA it gets against the hash
            # in its K10... node token, so it needs no CA file beforehand
            return web.Response(body=self.ca_pem, content_type="text/plain")
        if self._instrumented is None:
            return await self.dispatch(request)
        return await self._instrumented(request, self.dispatch, self.metrics)

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except errors.ApiStatusError as exc:
            return status_response(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except web.HTTPException:
            raise
        except Exception as exc:
            log.opt(exception=exc).error("{} {} failed: {}", request.method, request.path, exc)
            return status_response(errors.internal(f"{type(exc).__name__}: {exc}"))

    async def _service_account_user(self, request: web.BaseRequest, header: str | None) -> str | None:
        """``system:serviceaccount:NS:NAME`` for a valid service account token (a JWT), else None."""
        token = bearer_token(header)
        if token is None or self.token_signer is None or token.count(".") != 2:
            return None
        from kybern.plugins.apiserver import satoken_handlers

        ident = await satoken_handlers.authenticate(self, token)
        if ident is None:
            return None
        request[satoken_handlers.USER_INFO_KEY] = ident.user_info()
        return ident.username

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return await self._health(path, "verbose" in request.query)
        if path == "/version":
            return json_response(discovery.version_info())
        header = request.headers.get("Authorization")
        user = authenticate(header, self.tokens)
        if user is None:
            user = await self._service_account_user(request, header)
        if user is None:
            raise errors.unauthorized()
        if "Impersonate-User" in request.headers or "Impersonate-Group" in request.headers:
            raise reviews.impersonation_forbidden(user, request.headers)
        if path == "/metrics":
            from kybern.plugins.apiserver.metrics import metrics_handler

            return await metrics_handler(request, self.metrics)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return json_response(
                {
                    "paths": [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/healthz",
                        "/livez",
                        "/metrics",
                        "/openapi/v3",
                        "/readyz",
                        "/version",
                    ]
                }
            )
        if parts[0] == "openapi":
            return self._openapi(parts, request)
        if parts[0] == "api":
            if len(parts) == 1:
                return self._discovery_root(request, legacy=True)
            if parts[1] != "v1":
                raise errors.not_found_plain("the server could not find the requested resource")
            if len(parts) == 2:
                return self._resource_list("", "v1")
            return await self._resource(request, user, "", "v1", parts[2:])
        if parts[0] == "apis":
            if len(parts) == 1:
                return self._discovery_root(request, legacy=False)
            group = parts[1]
            if len(parts) == 2:
                return self._api_group(group)
            version = parts[2]
            if not self.registry.has_group_version(group, version):
                raise errors.not_found_plain("the server could not find the requested resource")
            if len(parts) == 3:
                return self._resource_list(group, version)
            return await self._resource(request, user, group, version, parts[3:])
        raise errors.not_found_plain("the server could not find the requested resource")

    async def _health(self, path: str, verbose: bool = False) -> web.Response:
        """kube-apiserver's /healthz, /livez and /readyz: "ok" (or, with ``?verbose``, one
        ``[+]check ok`` line per check), a single check at ``/readyz/NAME``; 503 when failing."""
        endpoint, _, single = path.lstrip("/").partition("/")
        checks = ["ping", "log"]
        if endpoint == "readyz":
            checks += ["etcd", "informer-sync", "shutdown"]
        if single and single not in checks:
            raise errors.not_found_plain("the server could not find the requested resource")
        failed: set[str] = set()
        if not self.ready:
            failed.add("informer-sync" if endpoint == "readyz" else "ping")
        if self.stopping.is_set():
            failed.add("shutdown" if endpoint == "readyz" else "ping")
        if endpoint == "readyz" and (not single or single == "etcd") and not failed:
            try:
                await asyncio.wait_for(self.run(self.store.current_revision), 5)
            except Exception:
                failed.add("etcd")
        if single:
            ok = single not in failed
            text = "ok" if ok else f"internal server error: {single} check failed"
        else:
            ok = not failed
            text = "ok" if ok else "not ready"
            if verbose:
                lines = [f"[-]{c} failed: reason withheld" if c in failed else f"[+]{c} ok" for c in checks]
                lines.append(f"{endpoint} check {'passed' if ok else 'failed'}")
                text = "\n".join(lines) + "\n"
        return web.Response(text=text, status=200 if ok else 503, content_type="text/plain")

    # ----------------------------------------------------------------- discovery

    def _discovery_root(self, request: web.BaseRequest, legacy: bool) -> web.Response:
        for mt in bodies.parse_accept(request.headers.get("Accept")):
            if (
                mt.params.get("g") == "apidiscovery.k8s.io"
                and mt.params.get("v") == "v2"
                and (mt.params.get("as") == "APIGroupDiscoveryList")
            ):
                body = bodies.dumps(discovery.aggregated_discovery(self.registry.all_types, legacy))
                resp = web.Response(body=body)
                resp.headers["Content-Type"] = discovery.discovery_content_type()
                resp.headers["Vary"] = "Accept"
                return resp
            if mt.type in ("application/json", "*/*") and not mt.params.get("as"):
                break
        if legacy:
            return json_response(discovery.api_versions(self.server_address))
        return json_response(discovery.api_group_list(self.registry.all_types))

    def _api_group(self, group: str) -> web.Response:
        for g in discovery.api_group_list(self.registry.all_types).get("groups", []):
            if g.get("name") == group:
                return json_response({"kind": "APIGroup", "apiVersion": "v1", **g})
        raise errors.not_found_plain("the server could not find the requested resource")

    def _resource_list(self, group: str, version: str) -> web.Response:
        doc = discovery.api_resource_list(self.registry.all_types, group, version)
        if doc is None:
            raise errors.not_found_plain("the server could not find the requested resource")
        return json_response(doc)

    def _openapi(self, parts: list[str], request: web.BaseRequest) -> web.Response:
        if len(parts) < 2 or parts[1] != "v3":
            raise errors.not_found_plain("the server could not find the requested resource")
        from kybern.plugins.apiserver import openapi

        if len(parts) == 2:
            return json_response(openapi.openapi_v3_index(self.registry.all_types))
        path = "/".join(parts[2:])
        data = openapi.openapi_v3_document_bytes(self.registry.all_types, path)
        if data is None:
            raise errors.not_found_plain("the server could not find the requested resource")
        resp = json_response(data)
        if request.query.get("hash"):
            # a hash-pinned URL never changes content (kube marks them immutable too)
            resp.headers["Cache-Control"] = "public, immutable"
        return resp

    # ----------------------------------------------------------------- resources

    def _parse_target(self, group: str, version: str, rest: list[str]) -> Target:
        watch_prefix = False
        if rest and rest[0] == "watch":
            watch_prefix = True
            rest = rest[1:]
        namespace = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and group == "" and rest[2] in ("status", "finalize"))
        ):
            namespace = rest[1]
            rest = rest[2:]
        if not rest or len(rest) > 3:
            raise errors.not_found_plain("the server could not find the requested resource")
        plural = rest[0]
        rt = self.registry.lookup(group, version, plural)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if rt is not None:
            if namespace is not None and not rt.namespaced:
                raise errors.not_found_plain("the server could not find the requested resource")
        return Target(group, version, rt, plural, namespace, name, sub, watch_prefix)

    async def _resource(
        self, request: web.BaseRequest, user: str, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        from kybern.plugins.apiserver import handlers_rest, handlers_sub, handlers_watch

        target = self._parse_target(group, version, rest)
        info = RequestInfo(request, user, target)
        method = request.method
        if target.rt is None:
            if group == "" and target.plural == "bindings" and target.namespace and not target.name:
                if method == "POST":
                    return await handlers_sub.bind_collection(self, info)
            raise errors.not_found_plain("the server could not find the requested resource")
        rt = target.rt
        if reviews.is_review(rt):
            return await reviews.handle(self, info)
        if componentstatus.is_component_status(rt):
            return await componentstatus.handle(self, info)
        if target.subresource:
            return await handlers_sub.handle(self, info)
        is_watch = target.watch_prefix or (
            method == "GET" and (request.query.get("watch") or "").lower() in ("true", "1")
        )
        if rt.namespaced and target.namespace is None and (target.name is not None or method not in ("GET",)):
            raise errors.not_found_plain("the server could not find the requested resource")
        if is_watch:
            if method != "GET":
                raise errors.method_not_allowed()
            self._check_verb(rt, "watch")
            return await handlers_watch.watch(self, info)
        if target.name is None:
            if method == "GET":
                self._check_verb(rt, "list")
                return await handlers_rest.list_objects(self, info)
            if method == "POST":
                self._check_verb(rt, "create")
                return await handlers_rest.create(self, info)
            if method == "DELETE":
                self._check_verb(rt, "deletecollection")
                return await handlers_rest.delete_collection(self, info)
            raise errors.method_not_allowed()
        if method == "GET":
            self._check_verb(rt, "get")
            return await handlers_rest.get(self, info)
        if method == "PUT":
            self._check_verb(rt, "update")
            return await handlers_rest.update(self, info)
        if method == "PATCH":
            self._check_verb(rt, "patch")
            return await handlers_rest.patch(self, info)
        if method == "DELETE":
            self._check_verb(rt, "delete")
            return await handlers_rest.delete(self, info)
        raise errors.method_not_allowed()

    def _check_verb(self, rt: ResourceType, verb: str) -> None:
        if verb not in rt.verbs:
            raise errors.method_not_allowed()
