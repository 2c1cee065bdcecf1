"""meta.k8s.io/v1 Tables: what ``kubectl get`` prints, built from each kind's columns.

Kinds without ``table_columns`` get kube's default convertor (Name, Created At). Cells of
columns named in :data:`AGE_COLUMNS` arrive as creationTimestamp strings and are rendered as
kubectl's human durations (``5m3s``, ``3d``), exactly as kube-apiserver renders them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import msgspec
from kybern.resources import ResourceType
from loguru import logger

log = logger.bind(component="apiserver")

AGE_COLUMNS = frozenset({"Age", "Last Seen", "Last Schedule", "Duration"})

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
    "not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def age(value: Any, now: dt.datetime | None = None) -> str:
    if not value or not isinstance(value, str):
        return "<unknown>"
    when = parse_time(value)
    if when is None:
        return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return human_duration((now - when).total_seconds())


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    if not rt.table_columns or rt.table_row is None:
        return [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": NAME_DESCRIPTION,
                "priority": 0,
            },
            {
                "name": "Created At",
                "type": "date",
                "format": "",
                "description": CREATED_DESCRIPTION,
                "priority": 0,
            },
        ]
    return [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in rt.table_columns
    ]


def _cells(rt: ResourceType, obj: dict[str, Any], now: dt.datetime) -> list[Any]:
    meta = obj.get("metadata") or {}
    if not rt.table_columns or rt.table_row is None:
        return [meta.get("name", ""), meta.get("creationTimestamp")]
    try:
        cells = list(rt.table_row(msgspec.convert(obj, rt.model)))
    except Exception as exc:  # a row function failing must not fail the whole list
        log.warning("table row for {} {} failed: {}", rt.kind, meta.get("name"), exc)
        cells = [meta.get("name", "")] + ["<error>"] * (len(rt.table_columns) - 1)
    for i, col in enumerate(rt.table_columns):
        if col.name in AGE_COLUMNS and i < len(cells) and isinstance(cells[i], str):
            if parse_time(cells[i]) is not None:
                cells[i] = age(cells[i], now)
    return cells


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def rows(
    rt: ResourceType, objects: Iterable[dict[str, Any]], include: str = "Metadata"
) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for obj in objects:
        row: dict[str, Any] = {"cells": _cells(rt, obj, now)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = partial_metadata(obj)
        out.append(row)
    return out


def table(
    rt: ResourceType,
    objects: Iterable[dict[str, Any]],
    list_meta: dict[str, Any],
    include: str = "Metadata",
    with_columns: bool = True,
) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta}
    result["columnDefinitions"] = column_definitions(rt) if with_columns else None
    result["rows"] = rows(rt, objects, include)
    return result
