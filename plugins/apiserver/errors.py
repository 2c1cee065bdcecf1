"""Kubernetes Status objects for every failure the API server answers with.

kubectl prints ``Error from server (<Reason>): <message>`` and scripts grep for those words, and
the Python client turns ``code`` into ``ApiException.status``; so each constructor words its
message exactly as kube-apiserver's ``k8s.io/apimachinery/pkg/api/errors`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kybern.resources import FieldError, ResourceType


class ApiStatusError(Exception):
    """Raised anywhere in a request; the app turns it into a Status answer."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        return failure_status(self.code, self.reason, self.message, self.details)


def failure_status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        status["reason"] = reason
    if details:
        status["details"] = details
    status["code"] = code
    return status


def success_status(details: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        status["details"] = details
    return status


def _details(rt: ResourceType | None, name: str | None, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rt is not None:
        if rt.group:
            details["group"] = rt.group
        details["kind"] = kind or rt.plural
    elif kind:
        details["kind"] = kind
    return details


def qualified(rt: ResourceType) -> str:
    return rt.group_resource


def not_found(rt: ResourceType, name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'{qualified(rt)} "{name}" not found', _details(rt, name))


def not_found_plain(message: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", message, {})


def namespace_not_found(namespace: str) -> ApiStatusError:
    return ApiStatusError(
        404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
    )


def already_exists(rt: ResourceType, name: str) -> ApiStatusError:
    return ApiStatusError(
        409, "AlreadyExists", f'{qualified(rt)} "{name}" already exists', _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, reason_text: str | None = None) -> ApiStatusError:
    text = reason_text or (
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(rt)} "{name}": {text}',
        _details(rt, name),
    )


def invalid(rt: ResourceType, name: str, errors: Iterable[FieldError]) -> ApiStatusError:
    errs = list(errors)
    causes = [{"reason": e.type, "message": e.message(), "field": e.field} for e in errs]
    parts = [f"{e.field}: {e.message()}" for e in errs]
    agg = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = causes
    return ApiStatusError(422, "Invalid", f'{kind} "{name}" is invalid: {agg}', details)


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def forbidden(rt: ResourceType | None, name: str, message: str) -> ApiStatusError:
    return ApiStatusError(403, "Forbidden", message, _details(rt, name))


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiStatusError:
    return ApiStatusError(405, "MethodNotAllowed", message, {})


def unauthorized() -> ApiStatusError:
    return ApiStatusError(401, "Unauthorized", "Unauthorized")


def expired(message: str) -> ApiStatusError:
    return ApiStatusError(410, "Expired", message)


def too_large(limit: int) -> ApiStatusError:
    return ApiStatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unsupported_media_type(content_type: str) -> ApiStatusError:
    return ApiStatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f'application/json, application/yaml, application/vnd.kubernetes.protobuf (got "{content_type}")',
    )


def not_acceptable(message: str) -> ApiStatusError:
    return ApiStatusError(406, "NotAcceptable", message)


def service_unavailable(message: str) -> ApiStatusError:
    return ApiStatusError(503, "ServiceUnavailable", message)


def internal(message: str) -> ApiStatusError:
    return ApiStatusError(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


def timeout(message: str) -> ApiStatusError:
    return ApiStatusError(504, "Timeout", message)
