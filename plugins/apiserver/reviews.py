"""Who am I and what may I do: the self-review kinds ``kubectl auth whoami`` and ``can-i`` create.

kube-apiserver answers them without storing anything: ``SelfSubjectReview``
(authentication.k8s.io/v1) echoes the requester's user info, ``SelfSubjectAccessReview``
(authorization.k8s.io/v1) says whether one request would be allowed and
``SelfSubjectRulesReview`` lists the rules that apply in a namespace. kybern's identities are
its two static tokens and service account tokens, and it enforces no authorization beyond
authentication: the admin (group ``system:masters``, as k3s' admin), the node agents
(``system:nodes``) and every service account may do anything, so every review answers
"allowed", as it must to tell the truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from kybern.plugins.apiserver import bodies, errors
from kybern.plugins.apiserver.auth import ADMIN_USER, NODE_USER
from kybern.plugins.apiserver.satoken_handlers import USER_INFO_KEY
from kybern.plugins.apiserver.satokens import service_account_groups, split_username
from kybern.resources import FieldError, ResourceType

if TYPE_CHECKING:
    from kybern.plugins.apiserver.app import ApiServer, RequestInfo

AUTHENTICATION = "authentication.k8s.io"
AUTHORIZATION = "authorization.k8s.io"

#: the groups each identity belongs to (kube adds system:authenticated to every user)
USER_GROUPS: dict[str, list[str]] = {
    ADMIN_USER: ["system:masters", "system:authenticated"],
    NODE_USER: ["system:nodes", "system:authenticated"],
}

SERVICE_ACCOUNT_REASON = "kybern authorizes every request of an authenticated service account"

_ALLOWED_REASON = {
    ADMIN_USER: "",  # kube's privileged-group authorizer gives system:masters no reason text
    NODE_USER: "kybern authorizes every request of an authenticated node agent",
}


class _Review(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The shape all three kinds share (spec and status differ only inside)."""

    apiVersion: str | None = None
    kind: str | None = None
    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class SelfSubjectReview(_Review, kw_only=True, omit_defaults=True):
    pass


class SelfSubjectAccessReview(_Review, kw_only=True, omit_defaults=True):
    pass


class SelfSubjectRulesReview(_Review, kw_only=True, omit_defaults=True):
    pass


def _review_type(group: str, kind: str, plural: str, model: type[msgspec.Struct]) -> ResourceType:
    return ResourceType(
        group=group,
        version="v1",
        kind=kind,
        plural=plural,
        singular=plural[:-1],
        namespaced=False,
        model=model,
        verbs=("create",),
        generation_fields=(),
        storage_prefix=f"kybern.io/virtual/{plural}",
    )


REVIEW_TYPES: tuple[ResourceType, ...] = tuple(
    _review_type(group, model.__name__, model.__name__.lower() + "s", model)
    for group, model in (
        (AUTHENTICATION, SelfSubjectReview),
        (AUTHORIZATION, SelfSubjectAccessReview),
        (AUTHORIZATION, SelfSubjectRulesReview),
    )
)
_BY_KIND = {rt.kind: rt for rt in REVIEW_TYPES}


def is_review(rt: ResourceType) -> bool:
    return _BY_KIND.get(rt.kind) is rt


def user_info(user: str) -> dict[str, Any]:
    sa = split_username(user)
    if sa is not None:
        return {"username": user, "groups": service_account_groups(sa[0])}
    return {"username": user, "groups": list(USER_GROUPS.get(user, ["system:authenticated"]))}


def allowed(user: str) -> bool:
    """Whether ``user`` may make any request: true for every authenticated identity, the two
    static tokens and service accounts alike (see module doc)."""
    return user in USER_GROUPS or split_username(user) is not None


async def handle(srv: ApiServer, info: RequestInfo) -> web.Response:
    """POST of a review: answered at once and never stored, so no other verb exists (405)."""
    rt = info.rt
    request = info.request
    if info.target.name is not None or info.target.subresource:
        raise errors.not_found_plain("the server could not find the requested resource")
    if request.method != "POST":
        raise errors.method_not_allowed()
    body = await info.body()
    decoded = bodies.decode_object(rt, body, request.content_type, info.field_validation())
    obj, warnings = decoded.obj, decoded.warnings
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.bad_request(f'{rt.kind} in version "v1" cannot be handled as a {rt.kind}: spec')
    user = info.user
    if rt.kind == "SelfSubjectReview":
        # a service account's full UserInfo (uid, extra) was made when its token was checked
        status: dict[str, Any] = {"userInfo": request.get(USER_INFO_KEY) or user_info(user)}
        out: dict[str, Any] = {"metadata": {}, "status": status}
    elif rt.kind == "SelfSubjectAccessReview":
        _validate_access_review(rt, spec)
        status = {"allowed": allowed(user)}
        reason = _ALLOWED_REASON.get(user, SERVICE_ACCOUNT_REASON if allowed(user) else "")
        if reason:
            status["reason"] = reason
        out = {"metadata": {}, "spec": spec, "status": status}
    else:
        status = _rules(user)
        out = {"metadata": {}, "spec": spec, "status": status}
    meta = obj.get("metadata") or {}
    for key in ("name", "generateName", "labels", "annotations"):
        if key in meta:
            out["metadata"][key] = meta[key]
    response = {"kind": rt.kind, "apiVersion": rt.api_version, **out}
    from kybern.plugins.apiserver.app import json_response

    return json_response(response, 201, warnings)


def impersonation_forbidden(user: str, headers: Mapping[str, str]) -> errors.ApiStatusError:
    """kybern has no per-user authorization, so it cannot act as another user: a request with
    ``Impersonate-*`` headers (``kubectl --as``) is refused as kube refuses a user who may not
    impersonate, instead of silently running with the token's own rights."""
    target = headers.get("Impersonate-User")
    resource, name = ("users", target) if target else ("groups", headers.get("Impersonate-Group", ""))
    return errors.ApiStatusError(
        403,
        "Forbidden",
        f'{resource} "{name}" is forbidden: User "{user}" cannot impersonate resource "{resource}" in '
        'API group "" at the cluster scope: kybern does not support impersonation',
        {"name": name, "kind": resource},
    )


def _validate_access_review(rt: ResourceType, spec: dict[str, Any]) -> None:
    """kube's ValidateSelfSubjectAccessReviewSpec: exactly one kind of attributes."""
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    errs: list[FieldError] = []
    if resource is None and non_resource is None:
        errs.append(
            FieldError(
                "FieldValueInvalid",
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                None,
            )
        )
    elif resource is not None and non_resource is not None:
        errs.append(
            FieldError(
                "FieldValueInvalid",
                "spec.nonResourceAttributes",
                "cannot be specified in combination with resourceAttributes",
                non_resource,
            )
        )
    if errs:
        raise errors.invalid(rt, "", errs)


def _rules(user: str) -> dict[str, Any]:
    if not allowed(user):
        return {"resourceRules": [], "nonResourceRules": [], "incomplete": False}
    return {
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        "incomplete": False,
    }
