"""Subresources: status, scale, binding, eviction, namespace finalize, and pod connect ones.

``log``, ``exec``, ``attach`` and ``portforward`` are served by whoever runs the pod (the node
agent). The extension point: a component registers an async handler in
``RunContext.shared["apiserver.pod_connect_handlers"]`` (``app.CONNECT_HANDLERS_KEY``) under the
subresource name; it is called as ``handler(request, pod, subresource)`` after authentication
and after the pod was read, and returns the (streamed) response. Without one (the normal case)
the API server proxies to the streaming server of the pod's node (:mod:`nodeproxy`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from aiohttp import web
from kybern.labels import selector_from_dict
from kybern.plugins.apiserver import bodies, errors, handlers_rest
from kybern.plugins.apiserver.app import json_response
from kybern.plugins.apiserver.satoken_handlers import is_token_request, token_request
from kybern.plugins.apiserver.storage import is_namespace, is_pod, now_rfc3339
from kybern.resources import FieldError, ResourceType

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer, RequestInfo

CONNECT = ("log", "exec", "attach", "portforward", "proxy")
SCALE_DEFINITION = "io.k8s.api.autoscaling.v1.Scale"


def _has_sub(rt: ResourceType, name: str) -> bool:
    return any(s.name == name for s in rt.subresources) or (name == "status" and rt.status_subresource)


async def handle(srv: ApiServer, info: RequestInfo) -> web.StreamResponse:
    rt, t = info.rt, info.target
    sub = t.subresource
    method = info.request.method
    if t.name is None:
        raise errors.not_found_plain("the server could not find the requested resource")
    if sub == "finalize" and is_namespace(rt):
        if method != "PUT":
            raise errors.method_not_allowed()
        return await handlers_rest.update(srv, info, "finalize")
    if not _has_sub(rt, sub) and not (is_pod(rt) and sub in ("binding", "eviction", *CONNECT)):
        raise errors.not_found_plain("the server could not find the requested resource")
    if sub == "status":
        if method == "GET":
            return await handlers_rest.get(srv, info)
        if method == "PUT":
            return await handlers_rest.update(srv, info, "status")
        if method == "PATCH":
            return await handlers_rest.patch(srv, info, "status")
        raise errors.method_not_allowed()
    if sub == "scale":
        return await scale(srv, info)
    if is_token_request(rt, sub):
        return await token_request(srv, info)
    if is_pod(rt) and sub == "binding":
        if method != "POST":
            raise errors.method_not_allowed()
        return await bind(srv, info, t.namespace or "", t.name)
    if is_pod(rt) and sub == "eviction":
        if method != "POST":
            raise errors.method_not_allowed()
        return await evict(srv, info)
    if sub in CONNECT:
        return await connect(srv, info)
    raise errors.not_found_plain("the server could not find the requested resource")


# --------------------------------------------------------------------------- scale


def _selector_string(obj: dict[str, Any]) -> str:
    sel = (obj.get("spec") or {}).get("selector")
    if not sel:
        return ""
    if isinstance(sel, dict) and not ("matchLabels" in sel or "matchExpressions" in sel):
        sel = {"matchLabels": sel}  # ReplicationController-style map selectors
    try:
        return str(selector_from_dict(sel))
    except ValueError:
        return ""


def to_scale(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    smeta = {
        k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
    }
    status: dict[str, Any] = {"replicas": (obj.get("status") or {}).get("replicas") or 0}
    selector = _selector_string(obj)
    if selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": smeta,
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas") or 0},
        "status": status,
    }


def scale_table(scale_obj: dict[str, Any], include: str) -> dict[str, Any]:
    """kube's Scale table (``kubectl get deploy x --subresource=scale``): Name, Desired, Available."""
    meta = scale_obj["metadata"]
    row: dict[str, Any] = {
        "cells": [meta.get("name", ""), scale_obj["spec"]["replicas"], scale_obj["status"]["replicas"]]
    }
    if include == "Object":
        row["object"] = scale_obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    columns = [
        {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
        {"name": "Desired", "type": "integer", "format": "", "description": "", "priority": 0},
        {"name": "Available", "type": "integer", "format": "", "description": "", "priority": 0},
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": meta.get("resourceVersion", "")},
        "columnDefinitions": columns,
        "rows": [row],
    }


def _scale_replicas(rt: ResourceType, name: str, scale_obj: dict[str, Any]) -> int:
    replicas = (scale_obj.get("spec") or {}).get("replicas", 0)
    if replicas is None:
        replicas = 0
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise errors.bad_request(
            f'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
            f"{type(replicas).__name__} into Go struct field ScaleSpec.spec.replicas of type int32"
        )
    if replicas < 0:
        err = FieldError("FieldValueInvalid", "spec.replicas", "must be greater than or equal to 0", replicas)
        exc = errors.invalid(rt, name, [err])
        exc.message = exc.message.replace(
            f"{rt.kind}.{rt.group}" if rt.group else rt.kind, "Scale.autoscaling", 1
        )
        exc.details = dict(exc.details or {}, kind="Scale", group="autoscaling")
        raise exc
    return replicas


async def scale(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt, t = info.rt, info.target
    name = t.name or ""
    method = info.request.method
    if method == "GET":
        obj = await srv.storage.get(rt, t.namespace, name)
        scaled = to_scale(obj)
        if info.output() == "table":
            return json_response(scale_table(scaled, info.include_object()))
        return json_response(scaled)
    if method not in ("PUT", "PATCH"):
        raise errors.method_not_allowed()
    opts = info.write_options("scale")
    body = await info.body()
    if method == "PUT":
        data = bodies.parse_document(body, info.request.content_type)
        if not isinstance(data, dict):
            raise errors.bad_request("the body must be a Scale object")
        if data.get("kind") not in (None, "", "Scale"):
            raise errors.bad_request(f'no kind "{data.get("kind")}" is registered for the scale subresource')
        meta = data.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        replicas = _scale_replicas(rt, name, data)
        want_rv = meta.get("resourceVersion")

        def put(parent: dict[str, Any]) -> dict[str, Any]:
            if want_rv and str(want_rv) != parent["metadata"].get("resourceVersion"):
                raise errors.conflict(rt, name)
            parent.setdefault("spec", {})["replicas"] = replicas
            return parent

        obj, _ = await srv.storage.update(rt, t.namespace, name, put, opts, precondition=bool(want_rv))
        return json_response(to_scale(obj))
    ct = bodies.media_type(info.request.headers.get("Content-Type"))
    if ct not in bodies.PATCH_TYPES or ct == "application/apply-patch+yaml":
        raise errors.ApiStatusError(415, "UnsupportedMediaType", f"unsupported patch type for scale: {ct}")
    from kybern.plugins.apiserver import patching

    def patch_scale(parent: dict[str, Any]) -> dict[str, Any]:
        current = to_scale(parent)
        try:
            patched = patching.apply_patch(copy.deepcopy(current), body, ct, SCALE_DEFINITION)
        except patching.PatchError as exc:
            raise handlers_rest._patch_error(exc) from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch does not produce a Scale")
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        if rv and str(rv) != parent["metadata"].get("resourceVersion"):
            raise errors.conflict(rt, name)
        parent.setdefault("spec", {})["replicas"] = _scale_replicas(rt, name, patched)
        return parent

    obj, _ = await srv.storage.update(
        rt, t.namespace, name, patch_scale, opts, precondition=handlers_rest._patch_sets_rv(body, ct)
    )
    return json_response(to_scale(obj))


# --------------------------------------------------------------------------- binding, eviction


async def bind_collection(srv: ApiServer, info: RequestInfo) -> web.Response:
    body = await info.body()
    data = bodies.parse_document(body, info.request.content_type)
    if not isinstance(data, dict):
        raise errors.bad_request("the body must be a Binding object")
    name = (data.get("metadata") or {}).get("name")
    if not name:
        raise errors.bad_request("Binding: metadata.name (the pod) is required")
    return await bind(srv, info, info.target.namespace or "", name, data)


async def bind(
    srv: ApiServer, info: RequestInfo, namespace: str, name: str, data: dict[str, Any] | None = None
) -> web.Response:
    rt = srv.registry.lookup("", "v1", "pods")
    if rt is None:
        raise errors.not_found_plain("the server could not find the requested resource")
    if data is None:
        body = await info.body()
        data = bodies.parse_document(body, info.request.content_type)
    if not isinstance(data, dict) or data.get("kind") not in (None, "", "Binding"):
        raise errors.bad_request("the body must be a Binding object")
    target = data.get("target") or {}
    node = target.get("name") if isinstance(target, dict) else None
    if not node or not isinstance(node, str):
        exc = errors.invalid(rt, name, [FieldError("FieldValueRequired", "target.name")])
        exc.message = f'Binding "{name}" is invalid: target.name: Required value'
        raise exc
    annotations = (data.get("metadata") or {}).get("annotations") or {}
    uid = (data.get("metadata") or {}).get("uid")
    opts = info.write_options("binding")

    def assign(current: dict[str, Any]) -> dict[str, Any]:
        # a copy of the parts it changes (the current object is shared, see copy_input)
        pod = dict(current)
        meta = pod["metadata"] = dict(pod.get("metadata") or {})
        if uid and uid != meta.get("uid"):  # a pod of the same name made since the decision
            raise errors.ApiStatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods "{name}": Precondition failed: '
                f"UID in precondition: {uid}, UID in object meta: {meta.get('uid', '')}",
                {"name": name, "kind": "pods"},
            )
        if meta.get("deletionTimestamp"):
            raise errors.ApiStatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being deleted, '
                "cannot be assigned to a host",
                {"name": name, "kind": "pods/binding"},
            )
        spec = pod["spec"] = dict(pod.get("spec") or {})
        if spec.get("nodeName"):
            raise errors.ApiStatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned to '
                f'node "{spec["nodeName"]}"',
                {"name": name, "kind": "pods/binding"},
            )
        spec["nodeName"] = node
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        status = pod["status"] = dict(pod.get("status") or {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        )
        status["conditions"] = conds
        return pod

    await srv.storage.update(rt, namespace, name, assign, opts, from_cache=True, copy_input=False)
    return json_response(errors.success_status() | {"code": 201}, 201)


async def evict(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt, t = info.rt, info.target
    body = await info.body()
    options: dict[str, Any] = {}
    if body.strip():
        data = bodies.parse_document(body, info.request.content_type)
        if not isinstance(data, dict):
            raise errors.bad_request("the body must be an Eviction object")
        name = (data.get("metadata") or {}).get("name")
        if name and name != t.name:
            raise errors.bad_request(
                f"name in URL does not match name in Eviction object ({name} != {t.name})"
            )
        options = data.get("deleteOptions") or {}
        if not isinstance(options, dict):
            raise errors.bad_request("deleteOptions must be an object")
    opts = info.write_options()
    if options.get("dryRun") == ["All"]:
        opts.dry_run = True
    await srv.storage.delete(rt, t.namespace, t.name or "", options, opts)
    return json_response(errors.success_status() | {"code": 201}, 201)


# --------------------------------------------------------------------------- connect


async def connect(srv: ApiServer, info: RequestInfo) -> web.StreamResponse:
    """A registered in-process handler if there is one, else the proxy to the pod's node.

    kybern registers none: every node, the server's own included, runs the same streaming
    server (the ``kubelet-streams`` component), so one code path serves local and remote
    pods alike.
    """
    rt, t = info.rt, info.target
    sub = t.subresource
    pod = await srv.storage.get(rt, t.namespace, t.name or "")
    handler = srv.connect_handlers().get(sub)
    if handler is not None:
        return await handler(info.request, pod, sub)
    name = t.name or ""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    if sub == "proxy":
        raise errors.service_unavailable(f"no node agent serves proxy for pod {name} yet")
    from kybern.plugins.apiserver import nodeproxy

    noun = {"log": "logs", "exec": "exec", "attach": "attach", "portforward": "port-forward"}.get(sub, sub)
    host, port = await nodeproxy.node_endpoint(srv, node_name, name, noun)
    base = f"https://{host}:{port}"
    ns = t.namespace or ""
    if sub == "portforward":
        return await nodeproxy.proxy_websocket(srv, info.request, f"{base}/portforward/{ns}/{name}", sub)
    container = nodeproxy.pick_container(pod, info.request.query.get("container"))
    if sub == "log":
        return await nodeproxy.proxy_logs(srv, info.request, f"{base}/containerLogs/{ns}/{name}/{container}")
    path = "exec" if sub == "exec" else "attach"
    return await nodeproxy.proxy_websocket(srv, info.request, f"{base}/{path}/{ns}/{name}/{container}", sub)
