"""Shared helpers for the resources tests: run a kind's strategy the way the API server does."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import msgspec
from kybern.resources import FieldError, ResourceType


def decode(rt: ResourceType, data: dict[str, Any]) -> Any:
    return msgspec.convert(data, rt.model)


def defaulted(rt: ResourceType, data: dict[str, Any]) -> dict[str, Any]:
    """Decode, default, and return the JSON the API server would store."""
    obj = decode(rt, data)
    if rt.default is not None:
        rt.default(obj)
    return msgspec.to_builtins(obj)


def errors(rt: ResourceType, new: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """``field: message`` lines, as kubectl prints the causes of a 422."""
    if rt.validate is None:
        return []
    causes: list[FieldError] = rt.validate(decode(rt, new), decode(rt, old) if old is not None else None)
    return [f"{c.field}: {c.message()}" for c in causes]


def valid_defaulted(rt: ResourceType, data: dict[str, Any]) -> dict[str, Any]:
    """Default an object, check it is valid for kybern and for the official 1.32 strict schema."""
    out = defaulted(rt, data)
    assert errors(rt, out) == []
    kubernetes_validate.validate(out, "1.32.0", strict=True)
    return out


def row(rt: ResourceType, data: dict[str, Any]) -> list[Any]:
    assert rt.table_row is not None
    cells = rt.table_row(decode(rt, data))
    assert len(cells) == len(rt.table_columns)
    return cells
