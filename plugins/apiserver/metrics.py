"""Prometheus metrics named as kube-apiserver names them, served at ``/metrics``.

Each aiohttp application gets its own CollectorRegistry (several API servers may run in one
test process); :func:`get_metrics` finds or makes it, so the middleware, the ``/metrics``
handler and the watch code all reach the same one without set-up order mattering.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = [
    "ApiServerMetrics",
    "get_metrics",
    "instrumented",
    "metrics_handler",
    "metrics_middleware",
    "request_attributes",
]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# kube-apiserver exposes no ``*_created`` series; without them /metrics is half the size
disable_created_metrics()

#: kube-apiserver's latency buckets (seconds)
_BUCKETS = (
    0.005,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    15,
    20,
    30,
    45,
    60,
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _RequestCollector:
    """The per-request families, kept as plain ints and lists and turned into samples at
    scrape time: prometheus_client takes a lock per increment and walks the buckets in Python
    per observation, about 2% of the server's CPU at a thousand requests a second. Requests
    are counted on the event loop's thread, which also serves the scrape."""

    def __init__(self) -> None:
        #: (verb, group, version, resource, subresource, scope, code) -> requests
        self.requests: dict[tuple[str, ...], int] = {}
        #: (verb, ..., scope) -> [count per bucket (not cumulative)..., +Inf count, sum]
        self.durations: dict[tuple[str, ...], list[float]] = {}
        self.inflight = {"readOnly": 0, "mutating": 0}
        self.longrunning: dict[tuple[str, ...], int] = {}

    def describe(self) -> list[Any]:
        return []  # the families are only known at collect time (no duplicate-name check needed)

    def collect(self) -> Any:
        requests = CounterMetricFamily(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, "
            "subresource, scope and HTTP response code.",
            labels=(*_SCOPE_LABELS, "code"),
        )
        for labels, count in self.requests.items():
            requests.add_metric(labels, count)
        yield requests
        duration = HistogramMetricFamily(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, "
            "subresource and scope (long-running requests such as watches excluded).",
            labels=_SCOPE_LABELS,
        )
        for labels, counts in self.durations.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip(_BUCKET_NAMES, counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            duration.add_metric(labels, buckets, counts[-1])
        yield duration
        inflight = GaugeMetricFamily(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind.",
            labels=("request_kind",),
        )
        for kind, count in self.inflight.items():
            inflight.add_metric((kind,), count)
        yield inflight
        longrunning = GaugeMetricFamily(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches, logs, exec).",
            labels=_SCOPE_LABELS,
        )
        for labels, count in self.longrunning.items():
            longrunning.add_metric(labels, count)
        yield longrunning


_SCOPE_LABELS = ("verb", "group", "version", "resource", "subresource", "scope")
_BUCKET_NAMES = [repr(float(b)) for b in _BUCKETS] + ["+Inf"]


class ApiServerMetrics:
    """The metric families of one API server, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_request = _RequestCollector()
        self.registry.register(self.per_request)
        self.watch_events = Counter(
            "apiserver_watch_events",
            "Number of events sent in watch clients",
            ("group", "version", "kind"),
            registry=self.registry,
        )
        self.watchers = Gauge(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            ("group", "version", "kind"),
            registry=self.registry,
        )
        self.storage_objects = Gauge(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            ("resource",),
            registry=self.registry,
        )
        self.storage_revision = Gauge(
            "apiserver_storage_revision",
            "The latest store revision (resourceVersion) the API server has seen.",
            registry=self.registry,
        )
        self.group_commits = Counter(
            "kybern_storage_group_commits",
            "Transactions that committed the writes of one turn of the event loop (SQLite).",
            registry=self.registry,
        )
        self.group_commit_writes = Counter(
            "kybern_storage_group_commit_writes",
            "Writes committed by those transactions (divided by the commits: writes per commit).",
            registry=self.registry,
        )
        self.watch_cache_events = Counter(
            "apiserver_watch_cache_events_received",
            "Counter of events received in watch cache broken by resource type.",
            ("resource",),
            registry=self.registry,
        )

    def started(self, scoped: tuple[str, ...], long_running: bool, read_only: bool) -> None:
        stats = self.per_request
        if long_running:
            stats.longrunning[scoped] = stats.longrunning.get(scoped, 0) + 1
        else:
            stats.inflight["readOnly" if read_only else "mutating"] += 1

    def finished(
        self, scoped: tuple[str, ...], long_running: bool, read_only: bool, code: int, seconds: float
    ) -> None:
        stats = self.per_request
        if long_running:
            stats.longrunning[scoped] -= 1
        else:
            stats.inflight["readOnly" if read_only else "mutating"] -= 1
            counts = stats.durations.get(scoped)
            if counts is None:
                counts = stats.durations[scoped] = [0.0] * (len(_BUCKETS) + 2)
            counts[bisect_left(_BUCKETS, seconds)] += 1
            counts[-1] += seconds
        key = (*scoped, str(code))
        stats.requests[key] = stats.requests.get(key, 0) + 1

    def watch_event(self, group: str, version: str, kind: str, count: int = 1) -> None:
        """Count events written to watch clients (call once per event sent)."""
        self.watch_events.labels(group, version, kind).inc(count)

    def set_storage_objects(self, resource: str, count: int) -> None:
        """``resource`` like kube's label: ``pods``, ``deployments.apps``."""
        self.storage_objects.labels(resource).set(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


_BY_APP: weakref.WeakKeyDictionary[web.Application, ApiServerMetrics] = weakref.WeakKeyDictionary()


def get_metrics(app: web.Application) -> ApiServerMetrics:
    """The metrics of ``app`` (made on first use; kept outside the frozen app state)."""
    metrics = _BY_APP.get(app)
    if metrics is None:
        metrics = _BY_APP[app] = ApiServerMetrics()
    return metrics


def request_attributes(method: str, path: str, query: Mapping[str, str] | None = None) -> dict[str, str]:
    """kube's request-info labels parsed from an API path.

    ``verb`` follows kube-apiserver's metric names: LIST, WATCH, GET, POST, PUT, PATCH, APPLY,
    DELETE, DELETECOLLECTION, CONNECT; non-resource paths get resource "" and the method.
    """
    query = query or {}
    parts = [p for p in path.split("/") if p]
    attrs = {"group": "", "version": "", "resource": "", "subresource": "", "scope": ""}
    rest: list[str] = []
    if len(parts) >= 2 and parts[0] == "api":
        attrs["version"] = parts[1]
        rest = parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        attrs["group"], attrs["version"] = parts[1], parts[2]
        rest = parts[3:]
    else:
        return {"verb": method.upper(), **attrs}
    if rest and rest[0] == "watch":  # the deprecated /watch/ prefix
        rest = rest[1:]
        query = {**query, "watch": "true"}
    namespace = name = ""
    if rest and rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) == 2 or rest[2] in ("status", "finalize"):
            # the Namespace object itself: /namespaces/NAME[/status|/finalize]
            rest = ["namespaces", namespace, *rest[2:3]]
        else:
            rest = rest[2:]
    if rest:
        attrs["resource"] = rest[0]
        if len(rest) >= 2:
            name = rest[1]
        if len(rest) >= 3:
            attrs["subresource"] = rest[2]
    attrs["scope"] = "resource" if name else ("namespace" if namespace else "cluster")
    method = method.upper()
    watching = query.get("watch") in ("true", "1")
    if method in _READ_METHODS:
        if name:
            verb = "WATCH" if watching else "GET"
        else:
            verb = "WATCH" if watching else "LIST"
    elif method == "DELETE":
        verb = "DELETE" if name else "DELETECOLLECTION"
    else:
        verb = method
    if attrs["subresource"] in ("exec", "attach", "portforward", "proxy"):
        verb = "CONNECT"
    return {"verb": verb, **attrs}


def _is_long_running(attrs: dict[str, str], query: Mapping[str, str]) -> bool:
    if attrs["verb"] in ("WATCH", "CONNECT"):
        return True
    return attrs["subresource"] == "log" and query.get("follow") in ("true", "1")


async def instrumented(
    request: web.BaseRequest, handler: Handler, metrics: ApiServerMetrics | None = None
) -> web.StreamResponse:
    """Run ``handler`` counted, timed and tracked in flight (what :func:`metrics_middleware`
    does; the API server calls it directly with its own ``metrics``: it serves requests from
    aiohttp's low-level server, whose requests belong to no application)."""
    if metrics is None:
        metrics = get_metrics(request.app)  # type: ignore[attr-defined]
    query = request.query
    attrs = request_attributes(request.method, request.path, query)
    if attrs["verb"] == "PATCH" and request.content_type == "application/apply-patch+yaml":
        attrs["verb"] = "APPLY"
    long_running = _is_long_running(attrs, query)
    scoped = (
        attrs["verb"],
        attrs["group"],
        attrs["version"],
        attrs["resource"],
        attrs["subresource"],
        attrs["scope"],
    )
    read_only = request.method in _READ_METHODS
    metrics.started(scoped, long_running, read_only)
    start = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        metrics.finished(scoped, long_running, read_only, code, time.perf_counter() - start)


def metrics_middleware() -> Callable[[web.BaseRequest, Handler], Awaitable[web.StreamResponse]]:
    """Count, time and track in-flight API requests (``/metrics`` itself and health probes too)."""

    @web.middleware
    async def middleware(request: web.BaseRequest, handler: Handler) -> web.StreamResponse:
        return await instrumented(request, handler)

    return middleware


async def metrics_handler(request: web.BaseRequest, metrics: ApiServerMetrics | None = None) -> web.Response:
    """``GET /metrics`` in the Prometheus text format."""
    body = (metrics or get_metrics(request.app)).exposition()  # type: ignore[attr-defined]
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
