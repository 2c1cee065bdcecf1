"""How a plugin describes an API kind to the API server (hook ``kybern_api_resources``).

A :class:`ResourceType` carries everything kube-apiserver keeps per resource: discovery data
(group, version, plural, short names, categories, verbs, subresources), the msgspec model,
and the per-kind strategy (defaulting, validation, table columns, field selectors). The API
server knows no kind by name; the built-in kinds are plugins like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

#: verbs of an ordinary read-write resource, as discovery lists them
STANDARD_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True, slots=True)
class FieldError:
    """One cause of a 422 Invalid, shaped like apimachinery's field.Error.

    ``type`` is the cause reason (``FieldValueRequired``, ``FieldValueInvalid``,
    ``FieldValueNotSupported``, ``FieldValueDuplicate``, ``FieldValueForbidden``,
    ``FieldValueTooLong``); ``detail`` is the human part after the value.
    """

    type: str
    field: str
    detail: str = ""
    value: Any = None

    def message(self) -> str:
        """The text kube-apiserver puts in a cause's ``message``."""
        head = {
            "FieldValueRequired": "Required value",
            "FieldValueInvalid": "Invalid value",
            "FieldValueNotSupported": "Unsupported value",
            "FieldValueDuplicate": "Duplicate value",
            "FieldValueForbidden": "Forbidden",
            "FieldValueTooLong": "Too long",
            "FieldValueTooMany": "Too many",
            "FieldValueNotFound": "Not found",
        }.get(self.type, self.type)
        if self.type in _WITH_VALUE:
            head = f"{head}: {_quote(self.value)}"
        return f"{head}: {self.detail}" if self.detail else head


#: cause types whose message shows the offending value, as field.Error.ErrorBody does
_WITH_VALUE = (
    "FieldValueInvalid",
    "FieldValueNotSupported",
    "FieldValueDuplicate",
    "FieldValueNotFound",
    "FieldValueTooMany",
)


def _quote(value: Any) -> str:
    """A value roughly as Go's field.Error prints it (%q for strings, %#v for string slices/maps)."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    # string slices and string maps print as Go's %#v; struct-like values keep Python's repr
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return str(value)


@dataclass(frozen=True, slots=True)
class TableColumn:
    """A column of ``kubectl get`` output (meta.k8s.io/v1 TableColumnDefinition)."""

    name: str
    type: str = "string"
    format: str = ""
    description: str = ""
    #: 0 shows always, >0 only with ``-o wide``
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Subresource:
    """A subresource such as ``status``, ``scale``, ``log`` or ``binding``.

    ``kind`` is the kind its requests and answers carry (Scale for ``scale``); None
    means the parent's kind.
    """

    name: str
    verbs: tuple[str, ...] = ("get", "patch", "update")
    kind: GroupVersionKind | None = None


#: fills defaults in place, as kube-apiserver's defaulting functions do
Defaulter = Callable[[Any], None]
#: (new object, old object or None on create) -> causes; an empty list means valid
Validator = Callable[[Any, Any | None], list[FieldError]]
#: object -> cells matching ``table_columns`` (NAME first, AGE as a creationTimestamp string)
RowFunction = Callable[[Any], list[Any]]
#: object -> value of one field selector key (e.g. ``status.phase``)
FieldGetter = Callable[[Any], str]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    #: the msgspec Struct objects of this kind decode into (see ``kybern.models``)
    model: type[msgspec.Struct]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[Subresource, ...] = ()
    #: True when ``status`` is a subresource: writes to the main resource keep the old
    #: status, writes to ``/status`` keep everything but status (and metadata changes
    #: other than labels/annotations/finalizers)
    status_subresource: bool = False
    #: top-level fields whose change bumps metadata.generation (spec for most kinds)
    generation_fields: tuple[str, ...] = ("spec",)
    default: Defaulter | None = None
    validate: Validator | None = None
    table_columns: tuple[TableColumn, ...] = ()
    table_row: RowFunction | None = None
    #: field selector keys beyond metadata.name and metadata.namespace
    field_selectors: Mapping[str, FieldGetter] = field(default_factory=dict)
    #: the key segment under /registry/ (default: ``GROUP/PLURAL``, or ``PLURAL`` for core)
    storage_prefix: str | None = None

    @property
    def gvk(self) -> GroupVersionKind:
        return GroupVersionKind(self.group, self.version, self.kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``deployments.apps``, ``pods``: how Status messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key_segment(self) -> str:
        return self.storage_prefix or (f"{self.group}/{self.plural}" if self.group else self.plural)
