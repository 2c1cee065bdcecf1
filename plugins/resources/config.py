"""ConfigMap, Secret and ServiceAccount (core/v1): defaulting, validation, table rows."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kybern.plugins.resources.common import AGE_COLUMN, JSON, NAME_COLUMN, age_of, name_of
from kybern.resources import FieldError, TableColumn
from kybern.validation import forbidden, invalid, is_config_map_key, required, too_long, validate_immutable

MAX_SECRET_SIZE = 1024 * 1024
IMMUTABLE_DETAIL = "field is immutable when `immutable` is set"


def _immutable_errors(new: JSON, old: JSON, keys: tuple[str, ...]) -> list[FieldError]:
    if not old.get("immutable"):
        return []
    errs: list[FieldError] = []
    if not new.get("immutable"):
        errs.append(forbidden("immutable", IMMUTABLE_DETAIL))
    for key in keys:
        if (new.get(key) or {}) != (old.get(key) or {}):
            errs.append(forbidden(key, IMMUTABLE_DETAIL))
    return errs


# --------------------------------------------------------------------------- ConfigMap


def validate_config_map(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    data = new.get("data") or {}
    binary = new.get("binaryData") or {}
    total = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += len((value or "").encode())
    for key, value in binary.items():
        errs.extend(invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key))
        total += len(_b64_decode(value) or b"")
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    if old is not None:
        errs.extend(_immutable_errors(new, old, ("data", "binaryData")))
    return errs


CONFIG_MAP_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Data", "string", "", "Data contains the configuration data."),
    AGE_COLUMN,
)


def config_map_row(cm: JSON) -> list[Any]:
    return [name_of(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age_of(cm)]


# --------------------------------------------------------------------------- Secret


def default_secret(secret: JSON) -> None:
    """Type Opaque; stringData is write-only and merged into data (as the v1 conversion does)."""
    if not secret.get("type"):
        secret["type"] = "Opaque"
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = secret.get("data") or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode((value or "").encode()).decode()
        secret["data"] = data


def _b64_decode(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def validate_secret(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    data = new.get("data") or {}
    decoded: dict[str, bytes] = {}
    total = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        raw = _b64_decode(value)
        if raw is None:
            # never echo secret material back: kube fails decoding before it sees a value
            errs.append(invalid(f"data[{key}]", "<secret contents redacted>", "illegal base64 data"))
            continue
        decoded[key] = raw
        total += len(raw)
    for key, value in (new.get("stringData") or {}).items():
        errs.extend(invalid(f"stringData[{key}]", key, m) for m in is_config_map_key(key))
        decoded[key] = (value or "").encode()
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    kind = new.get("type") or ""
    if kind == "kubernetes.io/service-account-token":
        annotations = (new.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif kind == "kubernetes.io/dockercfg":
        errs.extend(_json_key_errors(decoded, ".dockercfg"))
    elif kind == "kubernetes.io/dockerconfigjson":
        errs.extend(_json_key_errors(decoded, ".dockerconfigjson"))
    elif kind == "kubernetes.io/basic-auth":
        if not decoded.get("username") and not decoded.get("password"):
            errs.append(required("data[username]"))
            errs.append(required("data[password]"))
    elif kind == "kubernetes.io/ssh-auth":
        if not decoded.get("ssh-privatekey"):
            errs.append(required("data[ssh-privatekey]"))
    elif kind == "kubernetes.io/tls":
        for key in ("tls.key", "tls.crt"):
            if key not in decoded:
                errs.append(required(f"data[{key}]"))
    if old is not None:
        errs.extend(validate_immutable(kind, old.get("type") or "", "type"))
        errs.extend(_immutable_errors(new, old, ("data",)))
    return errs


def _json_key_errors(decoded: dict[str, bytes], key: str) -> list[FieldError]:
    if key not in decoded:
        return [required(f"data[{key}]")]
    try:
        json.loads(decoded[key] or b"null")
    except ValueError as err:
        return [invalid(f"data[{key}]", "<secret contents redacted>", str(err))]
    return []


SECRET_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Type", "string", "", "Used to facilitate programmatic handling of secret data."),
    TableColumn("Data", "string", "", "Data contains the secret data."),
    AGE_COLUMN,
)


def secret_row(secret: JSON) -> list[Any]:
    return [name_of(secret), secret.get("type") or "", len(secret.get("data") or {}), age_of(secret)]


# --------------------------------------------------------------------------- ServiceAccount

SERVICE_ACCOUNT_COLUMNS = (
    NAME_COLUMN,
    TableColumn(
        "Secrets",
        "string",
        "",
        "Secrets is a list of the secrets in the same namespace that pods running using this "
        "ServiceAccount are allowed to use.",
    ),
    AGE_COLUMN,
)


def service_account_row(sa: JSON) -> list[Any]:
    return [name_of(sa), len(sa.get("secrets") or []), age_of(sa)]
