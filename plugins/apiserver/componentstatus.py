"""``kubectl get componentstatuses``: the deprecated core/v1 health summary, computed per request.

kube-apiserver stores nothing for this kind: each GET probes the scheduler's and the controller
manager's ``/healthz`` on localhost and etcd's ``/health``. kybern's scheduler and controller
manager are components of the same process or its children (``--component-process``), so the
report says whether they run there (the runner publishes the started components in
``RunContext.shared["running_components"]``, a child's supervisor once the child says it runs,
and why a child is down in ``shared["component_processes"]``); the
controller manager must also have a live leader (the ``kube-system/kube-controller-manager``
Lease renewed within its duration, by this or another server), and ``etcd-0`` is the store
answering a read. Every answer carries kube's deprecation warning.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

from aiohttp import web
from kybern.models import core_v1
from kybern.plugins.apiserver import errors, tables
from kybern.resources import ResourceType, TableColumn

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer, RequestInfo

WARNING = "v1 ComponentStatus is deprecated in v1.19+"
#: what etcd 3.5's /health answers when healthy (kube copies it into the message)
ETCD_HEALTHY = '{"health":"true","reason":""}'
STORE_TIMEOUT = 5.0


def _row(cs: Any) -> list[Any]:
    """printComponentStatus: the Healthy condition's status, message and error."""
    status, message, error = "Unknown", "", ""
    for cond in cs.conditions or []:
        if cond.type == "Healthy":
            status = "Healthy" if cond.status == "True" else "Unhealthy"
            message, error = cond.message or "", cond.error or ""
            break
    return [cs.metadata.name if cs.metadata else "", status, message, error]


COMPONENT_STATUSES = ResourceType(
    group="",
    version="v1",
    kind="ComponentStatus",
    plural="componentstatuses",
    singular="componentstatus",
    namespaced=False,
    model=core_v1.ComponentStatus,
    short_names=("cs",),
    verbs=("get", "list"),
    generation_fields=(),
    table_columns=(
        TableColumn("Name", "string", "name", "Name must be unique within a namespace."),
        TableColumn("Status", "string", "", "Status of the component conditions"),
        TableColumn("Message", "string", "", "Message of the component conditions"),
        TableColumn("Error", "string", "", "Error of the component conditions"),
    ),
    table_row=_row,
    storage_prefix="kybern.io/virtual/componentstatuses",
)

TYPES: tuple[ResourceType, ...] = (COMPONENT_STATUSES,)


def is_component_status(rt: ResourceType) -> bool:
    return rt is COMPONENT_STATUSES


def _status(name: str, healthy: bool, message: str) -> dict[str, Any]:
    return {
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [{"type": "Healthy", "status": "True" if healthy else "False", "message": message}],
    }


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


async def _etcd(srv: ApiServer) -> dict[str, Any]:
    try:
        await asyncio.wait_for(srv.run(srv.store.current_revision), STORE_TIMEOUT)
    except Exception as exc:
        return _status("etcd-0", False, f"the store did not answer a read: {exc or type(exc).__name__}")
    return _status("etcd-0", True, ETCD_HEALTHY)


def _running(srv: ApiServer) -> set[str]:
    return set(srv.shared.get("running_components") or ())


def _not_running(srv: ApiServer, name: str, what: str) -> dict[str, Any]:
    child = (srv.shared.get("component_processes") or {}).get(name)
    if child:
        return _status(name, False, f"{what} runs in a child process: {child['message']}")
    return _status(name, False, f"{what} is not running in this kybern server")


async def _scheduler(srv: ApiServer) -> dict[str, Any]:
    if "scheduler" not in _running(srv):
        return _not_running(srv, "scheduler", "the scheduler")
    return _status("scheduler", True, "ok")


async def _controller_manager(srv: ApiServer) -> dict[str, Any]:
    name = "controller-manager"
    if name not in _running(srv):
        return _not_running(srv, name, "the controller manager")
    leases = srv.registry.lookup("coordination.k8s.io", "v1", "leases")
    lease = None
    if leases is not None:
        try:
            lease = await srv.storage.get_or_none(leases, "kube-system", "kube-controller-manager")
        except Exception as exc:
            return _status(name, False, f"cannot read its leader lease: {exc}")
    spec = (lease or {}).get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = _parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds") or 0
    if not holder or renewed is None:
        return _status(
            name, False, "no controller manager holds the kube-system/kube-controller-manager lease"
        )
    age = (dt.datetime.now(dt.UTC) - renewed).total_seconds()
    if age > duration:
        return _status(
            name,
            False,
            f"the kube-system/kube-controller-manager lease of {holder} expired "
            f"(renewed {int(age)}s ago, duration {duration}s)",
        )
    return _status(name, True, "ok")


async def _all(srv: ApiServer) -> list[dict[str, Any]]:
    found = await asyncio.gather(_controller_manager(srv), _etcd(srv), _scheduler(srv))
    return sorted(found, key=lambda cs: cs["metadata"]["name"])


async def handle(srv: ApiServer, info: RequestInfo) -> web.Response:
    """GET of the list or one item; everything else does not exist for this kind."""
    from kybern.plugins.apiserver import handlers_rest
    from kybern.plugins.apiserver.app import json_response

    rt, target, request = info.rt, info.target, info.request
    if target.subresource:
        raise errors.not_found_plain("the server could not find the requested resource")
    if request.method != "GET":
        raise errors.method_not_allowed()
    is_watch = target.watch_prefix or (request.query.get("watch") or "").lower() in ("true", "1")
    if is_watch:
        raise errors.method_not_allowed()
    items = await _all(srv)
    output = info.output()
    if target.name is not None:
        found = [cs for cs in items if cs["metadata"]["name"] == target.name]
        if not found:
            raise errors.not_found(rt, target.name)
        if output == "table":
            return json_response(tables.table(rt, found, {}, info.include_object()), warnings=[WARNING])
        if output == "metadata":
            return json_response(tables.partial_metadata(found[0]), warnings=[WARNING])
        return json_response(found[0], warnings=[WARNING])
    match = handlers_rest.object_matcher(info)
    items = [cs for cs in items if match(cs)]
    if output == "table":
        return json_response(tables.table(rt, items, {}, info.include_object()), warnings=[WARNING])
    body = {"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items}
    return json_response(body, warnings=[WARNING])
