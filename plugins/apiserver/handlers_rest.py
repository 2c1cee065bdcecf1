"""get, list, create, update, patch, delete and deletecollection of any registered kind.

Lists are served from the watch cache after it has caught up to the store's current revision
(consistent reads: a client always sees its own writes); pages past the first come from the
store at the list's revision so every page is consistent; resourceVersionMatch=Exact reads the
store at exactly that revision.
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from kybern.client import STATUS_REASONS
from kybern.models import codec
from kybern.plugins.apiserver import bodies, errors, tables
from kybern.plugins.apiserver.app import json_response
from kybern.plugins.apiserver.cache import CachedObject, decode_value
from kybern.plugins.apiserver.selectors import field_matcher, parse_field_selector
from kybern.plugins.apiserver.storage import definition_of, now_rfc3339
from kybern.resources import ResourceType
from kybern.store import CompactedError, FutureRevisionError
from loguru import logger

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer, RequestInfo

log = logger.bind(component="apiserver")


def _resp(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    return json_response(body, status, warnings)


def parse_rv(value: str | None, what: str = "resourceVersion") -> int | None:
    if value in (None, ""):
        return None
    try:
        rv = int(value)
    except ValueError:
        raise errors.ApiStatusError(
            400, "BadRequest", f'{what}: Invalid value: "{value}": must be an unsigned integer'
        ) from None
    if rv < 0:
        raise errors.bad_request(f'{what}: Invalid value: "{value}": must be an unsigned integer')
    return rv


def match_all(obj: dict[str, Any]) -> bool:
    """The matcher of a request without selectors (recognized by identity: nothing to decode)."""
    return True


def object_matcher(info: RequestInfo) -> Callable[[dict[str, Any]], bool]:
    """A predicate combining the request's label and field selectors (and the name, for a watch
    of one object: ``/watch/.../NAME`` or ``.../NAME?watch=true``)."""
    rt = info.rt
    labels = info.label_selector()
    fields = field_matcher(rt, parse_field_selector(info.q("fieldSelector")))
    name = info.target.name
    if labels is None and fields is None and name is None:
        return match_all

    def match(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if name is not None and meta.get("name") != name:
            return False
        if labels is not None and not labels.matches(meta.get("labels") or {}):
            return False
        return fields is None or fields(obj)

    return match


# --------------------------------------------------------------------------- get


async def get(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt, t = info.rt, info.target
    assert t.name is not None
    rv = parse_rv(info.q("resourceVersion"))
    obj: dict[str, Any] | None
    output = info.output()
    if rv is not None:
        await srv.cache.wait_for(rv)
        cached = srv.cache.cache_for(rt).objects.get(srv.registry.key(rt, t.namespace, t.name))
        if cached is None:
            raise errors.not_found(rt, t.name)
        if output == "object":
            return _resp(cached.raw)
        obj = cached.obj
    else:
        obj = await srv.storage.get(rt, t.namespace, t.name)
    if output == "metadata":
        return _resp(tables.partial_metadata(obj))
    if output == "table":
        return _resp(
            tables.table(
                rt,
                [obj],
                {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                info.include_object(),
            )
        )
    return _resp(obj)


# --------------------------------------------------------------------------- list


def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "kybern/v1", "rv": rv, "start": start}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise errors.bad_request(
            "continue key is not valid: the continue token is malformed or was not issued by this server"
        ) from None


EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


async def _store_items(srv: ApiServer, prefix: str, revision: int | None) -> tuple[list[CachedObject], int]:
    def read() -> tuple[list[CachedObject], int]:
        out: list[CachedObject] = []
        token = None
        rev = revision
        while True:
            res = srv.store.list(prefix, revision=rev, limit=5000, continue_token=token)
            rev = res.revision
            out.extend(decode_value(kv.key, kv.value, kv.mod_revision) for kv in res.items)
            token = res.continue_token
            if not token:
                return out, rev

    try:
        return await srv.run(read)
    except CompactedError:
        raise errors.ApiStatusError(410, "Expired", EXPIRED_CONTINUE) from None
    except FutureRevisionError:
        raise errors.ApiStatusError(
            504,
            "Timeout",
            f"Too large resource version: {revision}, current: {srv.cache.revision}",
            {
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            },
        ) from None


async def collect(
    srv: ApiServer, info: RequestInfo
) -> tuple[list[CachedObject], int, str | None, int | None]:
    """The objects a list request selects: (items, list RV, continue token, remaining)."""
    rt, t = info.rt, info.target
    prefix = srv.registry.key_prefix(rt, t.namespace)
    match = object_matcher(info)
    limit_text = info.q("limit")
    limit = None
    if limit_text not in (None, ""):
        try:
            limit = int(limit_text)  # type: ignore[arg-type]
        except ValueError:
            raise errors.bad_request(f'limit: Invalid value: "{limit_text}": must be an integer') from None
        if limit <= 0:
            limit = None
    cont = info.q("continue")
    rv_text = info.q("resourceVersion")
    rv = parse_rv(rv_text)
    rv_match = info.q("resourceVersionMatch")
    if rv_match not in (None, "", "NotOlderThan", "Exact"):
        raise errors.bad_request(
            f'resourceVersionMatch: Unsupported value: "{rv_match}": '
            'supported values: "Exact", "NotOlderThan"'
        )
    start = ""
    if cont:
        if rv_text not in (None, ""):
            raise errors.bad_request(
                "resourceVersion: Forbidden: specifying resource version is not allowed when using continue"
            )
        list_rv, start = _decode_continue(cont)
        items, list_rv = await _store_items(srv, prefix, list_rv)
        items = [o for o in items if o.key > start]
    elif rv_match == "Exact":
        if rv is None or rv == 0:
            raise errors.bad_request(
                'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is '
                'forbidden for resourceVersion "0" or unset'
            )
        items, list_rv = await _store_items(srv, prefix, rv)
    else:
        if rv_match == "NotOlderThan" and rv is None:
            raise errors.bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden "
                "unless resourceVersion is provided"
            )
        cache = srv.cache
        if rv is None:
            current = await srv.run_key(srv.store.current_revision)
            if not await cache.wait_for(current):
                log.warning(
                    "watch cache is behind the store ({} < {}): listing from the store",
                    cache.revision,
                    current,
                )
                items, list_rv = await _store_items(srv, prefix, None)
            else:
                items, list_rv = cache.cache_for(rt).snapshot(prefix), cache.revision
        else:
            if rv > 0 and not await cache.wait_for(rv):
                raise errors.ApiStatusError(
                    504,
                    "Timeout",
                    f"Too large resource version: {rv}, current: {cache.revision}",
                    {
                        "causes": [
                            {
                                "reason": "ResourceVersionTooLarge",
                                "message": f"Too large resource version: {rv}, current: {cache.revision}",
                            }
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
            items, list_rv = cache.cache_for(rt).snapshot(prefix), cache.revision
    selected = items if match is match_all else [o for o in items if match(o.obj)]
    token = None
    remaining = None
    if limit is not None and len(selected) > limit:
        token = _encode_continue(list_rv, selected[limit - 1].key)
        remaining = len(selected) - limit
        selected = selected[:limit]
    return selected, list_rv, token, remaining


async def list_objects(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt = info.rt
    items, list_rv, token, remaining = await collect(srv, info)
    meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
    if token:
        meta["continue"] = token
        if not info.q("labelSelector") and not info.q("fieldSelector") and remaining is not None:
            meta["remainingItemCount"] = remaining
    output = info.output()
    if output == "table":
        return _resp(tables.table(rt, [o.obj for o in items], meta, info.include_object()))
    if output == "metadata":
        partial = [tables.partial_metadata(o.obj) for o in items]
        return _resp(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": partial,
            }
        )
    head = bodies.dumps({"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta})
    body = head[:-1] + b',"items":[' + b",".join(o.raw for o in items) + b"]}"
    return _resp(body)


# --------------------------------------------------------------------------- create / update


async def create(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt, t = info.rt, info.target
    mode = info.field_validation()
    opts = info.write_options()
    body = await info.body()
    decoded = bodies.decode_object(rt, body, info.request.content_type, mode)
    obj = await srv.storage.create(rt, t.namespace, decoded.obj, opts)
    return _resp(opts.encoded or obj, 201, decoded.warnings)


def _check_name(rt: ResourceType, obj: dict[str, Any], name: str, namespace: str | None) -> None:
    meta = obj.setdefault("metadata", {})
    body_name = meta.get("name")
    if not body_name:
        meta["name"] = name
    elif body_name != name:
        raise errors.bad_request(
            f"the name of the object ({body_name}) does not match the name on the URL ({name})"
        )
    if rt.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and namespace and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )


async def update(srv: ApiServer, info: RequestInfo, subresource: str = "") -> web.Response:
    rt, t = info.rt, info.target
    assert t.name is not None
    mode = info.field_validation()
    opts = info.write_options(subresource)
    body = await info.body()
    decoded = bodies.decode_object(rt, body, info.request.content_type, mode)
    _check_name(rt, decoded.obj, t.name, t.namespace)
    explicit = bool((decoded.obj.get("metadata") or {}).get("resourceVersion"))
    obj, _ = await srv.storage.update(
        rt,
        t.namespace,
        t.name,
        lambda old: decoded.obj,
        opts,
        precondition=explicit,
        copy_input=False,
        from_cache=True,  # a stale copy is retried from the store (Storage.update)
    )
    return _resp(opts.encoded or obj, 200, decoded.warnings)


def _decode_patch(body: bytes) -> Any:
    """A patch body as JSON, None when it is not JSON (applying it reports why)."""
    try:
        return bodies.loads(body)
    except Exception:
        return None


_UNDECODED: Any = object()


def _patch_sets_rv(body: bytes, content_type: str, data: Any = _UNDECODED) -> bool:
    """Whether a patch names metadata.resourceVersion (then it is a precondition, as in kube).
    ``data``: the body already decoded (None when it is not JSON)."""
    if data is _UNDECODED:
        data = _decode_patch(body)
    if content_type == "application/json-patch+json":
        return isinstance(data, list) and any(
            isinstance(op, dict) and op.get("path") in ("/metadata/resourceVersion", "/metadata")
            for op in data
        )
    meta = data.get("metadata") if isinstance(data, dict) else None
    return isinstance(meta, dict) and bool(meta.get("resourceVersion"))


def _patches_status_only(rt: ResourceType, data: Any, content_type: str) -> bool:
    """Whether a (strategic) merge patch (``data``, decoded) sets nothing but ``status`` (the
    kubelet's status writes): the rest of the patched object is then the stored one, as typed
    as it was."""
    if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        return False
    if not rt.status_subresource or _status_model(rt) is None:
        return False
    return isinstance(data, dict) and data.keys() == {"status"} and isinstance(data["status"], dict)


_STATUS_MODELS: dict[type, Any] = {}


def _status_model(rt: ResourceType) -> Any:
    """The model of the kind's ``status`` field (None when it has no struct there)."""
    model = _STATUS_MODELS.get(rt.model, _UNSET)
    if model is _UNSET:
        model = None
        for f in msgspec.structs.fields(rt.model):
            if f.encode_name == "status":
                args = [a for a in typing.get_args(f.type) or (f.type,) if a is not type(None)]
                if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
                    model = args[0]
        _STATUS_MODELS[rt.model] = model
    return model


_UNSET: Any = object()


def _typed_status(
    rt: ResourceType, result: dict[str, Any], body: bytes, ct: str, mode: str, warnings: list[str]
) -> dict[str, Any] | None:
    """The typed round trip of a status-only patch's result, done on its status alone (a
    status write keeps the rest of the stored object, which was typed when it was written).
    None sends the patch down the general path: a type error is reported from there, with
    the whole object's field paths."""
    status = result.get("status")
    model = _status_model(rt)
    if not isinstance(status, dict) or model is None:
        return None
    try:
        typed_status = bodies.from_model(codec.convert(status, model))
        unknown = bodies.unknown_fields(status, model)
    except Exception:
        return None
    problems = [f'duplicate field "{d}"' for d in bodies.duplicate_fields(body, ct)]
    problems += [f'unknown field "status.{u}"' for u in unknown]
    warnings[:] = bodies.check_field_validation(rt, problems, mode, patch=True)
    typed = dict(result)
    typed["status"] = typed_status
    return typed


def _patch_error(exc: Exception) -> errors.ApiStatusError:
    code = int(getattr(exc, "code", 400) or 400)
    message = str(getattr(exc, "message", None) or exc)
    return errors.ApiStatusError(code, STATUS_REASONS.get(code, "BadRequest"), message)


async def patch(srv: ApiServer, info: RequestInfo, subresource: str = "") -> web.Response:
    rt, t = info.rt, info.target
    assert t.name is not None
    ct = bodies.media_type(info.request.headers.get("Content-Type"))
    if ct not in bodies.PATCH_TYPES:
        raise errors.ApiStatusError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(bodies.PATCH_TYPES)}",
        )
    mode = info.field_validation()
    body = await info.body()
    if not body.strip():
        raise errors.bad_request("the body of the request is empty")
    warnings: list[str] = []
    if ct == "application/apply-patch+yaml":
        return await _apply(srv, info, body, mode, subresource)
    opts = info.write_options(subresource)
    from kybern.plugins.apiserver import patching

    definition = definition_of(rt)
    data = _decode_patch(body)
    status_only = subresource == "status" and _patches_status_only(rt, data, ct)

    def transform(old: dict[str, Any]) -> dict[str, Any]:
        try:
            result = patching.apply_patch(old, body, ct, definition)
        except patching.PatchError as exc:
            raise _patch_error(exc) from None
        if not isinstance(result, dict):
            raise errors.bad_request("the patch does not produce an object")
        bodies.check_kind(rt, result)
        if status_only:
            typed = _typed_status(rt, result, body, ct, mode, warnings)
            if typed is not None:
                return typed
        problems = [f'unknown field "{u}"' for u in bodies.unknown_fields(result, rt.model)]
        if ct != "application/json-patch+json":
            problems = [f'duplicate field "{d}"' for d in bodies.duplicate_fields(body, ct)] + problems
        warnings[:] = bodies.check_field_validation(rt, problems, mode, patch=True)
        typed = bodies.typed_roundtrip(rt, result)
        return typed

    # apply_patch never modifies the object it patches: it needs no private copy
    obj, _ = await srv.storage.update(
        rt,
        t.namespace,
        t.name,
        transform,
        opts,
        precondition=_patch_sets_rv(body, ct, data),
        copy_input=False,
        from_cache=True,
    )
    return _resp(opts.encoded or obj, 200, warnings)


async def _apply(srv: ApiServer, info: RequestInfo, body: bytes, mode: str, subresource: str) -> web.Response:
    rt, t = info.rt, info.target
    assert t.name is not None
    opts = info.write_options(subresource, operation="Apply", required_manager=True)
    force = info.flag("force")
    from kybern.plugins.apiserver import apply as ssa

    applied = bodies.parse_document(body, "application/apply-patch+yaml")
    if not isinstance(applied, dict):
        raise errors.bad_request(
            "couldn't get version/kind; json parse error: the apply body must be an object"
        )
    bodies.check_kind(rt, applied)
    if not applied.get("kind") or not applied.get("apiVersion"):
        raise errors.bad_request("invalid object type: the apply configuration must set apiVersion and kind")
    _check_name(rt, applied, t.name, t.namespace)
    problems = [f'unknown field "{u}"' for u in bodies.unknown_fields(applied, rt.model)]
    warnings = bodies.check_field_validation(rt, problems, mode, patch=True)
    definition = definition_of(rt)

    def run_apply(live: dict[str, Any] | None) -> dict[str, Any]:
        try:
            result = ssa.server_side_apply(live, applied, opts.manager, force, definition, now_rfc3339())
        except ssa.ApplyConflictError as exc:
            causes = exc.causes
            raise errors.ApiStatusError(
                409,
                "Conflict",
                str(exc),
                {
                    "name": t.name or "",
                    **({"group": rt.group} if rt.group else {}),
                    "kind": rt.plural,
                    "causes": causes,
                },
            ) from None
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from None
        return bodies.typed_roundtrip(rt, result)

    async def create_missing() -> dict[str, Any]:
        if subresource:
            raise errors.not_found(rt, t.name or "")
        obj = run_apply(None)
        return await srv.storage.create(rt, t.namespace, obj, opts)

    explicit = bool((applied.get("metadata") or {}).get("resourceVersion"))
    obj, created = await srv.storage.update(
        rt, t.namespace, t.name, run_apply, opts, create=create_missing, precondition=explicit
    )
    return _resp(opts.encoded or obj, 201 if created else 200, warnings)


# --------------------------------------------------------------------------- delete


async def delete_options(info: RequestInfo) -> dict[str, Any]:
    body = await info.body()
    options: dict[str, Any] = {}
    if body.strip():
        data = bodies.parse_document(body, info.request.content_type)
        if not isinstance(data, dict):
            raise errors.bad_request("the body of a delete request must be a DeleteOptions object")
        kind = data.get("kind")
        if kind not in (None, "", "DeleteOptions"):
            raise errors.bad_request(f'no kind "{kind}" is registered for DeleteOptions')
        options = data
    q = info.request.query
    if "gracePeriodSeconds" in q:
        try:
            options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        except ValueError:
            raise errors.bad_request("gracePeriodSeconds: Invalid value: must be an integer") from None
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q:
        options["orphanDependents"] = q["orphanDependents"].lower() == "true"
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise errors.bad_request("gracePeriodSeconds: Invalid value: must be an integer")
    pre = options.get("preconditions")
    if pre is not None and not isinstance(pre, dict):
        raise errors.bad_request("preconditions: Invalid value: must be an object")
    if options.get("dryRun") and options["dryRun"] != ["All"]:
        raise errors.bad_request('dryRun: Unsupported value: supported values: "All"')
    return options


async def delete(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt, t = info.rt, info.target
    assert t.name is not None
    options = await delete_options(info)
    opts = info.write_options()
    if options.get("dryRun") == ["All"]:
        opts.dry_run = True
    code, body = await srv.storage.delete(rt, t.namespace, t.name, options, opts)
    return _resp(body, code)


async def delete_collection(srv: ApiServer, info: RequestInfo) -> web.Response:
    rt = info.rt
    options = await delete_options(info)
    opts = info.write_options()
    if options.get("dryRun") == ["All"]:
        opts.dry_run = True
    items, list_rv, _, _ = await collect(srv, info)
    deleted = []
    for o in items:
        meta = o.obj.get("metadata") or {}
        try:
            _, body = await srv.storage.delete(rt, meta.get("namespace"), meta.get("name", ""), options, opts)
        except errors.ApiStatusError as exc:
            if exc.code == 404:
                continue
            raise
        deleted.append(body if body.get("kind") == rt.kind else o.obj)
    return _resp(
        {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(list_rv)},
            "items": deleted,
        }
    )
