"""Decoding of kubectl's protobuf request bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed clients (``kubectl create namespace|configmap|secret|deployment``, ``kubectl
run``...) send built-in kinds as protobuf, with no JSON fallback, so the API server must read
them. Bodies are the ``k8s\\x00`` envelope around a runtime.Unknown whose ``raw`` is the
object. Field numbers of the messages those commands send are listed here (they are the wire
contract of k8s.io/api's generated.proto); the value types come from the JSON schema, so one
walker decodes every message. A field number this table lacks is a 415, never a silent drop.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from kybern.plugins.apiserver import errors

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."
_BATCH = "io.k8s.api.batch.v1."
_AUTHN = "io.k8s.api.authentication.v1."
_AUTHZ = "io.k8s.api.authorization.v1."

#: message definition -> {field number: JSON field name}
FIELDS: dict[str, dict[int, str]] = {
    _META + "ObjectMeta": {
        1: "name",
        2: "generateName",
        3: "namespace",
        4: "selfLink",
        5: "uid",
        6: "resourceVersion",
        7: "generation",
        8: "creationTimestamp",
        9: "deletionTimestamp",
        10: "deletionGracePeriodSeconds",
        11: "labels",
        12: "annotations",
        13: "ownerReferences",
        14: "finalizers",
        17: "managedFields",
    },
    _META + "OwnerReference": {
        1: "kind",
        3: "name",
        4: "uid",
        5: "apiVersion",
        6: "controller",
        7: "blockOwnerDeletion",
    },
    _META + "LabelSelector": {1: "matchLabels", 2: "matchExpressions"},
    _META + "LabelSelectorRequirement": {1: "key", 2: "operator", 3: "values"},
    _CORE + "Namespace": {1: "metadata", 2: "spec", 3: "status"},
    _CORE + "NamespaceSpec": {1: "finalizers"},
    _CORE + "NamespaceStatus": {1: "phase"},
    _CORE + "ConfigMap": {1: "metadata", 2: "data", 3: "binaryData", 4: "immutable"},
    _CORE + "Secret": {1: "metadata", 2: "data", 3: "type", 4: "stringData", 5: "immutable"},
    _CORE + "ServiceAccount": {
        1: "metadata",
        2: "secrets",
        3: "imagePullSecrets",
        4: "automountServiceAccountToken",
    },
    _CORE + "LocalObjectReference": {1: "name"},
    _CORE + "ObjectReference": {
        1: "kind",
        2: "namespace",
        3: "name",
        4: "uid",
        5: "apiVersion",
        6: "resourceVersion",
        7: "fieldPath",
    },
    _CORE + "Pod": {1: "metadata", 2: "spec", 3: "status"},
    _CORE + "PodStatus": {},
    _CORE + "PodTemplateSpec": {1: "metadata", 2: "spec"},
    _CORE + "PodSpec": {
        1: "volumes",
        2: "containers",
        3: "restartPolicy",
        4: "terminationGracePeriodSeconds",
        5: "activeDeadlineSeconds",
        6: "dnsPolicy",
        7: "nodeSelector",
        8: "serviceAccountName",
        9: "serviceAccount",
        10: "nodeName",
        11: "hostNetwork",
        12: "hostPID",
        13: "hostIPC",
        15: "imagePullSecrets",
        16: "hostname",
        17: "subdomain",
        19: "schedulerName",
        20: "initContainers",
        21: "automountServiceAccountToken",
        24: "priorityClassName",
        25: "priority",
    },
    _CORE + "Container": {
        1: "name",
        2: "image",
        3: "command",
        4: "args",
        5: "workingDir",
        6: "ports",
        7: "env",
        8: "resources",
        9: "volumeMounts",
        13: "terminationMessagePath",
        14: "imagePullPolicy",
        16: "stdin",
        17: "stdinOnce",
        18: "tty",
        20: "terminationMessagePolicy",
    },
    _CORE + "ContainerPort": {1: "name", 2: "hostPort", 3: "containerPort", 4: "protocol", 5: "hostIP"},
    _CORE + "EnvVar": {1: "name", 2: "value"},
    _CORE + "ResourceRequirements": {1: "limits", 2: "requests"},
    _CORE + "Service": {1: "metadata", 2: "spec", 3: "status"},
    _CORE + "ServiceStatus": {},
    _CORE + "ServiceSpec": {
        1: "ports",
        2: "selector",
        3: "clusterIP",
        4: "type",
        5: "externalIPs",
        7: "sessionAffinity",
        10: "externalName",
    },
    _CORE + "ServicePort": {1: "name", 2: "protocol", 3: "port", 4: "targetPort", 5: "nodePort"},
    _APPS + "Deployment": {1: "metadata", 2: "spec", 3: "status"},
    _APPS + "DeploymentStatus": {},
    _APPS + "DeploymentSpec": {
        1: "replicas",
        2: "selector",
        3: "template",
        4: "strategy",
        5: "minReadySeconds",
        6: "revisionHistoryLimit",
        7: "paused",
        9: "progressDeadlineSeconds",
    },
    _APPS + "DeploymentStrategy": {1: "type", 2: "rollingUpdate"},
    _APPS + "RollingUpdateDeployment": {1: "maxUnavailable", 2: "maxSurge"},
    _BATCH + "Job": {1: "metadata", 2: "spec", 3: "status"},
    _BATCH + "JobStatus": {},
    _BATCH + "JobSpec": {
        1: "parallelism",
        2: "completions",
        3: "activeDeadlineSeconds",
        4: "selector",
        5: "manualSelector",
        6: "template",
        7: "backoffLimit",
    },
    _BATCH + "CronJob": {1: "metadata", 2: "spec", 3: "status"},
    _BATCH + "CronJobStatus": {},
    _BATCH + "CronJobSpec": {
        1: "schedule",
        2: "startingDeadlineSeconds",
        3: "concurrencyPolicy",
        4: "suspend",
        5: "jobTemplate",
        6: "successfulJobsHistoryLimit",
        7: "failedJobsHistoryLimit",
    },
    _BATCH + "JobTemplateSpec": {1: "metadata", 2: "spec"},
    # the self-reviews of kubectl auth whoami / can-i (see reviews.py)
    _AUTHN + "SelfSubjectReview": {1: "metadata", 2: "status"},
    _AUTHN + "SelfSubjectReviewStatus": {},
    _AUTHZ + "SelfSubjectAccessReview": {1: "metadata", 2: "spec", 3: "status"},
    _AUTHZ + "SelfSubjectAccessReviewSpec": {1: "resourceAttributes", 2: "nonResourceAttributes"},
    _AUTHZ + "ResourceAttributes": {
        1: "namespace",
        2: "verb",
        3: "group",
        4: "version",
        5: "resource",
        6: "subresource",
        7: "name",
        8: "fieldSelector",
        9: "labelSelector",
    },
    _AUTHZ + "NonResourceAttributes": {1: "path", 2: "verb"},
    _AUTHN + "TokenRequest": {1: "metadata", 2: "spec", 3: "status"},
    _AUTHN + "TokenRequestSpec": {1: "audiences", 3: "boundObjectRef", 4: "expirationSeconds"},
    _AUTHN + "BoundObjectReference": {1: "kind", 2: "apiVersion", 3: "name", 4: "uid"},
    _AUTHN + "TokenRequestStatus": {},
    _AUTHZ + "FieldSelectorAttributes": {1: "rawSelector", 2: "requirements"},
    _AUTHZ + "LabelSelectorAttributes": {1: "rawSelector", 2: "requirements"},
    _META + "FieldSelectorRequirement": {1: "key", 2: "operator", 3: "values"},
    _AUTHZ + "SubjectAccessReviewStatus": {},
    _AUTHZ + "SelfSubjectRulesReview": {1: "metadata", 2: "spec", 3: "status"},
    _AUTHZ + "SelfSubjectRulesReviewSpec": {1: "namespace"},
    _AUTHZ + "SubjectRulesReviewStatus": {},
}

#: optional (pointer) scalar fields, where 0 or false is a value; for the others it means unset
POINTER_FIELDS = frozenset(
    {
        "replicas",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "parallelism",
        "completions",
        "backoffLimit",
        "automountServiceAccountToken",
        "immutable",
        "suspend",
        "priority",
        "deletionGracePeriodSeconds",
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "manualSelector",
        "controller",
        "blockOwnerDeletion",
    }
)

_TIME = {_META + "Time", _META + "MicroTime"}
_INTSTR = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


class _UnsupportedError(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(number, wire type, value) of every field: ints for varints, bytes for the rest."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos : pos + n], pos + n
        elif wt == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        out.append((num, wt, val))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ref(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref")
    if ref is None:
        for k in ("allOf", "oneOf", "anyOf"):
            for sub in prop.get(k) or []:
                if "$ref" in sub:
                    ref = sub["$ref"]
    return ref.rsplit("/", 1)[-1] if ref else None


def _types(prop: dict[str, Any]) -> set[str]:
    t = prop.get("type")
    return set(t) if isinstance(t, list) else ({t} if t else set())


def _scalar(prop: dict[str, Any], wt: int, val: Any, defs: dict[str, Any]) -> Any:
    ref = _ref(prop)
    if ref is not None:
        return _message(ref, val, defs)
    types = _types(prop)
    if "boolean" in types:
        return bool(val)
    if "integer" in types:
        return _signed(val) if wt == 0 else int.from_bytes(val, "little", signed=True)
    if "number" in types:
        return float(val)
    if prop.get("format") == "byte":
        return base64.b64encode(val).decode()
    if isinstance(val, bytes):
        return val.decode("utf-8")
    return val


def _message(name: str, buf: bytes, defs: dict[str, Any]) -> Any:
    if name in _TIME:
        f = {n: v for n, _, v in _fields(buf)}
        if not f.get(1):
            return None  # Go's zero time: unset
        t = dt.datetime.fromtimestamp(_signed(f.get(1, 0)), dt.UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if name == _INTSTR:
        f = {n: v for n, _, v in _fields(buf)}
        return f.get(3, b"").decode() if f.get(1) == 1 else _signed(f.get(2, 0))
    if name == _QUANTITY:
        f = {n: v for n, _, v in _fields(buf)}
        return f.get(1, b"").decode()
    table = FIELDS.get(name)
    if table is None:
        raise _UnsupportedError(name.rsplit(".", 1)[-1])
    if not table:  # a status: clients cannot set it on create, so its content does not matter
        return {}
    props = (defs.get(name) or {}).get("properties") or {}
    out: dict[str, Any] = {}
    for num, wt, val in _fields(buf):
        field = table.get(num)
        if field is None:
            if (wt == 0 and val == 0) or (wt == 2 and not val):
                continue  # Go's zero value of a field this table lacks: the field is unset
            raise _UnsupportedError(f"{name.rsplit('.', 1)[-1]} field {num}")
        if (
            wt == 2
            and not val
            and not _ref(props.get(field) or {})
            and "array" not in _types(props.get(field) or {})
        ):
            continue  # empty strings are Go's "unset"; JSON would have omitted them
        prop = props.get(field) or {}
        types = _types(prop)
        if "array" in types:
            item = prop.get("items") or {}
            if wt == 2 and _types(item) & {"integer", "boolean"}:  # packed
                pos, vals = 0, []
                while pos < len(val):
                    v, pos = _varint(val, pos)
                    vals.append(_scalar(item, 0, v, defs))
                out.setdefault(field, []).extend(vals)
            else:
                out.setdefault(field, []).append(_scalar(item, wt, val, defs))
        elif "object" in types and "additionalProperties" in prop:
            entry = {n: v for n, _, v in _fields(val)}
            key = entry.get(1, b"").decode()
            value_prop = prop["additionalProperties"]
            out.setdefault(field, {})[key] = _scalar(value_prop, 2, entry.get(2, b""), defs)
        else:
            value = _scalar(prop, wt, val, defs)
            if value is None or (value in (0, False) and wt == 0 and field not in POINTER_FIELDS):
                continue
            out[field] = value
    return out


def decode(body: bytes, definition: str | None) -> dict[str, Any]:
    """The JSON-shaped object of a protobuf request body; 400/415 when it cannot be read."""
    if not body.startswith(MAGIC):
        raise errors.bad_request(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        )
    try:
        env = {n: v for n, _, v in _fields(body[len(MAGIC) :])}
        type_meta = {n: v for n, _, v in _fields(env.get(1, b""))}
        api_version = type_meta.get(1, b"").decode()
        kind = type_meta.get(2, b"").decode()
        from kybern.plugins.apiserver.openapi import schema_definitions

        defs = schema_definitions()
        name = definition or ""
        if not name or name not in FIELDS:
            raise _UnsupportedError(kind or "this kind")
        obj = _message(name, env.get(2, b""), defs)
    except _UnsupportedError as exc:
        raise errors.ApiStatusError(
            415,
            "UnsupportedMediaType",
            f"the protobuf encoding of {exc} is not supported by this server; send application/json",
        ) from None
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise errors.bad_request(f"unable to decode protobuf body: {exc}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
