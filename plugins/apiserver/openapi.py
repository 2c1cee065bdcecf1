"""OpenAPI v3 documents (``/openapi/v3`` and ``/openapi/v3/<path>``) for the served resources.

kubectl needs them for two things: ``apply``/``create`` with the default ``--validate=strict``
look for the ``fieldValidation`` parameter on each kind's PATCH operation (and fail with
"failed to download openapi" without a document), and ``kubectl explain`` renders the schemas.
Schemas come from the official 1.32 definitions (``kybern.models.schema``), converted from
JSON-schema form (type lists with "null", ``#/$defs/`` refs) to OpenAPI 3.0 as kube-apiserver
serves them. Documents are large, so each is built once per set of types and kept with its
serialized bytes and hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import kybern
from kybern.resources import GroupVersionKind, ResourceType
from loguru import logger

from .discovery import group_versions, subresource_kind

log = logger.bind(component="apiserver.openapi")

__all__ = [
    "openapi_v3_document",
    "openapi_v3_document_bytes",
    "openapi_v3_hash",
    "openapi_v3_index",
    "schema_definitions",
]

_REF_PREFIX = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS = _META + "Status"
_DELETE_OPTIONS = _META + "DeleteOptions"
_PATCH = _META + "Patch"
_API_RESOURCE_LIST = _META + "APIResourceList"
_API_GROUP = _META + "APIGroup"
_API_GROUP_LIST = _META + "APIGroupList"
_API_VERSIONS = _META + "APIVersions"

_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})

#: schemas kube-apiserver has but the definitions subset may lack (all trivial)
_FALLBACK_SCHEMAS: dict[str, dict[str, Any]] = {
    _PATCH: {
        "description": (
            "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."
        ),
        "type": "object",
    },
}


# --- the definitions -------------------------------------------------------------------------


#: definition prefixes the API server serves itself (the self-reviews, see reviews.py) whose
#: schemas the models' subset leaves out; they come from kubernetes-validate's full set
_OWN_PREFIXES = ("io.k8s.api.authentication.v1.", "io.k8s.api.authorization.v1.")


def _validate_definitions() -> dict[str, dict[str, Any]]:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is not None and spec.origin:
        path = (
            Path(spec.origin).parent / "kubernetes-json-schema" / "v1.32.0-local-strict" / "_definitions.json"
        )
        if path.exists():
            defs: dict[str, dict[str, Any]] = json.loads(path.read_text())["$defs"]
            return defs
    return {}


@cache
def schema_definitions() -> dict[str, dict[str, Any]]:
    """The official definitions in their JSON-schema form, keyed by definition name.

    ``kybern.models.schema`` ships them; the kubernetes-validate copy is only a fallback for
    trees where the models package is missing, and the source of the self-review kinds'.
    """
    try:
        from kybern.models import schema
    except ImportError:
        schema = None  # type: ignore[assignment]
    if schema is not None:
        defs = dict(schema.definitions())
        if not any(name.startswith(_OWN_PREFIXES) for name in defs):
            full = _validate_definitions()
            defs.update({k: v for k, v in full.items() if k.startswith(_OWN_PREFIXES) and k not in defs})
        return defs
    full = _validate_definitions()
    if full:
        return full
    log.warning("no OpenAPI definitions available; documents will carry minimal schemas")
    return {}


@cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    defs = schema_definitions()
    for name in sorted(defs):
        for gvk in defs[name].get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def _definition_name(group: str, version: str, kind: str) -> str:
    name = _gvk_index().get((group, version, kind))
    if name is not None:
        return name
    if not group:
        return f"io.k8s.api.core.{version}.{kind}"
    return f"io.k8s.api.{group.split('.')[0]}.{version}.{kind}"


def _convert(schema: Any, refs: set[str], prop_name: str | None = None) -> Any:
    """One JSON-schema node to OpenAPI 3.0, recording referenced definition names in ``refs``."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    ref = schema.get("$ref")
    for key, value in schema.items():
        if key == "$ref":
            continue
        if key == "type":
            types = [value] if isinstance(value, str) else [t for t in value if t != "null"]
            if len(types) == 1:
                out["type"] = types[0]
            elif len(types) > 1:
                out["anyOf"] = [{"type": t} for t in types]
        elif key == "properties":
            out["properties"] = {name: _convert(sub, refs, name) for name, sub in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = _convert(value, refs)
            # ``false`` is kubernetes-validate's strictness, not part of kube's documents
        elif key in ("items", "not"):
            out[key] = _convert(value, refs)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_convert(sub, refs) for sub in value]
        elif key == "enum" and prop_name in ("apiVersion", "kind"):
            continue  # pinned values are kubernetes-validate's addition as well
        else:
            out[key] = value
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        refs.add(name)
        target = {"$ref": _REF_PREFIX + name}
        if not out:
            return target
        # OpenAPI 3.0 ignores siblings of $ref; kube wraps the reference to keep the description
        out["allOf"] = [target]
    return out


@cache
def _converted(name: str) -> tuple[str, ...] | None:
    """Convert one definition into the shared cache; returns the names it references."""
    defs = schema_definitions()
    source = defs.get(name)
    if source is None:
        if name in _FALLBACK_SCHEMAS:
            _CONVERTED[name] = _FALLBACK_SCHEMAS[name]
            return ()
        return None
    refs: set[str] = set()
    _CONVERTED[name] = _convert(source, refs)
    return tuple(sorted(refs))


_CONVERTED: dict[str, dict[str, Any]] = {}


def _closure(roots: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The converted schemas of ``roots`` and everything they reference, by name."""
    out: dict[str, dict[str, Any]] = {}
    todo = [r for r in roots]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        refs = _converted(name)
        if refs is None:
            continue
        out[name] = _CONVERTED[name]
        todo.extend(r for r in refs if r not in out)
    return dict(sorted(out.items()))


# --- paths -----------------------------------------------------------------------------------


def _op_group(group: str) -> str:
    """``apps`` -> ``Apps``; ``coordination.k8s.io`` -> ``Coordination``; core -> ``Core``."""
    if not group:
        return "Core"
    group = group.removesuffix(".k8s.io")
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[.\-]", group) if part)


def _param(name: str, where: str, description: str, schema: dict[str, Any], required: bool = False) -> dict:
    out: dict[str, Any] = {"name": name, "in": where, "description": description, "schema": schema}
    if required:
        out["required"] = True
    return out


_STR = {"type": "string", "uniqueItems": True}
_BOOL = {"type": "boolean", "uniqueItems": True}
_INT = {"type": "integer", "uniqueItems": True}

P_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.", _STR)
P_DRY_RUN = _param(
    "dryRun",
    "query",
    "When present, indicates that modifications should not be persisted. Valid values are: "
    "- All: all dry run stages will be processed",
    _STR,
)
P_FIELD_MANAGER = _param(
    "fieldManager",
    "query",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
    _STR,
)
P_FIELD_VALIDATION = _param(
    "fieldValidation",
    "query",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
    "containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
    _STR,
)
P_FORCE = _param(
    "force",
    "query",
    'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields '
    "owned by other people. Force flag must be unset for non-apply patch requests.",
    _BOOL,
)
P_GRACE = _param(
    "gracePeriodSeconds", "query", "The duration in seconds before the object should be deleted.", _INT
)
P_PROPAGATION = _param(
    "propagationPolicy",
    "query",
    "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
    _STR,
)
P_ORPHAN = _param("orphanDependents", "query", "Deprecated: please use the PropagationPolicy.", _BOOL)
LIST_PARAMS = [
    _param(
        "allowWatchBookmarks",
        "query",
        'allowWatchBookmarks requests watch events with type "BOOKMARK".',
        _BOOL,
    ),
    _param(
        "continue",
        "query",
        "The continue option should be set when retrieving more results from the server.",
        _STR,
    ),
    _param(
        "fieldSelector", "query", "A selector to restrict the list of returned objects by their fields.", _STR
    ),
    _param(
        "labelSelector", "query", "A selector to restrict the list of returned objects by their labels.", _STR
    ),
    _param("limit", "query", "limit is a maximum number of responses to return for a list call.", _INT),
    _param(
        "resourceVersion",
        "query",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
        _STR,
    ),
    _param(
        "resourceVersionMatch",
        "query",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        _STR,
    ),
    _param(
        "sendInitialEvents", "query", "`sendInitialEvents=true` may be set together with `watch=true`.", _BOOL
    ),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", _INT),
    _param(
        "watch", "query", "Watch for changes to the described resources and return them as a stream.", _BOOL
    ),
]


def _content(
    schema_name: str | None, types: Iterable[str] = ("application/json", "application/yaml")
) -> dict:
    schema: dict[str, Any] = {"$ref": _REF_PREFIX + schema_name} if schema_name else {"type": "object"}
    return {t: {"schema": schema} for t in types}


def _responses(schema_name: str | None, codes: Iterable[str] = ("200",)) -> dict[str, Any]:
    text = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: dict[str, Any] = {c: {"description": text[c], "content": _content(schema_name)} for c in codes}
    out["401"] = {"description": "Unauthorized"}
    return out


def _gvk_ext(gvk: GroupVersionKind) -> dict[str, str]:
    return {"group": gvk.group, "version": gvk.version, "kind": gvk.kind}


class _DocBuilder:
    def __init__(self) -> None:
        self.paths: dict[str, dict[str, Any]] = {}
        #: definition names the document's schemas must include (with what they reference)
        self.roots: set[str] = set()
        #: schemas made up for kinds without an official definition
        self.extra: dict[str, dict[str, Any]] = {}

    def schema(self, gvk: GroupVersionKind) -> str:
        name = _definition_name(gvk.group, gvk.version, gvk.kind)
        if name not in schema_definitions() and name not in _FALLBACK_SCHEMAS:
            # a kind without an official schema (e.g. a virtual metrics kind): a plain object
            _CONVERTED.setdefault(
                name,
                {
                    "type": "object",
                    "description": f"{gvk.kind} is served by kybern without a published schema.",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"allOf": [{"$ref": _REF_PREFIX + _META + "ObjectMeta"}]},
                    },
                    "x-kubernetes-group-version-kind": [_gvk_ext(gvk)],
                },
            )
            self.roots.add(_META + "ObjectMeta")
            self.extra[name] = _CONVERTED[name]
            return name
        self.roots.add(name)
        return name

    def op(
        self,
        path: str,
        method: str,
        operation_id: str,
        action: str,
        gvk: GroupVersionKind,
        description: str,
        tag: str,
        *,
        params: list[dict] | None = None,
        body: dict[str, Any] | None = None,
        responses: dict[str, Any],
    ) -> None:
        entry = self.paths.setdefault(path, {})
        operation: dict[str, Any] = {
            "tags": [tag],
            "description": description,
            "operationId": operation_id,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": _gvk_ext(gvk),
        }
        if params:
            operation["parameters"] = params
        if body is not None:
            operation["requestBody"] = body
        entry[method] = operation

    def path_params(self, path: str, namespaced: bool, named: bool, what: str) -> None:
        entry = self.paths.setdefault(path, {})
        params = []
        if named:
            params.append(_param("name", "path", f"name of the {what}", _STR, required=True))
        if namespaced:
            params.append(
                _param(
                    "namespace",
                    "path",
                    "object name and auth scope, such as for teams and projects",
                    _STR,
                    True,
                )
            )
        params.append(P_PRETTY)
        entry["parameters"] = params


def _add_resource(b: _DocBuilder, rt: ResourceType) -> None:
    base = "/api/v1" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    if rt.group == "" and rt.version != "v1":
        base = f"/api/{rt.version}"
    ns = "/namespaces/{namespace}" if rt.namespaced else ""
    collection = f"{base}{ns}/{rt.plural}"
    item = collection + "/{name}"
    gv = f"{_op_group(rt.group)}{rt.version[:1].upper()}{rt.version[1:]}"
    scope = "Namespaced" if rt.namespaced else ""
    tag = f"{rt.group.split('.')[0] if rt.group else 'core'}_{rt.version}"
    kind_schema = b.schema(rt.gvk)
    list_name = _definition_name(rt.group, rt.version, f"{rt.kind}List")
    list_schema = list_name if list_name in schema_definitions() else None
    if list_schema:
        b.roots.add(list_schema)
    verbs = set(rt.verbs)
    json_body = {"required": True, "content": _content(kind_schema, ("application/json", "application/yaml"))}
    delete_body = {"content": _content(_DELETE_OPTIONS, ("application/json", "application/yaml"))}
    b.roots.update({_STATUS, _DELETE_OPTIONS, _PATCH})
    write_params = [P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION]
    patch_params = [P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION, P_FORCE]
    patch_body = {
        "required": True,
        "content": {t: {"schema": {"$ref": _REF_PREFIX + _PATCH}} for t in _PATCH_TYPES},
    }
    gvk = rt.gvk

    if verbs & {"list", "watch", "create", "deletecollection"}:
        b.path_params(collection, rt.namespaced, False, rt.kind)
    if "list" in verbs:
        b.op(
            collection,
            "get",
            f"list{gv}{scope}{rt.kind}",
            "list",
            gvk,
            f"list or watch objects of kind {rt.kind}",
            tag,
            params=LIST_PARAMS,
            responses=_responses(list_schema),
        )
    if "create" in verbs:
        b.op(
            collection,
            "post",
            f"create{gv}{scope}{rt.kind}",
            "post",
            gvk,
            f"create a {rt.kind}",
            tag,
            params=write_params,
            body=json_body,
            responses=_responses(kind_schema, ("200", "201", "202")),
        )
    if "deletecollection" in verbs:
        b.op(
            collection,
            "delete",
            f"deletecollection{gv}{scope}{rt.kind}",
            "deletecollection",
            gvk,
            f"delete collection of {rt.kind}",
            tag,
            params=[P_DRY_RUN, P_GRACE, P_ORPHAN, P_PROPAGATION, *LIST_PARAMS[1:-1]],
            body=delete_body,
            responses=_responses(_STATUS),
        )
    if verbs & {"get", "update", "patch", "delete"}:
        b.path_params(item, rt.namespaced, True, rt.kind)
    if "get" in verbs:
        b.op(
            item,
            "get",
            f"read{gv}{scope}{rt.kind}",
            "get",
            gvk,
            f"read the specified {rt.kind}",
            tag,
            responses=_responses(kind_schema),
        )
    if "update" in verbs:
        b.op(
            item,
            "put",
            f"replace{gv}{scope}{rt.kind}",
            "put",
            gvk,
            f"replace the specified {rt.kind}",
            tag,
            params=write_params,
            body=json_body,
            responses=_responses(kind_schema, ("200", "201")),
        )
    if "patch" in verbs:
        b.op(
            item,
            "patch",
            f"patch{gv}{scope}{rt.kind}",
            "patch",
            gvk,
            f"partially update the specified {rt.kind}",
            tag,
            params=patch_params,
            body=patch_body,
            responses=_responses(kind_schema, ("200", "201")),
        )
    if "delete" in verbs:
        b.op(
            item,
            "delete",
            f"delete{gv}{scope}{rt.kind}",
            "delete",
            gvk,
            f"delete a {rt.kind}",
            tag,
            params=[P_DRY_RUN, P_GRACE, P_ORPHAN, P_PROPAGATION],
            body=delete_body,
            responses=_responses(_STATUS, ("200", "202")),
        )
    if rt.namespaced and "list" in verbs:
        all_ns = f"{base}/{rt.plural}"
        b.path_params(all_ns, False, False, rt.kind)
        b.op(
            all_ns,
            "get",
            f"list{gv}{rt.kind}ForAllNamespaces",
            "list",
            gvk,
            f"list or watch objects of kind {rt.kind}",
            tag,
            params=LIST_PARAMS,
            responses=_responses(list_schema),
        )

    for sub in rt.subresources:
        sub_path = f"{item}/{sub.name}"
        sub_gvk = subresource_kind(rt, sub)
        suffix = sub.name[:1].upper() + sub.name[1:]
        sub_verbs = set(sub.verbs)
        b.path_params(sub_path, rt.namespaced, True, rt.kind)
        if sub.name in _CONNECT_SUBRESOURCES:
            for verb, method in (("get", "get"), ("create", "post")):
                if verb in sub_verbs:
                    b.op(
                        sub_path,
                        method,
                        f"connect{gv}{method.capitalize()}{scope}{rt.kind}{suffix}",
                        "connect",
                        sub_gvk,
                        f"connect {method.upper()} requests to {sub.name} of {rt.kind}",
                        tag,
                        responses={
                            "200": {"description": "OK", "content": {"*/*": {"schema": {"type": "string"}}}},
                            "401": {"description": "Unauthorized"},
                        },
                    )
            continue
        if sub.name == "log":
            if "get" in sub_verbs:
                b.op(
                    sub_path,
                    "get",
                    f"read{gv}{scope}{rt.kind}Log",
                    "get",
                    sub_gvk,
                    f"read log of the specified {rt.kind}",
                    tag,
                    params=[
                        _param(n, "query", d, s)
                        for n, d, s in (
                            ("container", "The container for which to stream logs.", _STR),
                            ("follow", "Follow the log stream of the pod.", _BOOL),
                            (
                                "limitBytes",
                                "Number of bytes to read from the server before terminating.",
                                _INT,
                            ),
                            ("previous", "Return previous terminated container logs.", _BOOL),
                            ("sinceSeconds", "A relative time in seconds before the current time.", _INT),
                            ("sinceTime", "An RFC3339 timestamp from which to show logs.", _STR),
                            ("tailLines", "The number of lines from the end of the logs to show.", _INT),
                            ("timestamps", "Add an RFC3339 timestamp at the beginning of every line.", _BOOL),
                        )
                    ],
                    responses={
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": {"description": "Unauthorized"},
                    },
                )
            continue
        sub_schema = b.schema(sub_gvk)
        sub_body = {
            "required": True,
            "content": _content(sub_schema, ("application/json", "application/yaml")),
        }
        if "get" in sub_verbs:
            b.op(
                sub_path,
                "get",
                f"read{gv}{scope}{rt.kind}{suffix}",
                "get",
                sub_gvk,
                f"read {sub.name} of the specified {rt.kind}",
                tag,
                responses=_responses(sub_schema),
            )
        if "update" in sub_verbs:
            b.op(
                sub_path,
                "put",
                f"replace{gv}{scope}{rt.kind}{suffix}",
                "put",
                sub_gvk,
                f"replace {sub.name} of the specified {rt.kind}",
                tag,
                params=write_params,
                body=sub_body,
                responses=_responses(sub_schema, ("200", "201")),
            )
        if "patch" in sub_verbs:
            b.op(
                sub_path,
                "patch",
                f"patch{gv}{scope}{rt.kind}{suffix}",
                "patch",
                sub_gvk,
                f"partially update {sub.name} of the specified {rt.kind}",
                tag,
                params=patch_params,
                body=patch_body,
                responses=_responses(sub_schema, ("200", "201")),
            )
        if "create" in sub_verbs:
            b.op(
                sub_path,
                "post",
                f"create{gv}{scope}{rt.kind}{suffix}",
                "post",
                sub_gvk,
                f"create {sub.name} of a {rt.kind}",
                tag,
                params=write_params,
                body=sub_body,
                responses=_responses(sub_schema, ("200", "201", "202")),
            )


def _document(paths: dict[str, Any], builder: _DocBuilder) -> dict[str, Any]:
    schemas = _closure(builder.roots)
    for name, schema in builder.extra.items():
        schemas.setdefault(name, schema)
    return {
        "openapi": "3.0.0",
        "info": {
            "title": "Kubernetes",
            "version": f"{kybern.KUBERNETES_VERSION}-kybern+{kybern.__version__}",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                }
            },
        },
        "security": [{"BearerToken": []}],
    }


def _discovery_op(
    b: _DocBuilder, path: str, operation_id: str, description: str, tag: str, schema: str
) -> None:
    b.roots.add(schema)
    name = schema if schema in schema_definitions() else None
    b.paths[path] = {
        "get": {
            "tags": [tag],
            "description": description,
            "operationId": operation_id,
            "responses": _responses(name),
        }
    }


def _build(types: list[ResourceType], path: str) -> dict[str, Any] | None:
    b = _DocBuilder()
    gvs = group_versions(types)
    if path == "api":
        _discovery_op(b, "/api/", "getCoreAPIVersions", "get available API versions", "core", _API_VERSIONS)
        return _document(b.paths, b)
    if path == "apis":
        _discovery_op(b, "/apis/", "getAPIVersions", "get available API versions", "apis", _API_GROUP_LIST)
        return _document(b.paths, b)
    parts = path.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 2 and parts[1] in gvs:
        group = parts[1]
        _discovery_op(
            b,
            f"/apis/{group}/",
            f"get{_op_group(group)}APIGroup",
            "get information of a group",
            group.split(".")[0],
            _API_GROUP,
        )
        return _document(b.paths, b)
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    chosen = sorted(
        (rt for rt in types if rt.group == group and rt.version == version), key=lambda r: r.plural
    )
    if not chosen:
        return None
    prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    tag = f"{group.split('.')[0] if group else 'core'}_{version}"
    _discovery_op(
        b,
        prefix + "/",
        f"get{_op_group(group)}{version.capitalize()}APIResources",
        "get available resources",
        tag,
        _API_RESOURCE_LIST,
    )
    for rt in chosen:
        _add_resource(b, rt)
    return _document(dict(sorted(b.paths.items())), b)


# --- cache and public functions --------------------------------------------------------------


def _signature(types: Iterable[ResourceType]) -> tuple:
    """What documents depend on; equal signatures share cached documents."""
    return tuple(
        sorted(
            (
                rt.group,
                rt.version,
                rt.kind,
                rt.plural,
                rt.namespaced,
                tuple(rt.verbs),
                tuple((s.name, tuple(s.verbs), s.kind) for s in rt.subresources),
            )
            for rt in types
        )
    )


_LOCK = threading.Lock()
#: (signature, path) -> (document, JSON bytes, hash); None when the path does not exist
_DOCS: dict[tuple[tuple, str], tuple[dict[str, Any], bytes, str] | None] = {}


def _entry(types: Iterable[ResourceType], path: str) -> tuple[dict[str, Any], bytes, str] | None:
    types = list(types)
    path = path.strip("/")
    key = (_signature(types), path)
    with _LOCK:
        if key in _DOCS:
            return _DOCS[key]
        doc = _build(types, path)
        if doc is None:
            _DOCS[key] = None
            return None
        body = json.dumps(doc, separators=(",", ":")).encode()
        digest = hashlib.sha512(body).hexdigest().upper()
        _DOCS[key] = (doc, body, digest)
        return _DOCS[key]


def _paths(types: list[ResourceType]) -> list[str]:
    out = ["api", "apis"]
    core_versions = sorted({rt.version for rt in types if not rt.group})
    out += [f"api/{v}" for v in core_versions]
    for group, versions in group_versions(types).items():
        out.append(f"apis/{group}")
        out += [f"apis/{group}/{v}" for v in versions]
    return out


def openapi_v3_document(types: Iterable[ResourceType], path: str) -> dict[str, Any] | None:
    """The document of ``path`` (``api/v1``, ``apis/apps/v1``, ``api``, ``apis``, ``apis/apps``).

    The dict is cached and shared: do not modify it.
    """
    entry = _entry(types, path)
    return entry[0] if entry else None


def openapi_v3_document_bytes(types: Iterable[ResourceType], path: str) -> bytes | None:
    """The same document already serialized as JSON (what the handler should send)."""
    entry = _entry(types, path)
    return entry[1] if entry else None


def openapi_v3_hash(types: Iterable[ResourceType], path: str) -> str | None:
    """The stable digest in the document's ``?hash=`` URL (upper-case hex SHA-512, like kube)."""
    entry = _entry(types, path)
    return entry[2] if entry else None


def openapi_v3_index(types: Iterable[ResourceType]) -> dict[str, Any]:
    """``/openapi/v3``: every document path with its hash-pinned URL."""
    types = list(types)
    paths: dict[str, Any] = {}
    for path in _paths(types):
        entry = _entry(types, path)
        if entry is not None:
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={entry[2]}"}
    return {"paths": paths}
