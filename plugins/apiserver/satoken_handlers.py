"""The ``serviceaccounts/token`` subresource (TokenRequest) and the store half of token checks.

kube-apiserver's TokenRequest REST storage, for what kubectl (``kubectl create token``) and the
node agent (projected ``serviceAccountToken`` volumes) ask: audiences (the server's own by
default), ``expirationSeconds`` (600 s to 2^32 s, 3600 by default) and a ``boundObjectRef`` to a
Pod or Secret of the namespace or a Node, whose deletion ends the token. A token is accepted while its
service account (and bound object) exists with the uid it names, as kube's legacy validator
does; an object deleted gracefully keeps its tokens for :data:`satokens.DELETION_GRACE_S` more.
"""

from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from kybern.plugins.apiserver import bodies, errors, protobuf
from kybern.plugins.apiserver.satokens import (
    DEFAULT_EXPIRATION_S,
    DELETION_GRACE_S,
    MAX_EXPIRATION_S,
    MIN_EXPIRATION_S,
    BoundObject,
    TokenIdentity,
    rfc3339,
)
from kybern.resources import FieldError, ResourceType

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer, RequestInfo

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
#: boundObjectRef kinds -> their core/v1 plural
_BINDABLE = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}
#: request attribute holding the full UserInfo of a service account request (SelfSubjectReview)
USER_INFO_KEY = "kybern.user_info"


def is_token_request(rt: ResourceType, subresource: str) -> bool:
    return subresource == "token" and rt.group == "" and rt.plural == "serviceaccounts"


def _invalid(name: str, errs: list[FieldError]) -> errors.ApiStatusError:
    parts = [f"{e.field}: {e.message()}" for e in errs]
    agg = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {
        "name": name,
        "group": GROUP,
        "kind": "TokenRequest",
        "causes": [{"reason": e.type, "message": e.message(), "field": e.field} for e in errs],
    }
    return errors.ApiStatusError(422, "Invalid", f'TokenRequest.{GROUP} "{name}" is invalid: {agg}', details)


def _validate(name: str, spec: dict[str, Any]) -> tuple[list[str], int, dict[str, Any] | None]:
    errs: list[FieldError] = []
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.bad_request("TokenRequest: spec.audiences must be a list of strings")
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        seconds = DEFAULT_EXPIRATION_S
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise errors.bad_request("TokenRequest: spec.expirationSeconds must be an integer")
    if seconds < MIN_EXPIRATION_S:
        errs.append(
            FieldError(
                "FieldValueInvalid",
                "spec.expirationSeconds",
                "may not specify a duration less than 10 minutes",
                seconds,
            )
        )
    elif seconds > MAX_EXPIRATION_S:
        errs.append(
            FieldError(
                "FieldValueInvalid",
                "spec.expirationSeconds",
                "may not specify a duration larger than 2^32 seconds",
                seconds,
            )
        )
    ref = spec.get("boundObjectRef")
    if ref is not None and not isinstance(ref, dict):
        raise errors.bad_request("TokenRequest: spec.boundObjectRef must be an object")
    if errs:
        raise _invalid(name, errs)
    return list(audiences), seconds, ref


async def _bound_object(
    srv: ApiServer, namespace: str, sa_name: str, ref: dict[str, Any]
) -> tuple[BoundObject, dict[str, str]]:
    kind, api_version, name = ref.get("kind") or "", ref.get("apiVersion") or "", ref.get("name") or ""
    if kind not in _BINDABLE or api_version != "v1":
        raise errors.bad_request(f"cannot bind token for object of type {api_version}, Kind={kind}")
    if not name:
        raise errors.bad_request("TokenRequest: spec.boundObjectRef.name is required")
    rt = srv.registry.lookup("", "v1", _BINDABLE[kind])
    if rt is None:
        raise errors.bad_request(f"cannot bind token for object of type {api_version}, Kind={kind}")
    obj = await srv.storage.get(rt, None if kind == "Node" else namespace, name)
    uid = (obj.get("metadata") or {}).get("uid", "")
    if ref.get("uid") and ref["uid"] != uid:
        raise errors.ApiStatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {kind} "{name}": the UID in the bound object reference '
            f"({ref['uid']}) does not match the UID in record. The object might have been deleted and "
            "then recreated",
            {"name": name, "kind": kind},
        )
    node: dict[str, str] = {}
    if kind == "Pod":
        spec = obj.get("spec") or {}
        if (spec.get("serviceAccountName") or "default") != sa_name:
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{sa_name}" to pod running with different '
                "serviceaccount name."
            )
        node_name = spec.get("nodeName")
        node_rt = srv.registry.lookup("", "v1", "nodes")
        if node_name and node_rt is not None:
            node_obj = await srv.storage.get_or_none(node_rt, None, node_name)
            node = {"name": node_name}
            if node_obj is not None:
                node["uid"] = (node_obj.get("metadata") or {}).get("uid", "")
    return BoundObject(kind, name, uid), node


async def token_request(srv: ApiServer, info: RequestInfo) -> web.Response:
    """POST serviceaccounts/NAME/token: a signed token for the service account (201)."""
    if info.request.method != "POST":
        raise errors.method_not_allowed()
    signer = srv.token_signer
    if signer is None:
        raise errors.service_unavailable("service account tokens are not configured")
    namespace, name = info.target.namespace or "", info.target.name or ""
    body = await info.body()
    if bodies.media_type(info.request.content_type) == protobuf.CONTENT_TYPE:  # kubectl create token
        data: Any = protobuf.decode(body, "io.k8s.api.authentication.v1.TokenRequest")
    else:
        data = bodies.parse_document(body, info.request.content_type)
    if not isinstance(data, dict) or data.get("kind") not in (None, "", "TokenRequest"):
        raise errors.bad_request("the body must be a TokenRequest object")
    spec = data.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.bad_request("TokenRequest: spec must be an object")
    audiences, seconds, ref = _validate(name, spec)
    sa = await srv.storage.get(info.rt, namespace, name)
    sa_uid = (sa.get("metadata") or {}).get("uid", "")
    bound, node = (await _bound_object(srv, namespace, name, ref)) if ref else (None, {})
    if not audiences:
        audiences = list(signer.api_audiences)
    token, exp = signer.issue(namespace, name, sa_uid, audiences, seconds, bound, node or None)
    out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds}
    out_spec["boundObjectRef"] = (
        {"kind": bound.kind, "apiVersion": "v1", "name": bound.name, "uid": bound.uid} if bound else None
    )
    meta = {"name": name, "namespace": namespace, "creationTimestamp": rfc3339(int(time.time()))}
    answer = {
        "kind": "TokenRequest",
        "apiVersion": API_VERSION,
        "metadata": meta,
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(exp)},
    }
    from kybern.plugins.apiserver.app import json_response

    return json_response(answer, 201)


# --------------------------------------------------------------------------- authentication


def _deleted_long_ago(obj: dict[str, Any], now: float) -> bool:
    stamp = (obj.get("metadata") or {}).get("deletionTimestamp")
    if not stamp:
        return False
    try:
        when = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return False
    return when < now - DELETION_GRACE_S


async def _current(
    srv: ApiServer, plural: str, namespace: str | None, name: str, uid: str
) -> dict[str, Any] | None:
    """The object if it exists with ``uid``: the watch cache first (no store round trip per
    request), the store when the cache has not got it (just created) or has another uid."""
    rt = srv.registry.lookup("", "v1", plural)
    if rt is None:
        return None
    cached = srv.cache.cache_for(rt).objects.get(srv.registry.key(rt, namespace, name))
    if cached is not None and (cached.obj.get("metadata") or {}).get("uid") == uid:
        return cached.obj
    obj = await srv.storage.get_or_none(rt, namespace, name)
    if obj is None or (obj.get("metadata") or {}).get("uid") != uid:
        return None
    return obj


async def authenticate(srv: ApiServer, token: str) -> TokenIdentity | None:
    """The identity of a valid service account token, or None (the request gets 401)."""
    signer = srv.token_signer
    if signer is None:
        return None
    ident = signer.verify(token)
    if ident is None:
        return None
    now = time.time()
    sa = await _current(srv, "serviceaccounts", ident.namespace, ident.name, ident.uid)
    if sa is None or _deleted_long_ago(sa, now):
        return None
    if ident.bound is not None:
        obj = await _current(
            srv,
            _BINDABLE[ident.bound.kind],
            None if ident.bound.kind == "Node" else ident.namespace,
            ident.bound.name,
            ident.bound.uid,
        )
        if obj is None or _deleted_long_ago(obj, now):
            return None
    return ident
