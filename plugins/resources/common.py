"""Helpers shared by the kinds: JSON views of models, printing conventions, field-error shortcuts."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
from kybern.resources import TableColumn

JSON = dict[str, Any]

# --------------------------------------------------------------------------- model <-> JSON


def as_json(obj: Any) -> JSON:
    """The plain JSON form of a model instance (or a dict, returned as is)."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return msgspec.to_builtins(obj)


def write_back(obj: Any, data: JSON) -> None:
    """Replace the fields of ``obj`` in place with those decoded from ``data``.

    Defaulting works on JSON; the API server holds a model instance and expects it mutated.
    """
    if isinstance(obj, dict):
        if obj is not data:
            obj.clear()
            obj.update(data)
        return
    fresh = msgspec.convert(data, type(obj))
    for name in obj.__struct_fields__:
        setattr(obj, name, getattr(fresh, name))


def json_defaulter(fn: Callable[[JSON], None]) -> Callable[[Any], None]:
    """Wrap a defaulting function over JSON into a ResourceType.default over models."""

    def default(obj: Any) -> None:
        data = as_json(obj)
        fn(data)
        write_back(obj, data)

    default.__doc__ = fn.__doc__
    default.__name__ = fn.__name__
    return default


def json_validator(fn: Callable[[JSON, JSON | None], list[Any]]) -> Callable[[Any, Any | None], list[Any]]:
    """Wrap a validation function over JSON into a ResourceType.validate over models."""

    def validate(new: Any, old: Any | None) -> list[Any]:
        return fn(as_json(new), as_json(old) if old is not None else None)

    validate.__doc__ = fn.__doc__
    validate.__name__ = fn.__name__
    return validate


def json_row(fn: Callable[[JSON], list[Any]]) -> Callable[[Any], list[Any]]:
    def row(obj: Any) -> list[Any]:
        return fn(as_json(obj))

    row.__doc__ = fn.__doc__
    row.__name__ = fn.__name__
    return row


def json_key(value: Any) -> bytes | None:
    """The compact JSON of decoded JSON, as a cache key for results that depend on nothing
    else (a pod spec's defaults and validity: every pod of a template has the same spec);
    None when it cannot be encoded. Map key order is part of the key (a different order
    only misses), and JSON keeps 1, 1.0 and true apart."""
    try:
        return _ENCODE(value)
    except (TypeError, ValueError, OverflowError):
        return None


_ENCODE = msgspec.json.Encoder().encode
DECODE = msgspec.json.Decoder().decode


class SpecKey(NamedTuple):
    """A pod spec's cache key: its JSON with the service account token volume's random name
    (``kube-api-access-xxxxx``, one per pod, the only difference between the pods of a
    template when their service account exists) replaced by a placeholder; ``name`` is the
    replaced JSON string (None when nothing was replaced)."""

    key: bytes
    name: bytes | None

    def restore(self, text: bytes) -> bytes:
        """``text`` (JSON kept under this key) with the placeholder back to this spec's name."""
        return text.replace(_TOKEN_PLACEHOLDER, self.name) if self.name is not None else text

    def generalize(self, text: bytes) -> bytes:
        """``text`` (JSON of this spec's result) with this spec's name as the placeholder."""
        return text.replace(self.name, _TOKEN_PLACEHOLDER) if self.name is not None else text


def spec_key(spec: Any) -> SpecKey | None:
    """The key of results that depend on a pod spec alone and stay the same when the token
    volume's name is another such name (defaults, validity): the name is a whole JSON string
    of one shape (valid the same way, no tag, no quantity), so renaming it everywhere in the
    spec renames it everywhere in the result. Left as is when the spec holds two such names
    or the placeholder itself."""
    raw = json_key(spec)
    if raw is None:
        return None
    if b'"kube-api-access-' not in raw or _TOKEN_PLACEHOLDER in raw:
        return SpecKey(raw, None)
    names = set(_TOKEN_NAME.findall(raw))
    if len(names) != 1:
        return SpecKey(raw, None)
    name = names.pop()
    # the mark keeps renamed keys apart from any spec's own JSON (which starts with "{"): a
    # spec that holds the placeholder itself (an invalid name) must not find a renamed entry
    return SpecKey(b"~" + raw.replace(name, _TOKEN_PLACEHOLDER), name)


#: the API server's token volume names (saadmission: "kube-api-access-" + 5 of utilrand's alphabet)
_TOKEN_NAME = re.compile(rb'"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}"')
_TOKEN_PLACEHOLDER = b'"kube-api-access-#####"'


def dig(data: Any, *path: str | int, default: Any = None) -> Any:
    """``data[p0][p1]...`` or ``default`` when any step is missing or null.

    Works on JSON and on model instances alike, so field-selector getters accept both.
    """
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return default
            data = data[step]
        elif isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, msgspec.Struct):
            data = getattr(data, step, None)
        else:
            return default
        if data is None:
            return default
    return data


def ensure(data: JSON, key: str) -> JSON:
    """``data[key]`` as a dict, created when missing or null."""
    value = data.get(key)
    if not isinstance(value, dict):
        value = {}
        data[key] = value
    return value


# --------------------------------------------------------------------------- time


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, the way kubectl prints ages ("5m3s", "3d")."""
    s = int(seconds)  # truncates toward zero like Go's int(d.Seconds())
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = (s % 3600) // 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y{dy}d" if dy else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def since(value: str | None, now: datetime | None = None) -> str:
    """translateTimestampSince: "<unknown>" for a missing time."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())


# --------------------------------------------------------------------------- printing


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: sorted ``k=v`` pairs, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    if not selector:
        return ""
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key") or ""
        op = expr.get("operator") or ""
        values = ",".join(sorted(expr.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, f"{key} {op} ({values})")
        parts.append((key, text))
    parts.sort(key=lambda p: p[0])
    return ",".join(text for _, text in parts)


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: ``<none>`` for an empty or missing selector."""
    return selector_string(selector) or "<none>"


def layout_containers(containers: list[JSON] | None) -> tuple[str, str]:
    """Container names and images, comma-joined, for the wide CONTAINERS/IMAGES columns."""
    containers = containers or []
    return (
        ",".join(c.get("name") or "" for c in containers),
        ",".join(c.get("image") or "" for c in containers),
    )


NAME_COLUMN = TableColumn(
    "Name",
    "string",
    "name",
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
)
AGE_COLUMN = TableColumn(
    "Age",
    "string",
    "",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is "
    "not guaranteed to be set in happens-before order across separate operations. Clients may not set "
    "this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. "
    "Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
)
CONTAINERS_COLUMN = TableColumn("Containers", "string", "", "Names of each container in the template.", 1)
IMAGES_COLUMN = TableColumn("Images", "string", "", "Images referenced by each container in the template.", 1)


def name_of(data: JSON) -> str:
    return dig(data, "metadata", "name", default="")


def age_of(data: JSON) -> str:
    """The Age cell: the creationTimestamp, turned into "5m3s" by the API server.

    Without one, kube prints "<unknown>" (translateTimestampSince of a zero time).
    """
    return dig(data, "metadata", "creationTimestamp", default="") or "<unknown>"


# --------------------------------------------------------------------------- misc


def int_or_string_value(value: Any, total: int, round_up: bool) -> int | None:
    """intstr.GetScaledValueFromIntOrPercent; None when the value is not a valid int or percent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        pct = int(value[:-1])
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    return None


def bool_str(value: bool | None) -> str:
    """printBoolPtr: "<unset>" for a missing bool, else "True"/"False"."""
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels); a missing selector matches nothing."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key") or "", expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


class GoStringMap(dict[str, str]):
    """A label map that prints as Go's ``%#v`` does in field errors: map[string]string{"a":"b"}.

    kube-apiserver renders invalid values with fmt; template labels are the one map users see
    often (``selector does not match template labels``), so they read the same here.
    """

    nil: bool = False

    @classmethod
    def of(cls, labels: Mapping[str, str] | None) -> GoStringMap:
        out = cls(labels or {})
        out.nil = labels is None
        return out

    def __str__(self) -> str:
        if self.nil:
            return "map[string]string(nil)"
        body = ", ".join(f'"{k}":"{self[k]}"' for k in sorted(self))
        return f"map[string]string{{{body}}}"
