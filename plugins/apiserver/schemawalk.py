"""Compiled, cached views of the OpenAPI definitions for the patch and apply engines.

Strategic merge patch and server-side apply both descend an object and its schema in step,
asking at every field "which merge strategy, which merge key, which list type". Walking the raw
JSON-schema (resolving ``$ref`` chains, splitting strategy strings) on every request would be
wasteful, so each definition is compiled once into :class:`Node` objects whose per-field answers
are memoised. The graph is built lazily: only the parts of the schema a request touches are
compiled, and recursive definitions (JSONSchemaProps) cost nothing until reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from kybern.models import schema as model_schema

Shape = Literal["struct", "map", "list", "scalar", "any"]
ListType = Literal["atomic", "set", "map"]

_REF_PREFIX = "#/$defs/"


@dataclass(frozen=True, slots=True)
class FieldMeta:
    """What the parent schema says about one of its fields (or about its map values)."""

    node: Node | None
    #: patch strategies without "retainKeys" ("merge", "replace" or empty)
    strategy: str
    retain_keys: bool
    merge_key: str | None
    #: list semantics for server-side apply (explicit x-kubernetes-list-type, else derived)
    list_type: ListType
    list_keys: tuple[str, ...]


_EMPTY_META = FieldMeta(None, "", False, None, "atomic", ())


class Node:
    """One schema position: a struct, a map, a list, a scalar or an opaque value."""

    __slots__ = (
        "_fields",
        "_item_meta",
        "_items",
        "_items_raw",
        "_registry",
        "atomic",
        "props",
        "shape",
        "value_raw",
    )

    def __init__(self, registry: Registry, raw: dict[str, Any]) -> None:
        self._registry = registry
        structural = registry.resolve(raw)
        self.props: dict[str, Any] | None = structural.get("properties")
        additional = structural.get("additionalProperties")
        self.value_raw: dict[str, Any] | None = additional if isinstance(additional, dict) else None
        self._items_raw: dict[str, Any] | None = structural.get("items")
        self._fields: dict[str, FieldMeta] = {}
        self._items: Node | None = None
        self._item_meta: FieldMeta | None = None
        types = structural.get("type")
        type_set = set(types) if isinstance(types, list) else {types} if types else set()
        self.atomic = (
            structural.get("x-kubernetes-map-type") or raw.get("x-kubernetes-map-type")
        ) == "atomic"
        if self.props:
            self.shape: Shape = "struct"
        elif self.value_raw is not None:
            self.shape = "map"
        elif "array" in type_set or self._items_raw is not None:
            self.shape = "list"
        elif "oneOf" in structural or "anyOf" in structural or (type_set - {"null", "object"}):
            self.shape = "scalar"
        else:
            # RawExtension, JSON, preserve-unknown-fields objects: no structure to merge by
            self.shape = "any"

    def field(self, name: str) -> FieldMeta:
        """Metadata of a struct field or of a map's values; an empty FieldMeta if unknown."""
        meta = self._fields.get(name)
        if meta is not None:
            return meta
        if self.shape == "struct":
            raw = self.props.get(name) if self.props else None
            meta = self._registry.meta(raw) if isinstance(raw, dict) else _EMPTY_META
        elif self.shape == "map" and self.value_raw is not None:
            meta = self._registry.meta(self.value_raw)
        else:
            meta = _EMPTY_META
        self._fields[name] = meta
        return meta

    def items(self) -> Node | None:
        """The element schema of a list."""
        if self._items is None and isinstance(self._items_raw, dict):
            self._items = self._registry.node(self._items_raw)
        return self._items

    def item_meta(self) -> FieldMeta | None:
        """The element schema of a list, as the FieldMeta of an (unnamed) field."""
        if self._item_meta is None:
            items = self.items()
            if items is None:
                return None
            self._item_meta = FieldMeta(items, "", False, None, "atomic", ())
        return self._item_meta


class Registry:
    """Compiled nodes of one definitions document, one Node per definition name."""

    def __init__(self, definitions: dict[str, dict[str, Any]]) -> None:
        self.definitions = definitions
        self._by_name: dict[str, Node] = {}

    def resolve(self, raw: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in raw and seen < 32:
            ref = raw["$ref"]
            name = ref[len(_REF_PREFIX) :] if ref.startswith(_REF_PREFIX) else ref
            raw = self.definitions.get(name, {})
            seen += 1
        return raw

    def root(self, definition: str | None) -> Node | None:
        if not definition or definition not in self.definitions:
            return None
        return self._named(definition)

    def _named(self, name: str) -> Node:
        node = self._by_name.get(name)
        if node is None:
            node = Node(self, self.definitions[name])
            self._by_name[name] = node
        return node

    def node(self, raw: dict[str, Any]) -> Node:
        ref = raw.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            name = ref[len(_REF_PREFIX) :]
            if name in self.definitions and "x-kubernetes-map-type" not in raw:
                return self._named(name)
        return Node(self, raw)

    def meta(self, raw: dict[str, Any]) -> FieldMeta:
        node = self.node(raw)
        strategies = [s.strip() for s in str(raw.get("x-kubernetes-patch-strategy") or "").split(",") if s]
        retain = "retainKeys" in strategies
        strategy = next((s for s in strategies if s != "retainKeys"), "")
        merge_key = raw.get("x-kubernetes-patch-merge-key")
        list_type = raw.get("x-kubernetes-list-type")
        keys = tuple(raw.get("x-kubernetes-list-map-keys") or ())
        if list_type not in ("atomic", "set", "map"):
            # kube's OpenAPI -> structured-merge-diff conversion derives list semantics from
            # the patch strategy when no explicit list type is given
            if strategy == "merge" and merge_key:
                list_type, keys = "map", (merge_key,)
            elif strategy == "merge":
                list_type = "set"
            else:
                list_type = "atomic"
        if list_type == "map" and not keys and merge_key:
            keys = (merge_key,)
        return FieldMeta(node, strategy, retain, merge_key, list_type, keys)


@cache
def registry() -> Registry:
    """The process-wide registry over kybern's shipped definitions."""
    return Registry(model_schema.definitions())


def root(definition: str | None) -> Node | None:
    """The compiled node of a top-level definition, None when kybern has no schema for it."""
    return registry().root(definition)


def has_definition(definition: str | None) -> bool:
    return bool(definition) and definition in registry().definitions
