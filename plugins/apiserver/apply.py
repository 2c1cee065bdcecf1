"""Server-side apply and managed-fields tracking, after structured-merge-diff.

Field ownership is kept as sets of paths. A path is a tuple of FieldsV1 path elements
(``f:spec``, ``k:{"name":"nginx"}``, ``v:"example.com/x"``, ``i:0``), so the wire form
``metadata.managedFields[].fieldsV1`` converts to and from a set without loss; a path that has
children in a set and is itself a member is written with a ``"."`` entry, as kube does.

What is kept from structured-merge-diff: apply merges the applied configuration into the live
object (maps recursively, ``x-kubernetes-list-type: map`` lists by key with smd's ordering rule,
sets by value, atomic lists and atomic maps whole); the applier's field set becomes exactly the
set of its configuration; fields it applied last time and no longer applies are removed unless
another manager owns them; a changed field owned by another manager is a conflict unless forced
(forcing moves ownership). Non-apply writes (:func:`track_update`) give the writer every field it
added or changed and take those fields away from everybody else.

Like kube-apiserver, the ``kubectl`` field manager may take over fields recorded in the client-side
apply annotation without a conflict, and its server-side applies rewrite that annotation.

Simplifications: one API version per kind (no conversion of field sets), no cap on the number of
update managers, and on creation struct-typed fields are treated as already present (the way
Go's zero-valued structs are), so they are owned through their children only.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
from kybern.plugins.apiserver.schemawalk import FieldMeta, root

Path = tuple[str, ...]

#: metadata fields structured-merge-diff strips from every field set (kube's stripMeta), plus
#: the deletion markers only the server sets
IGNORED_METADATA = frozenset(
    {
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
#: server-owned metadata an applied configuration cannot set
_CONFIG_DROPPED_METADATA = IGNORED_METADATA - {"name", "namespace"}
#: the field manager kubectl uses for server-side apply, which kube lets take over its own
#: client-side apply fields
KUBECTL_MANAGER = "kubectl"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
#: kube drops the annotation rather than store one larger than this (256 KiB)
LAST_APPLIED_LIMIT = 256 * 1024
#: defaults of list-map key fields that clients may omit (kube's OpenAPI declares them)
_KEY_DEFAULTS = {"protocol": "TCP"}


# --------------------------------------------------------------------------- errors


class _Manager(NamedTuple):
    """A managedFields entry's identity: Update entries are per API version, Apply ones are not.

    (A named tuple: every write builds and hashes a few, and a tuple's hash is computed in C.)
    """

    manager: str
    operation: str
    api_version: str
    subresource: str

    def describe(self) -> str:
        """kube's printManager: how a conflict message names this manager."""
        text = json.dumps(self.manager)
        if self.subresource:
            text = f"{text} with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text = f"{text} using {self.api_version}"
        return text

    def sort_key(self) -> str:
        entry: dict[str, str] = {"manager": self.manager, "operation": self.operation}
        if self.operation == "Update":
            entry["apiVersion"] = self.api_version
        if self.subresource:
            entry["subresource"] = self.subresource
        return json.dumps(entry, separators=(",", ":"))


class ApplyConflictError(Exception):
    """Server-side apply changed fields other managers own (kube answers 409 Conflict).

    ``conflicts`` holds ``(manager, field path)`` pairs; ``causes`` the Status causes kube sends
    (``reason``/``message``/``field``, e.g. ``conflict with "x" using apps/v1`` / ``.spec.replicas``).
    """

    def __init__(self, conflicts: list[tuple[_Manager, Path]]) -> None:
        self.conflicts: list[tuple[str, str]] = [(m.manager, path_string(p)) for m, p in conflicts]
        self.causes: list[dict[str, str]] = [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {m.describe()}",
                "field": path_string(p),
            }
            for m, p in conflicts
        ]
        self.message = _conflict_message(conflicts)
        super().__init__(self.message)


class ApplyError(ValueError):
    """An apply request kube-apiserver rejects outright (400 BadRequest)."""


def _conflict_message(conflicts: list[tuple[_Manager, Path]]) -> str:
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {manager.describe()}: {path_string(path)}"
    by_manager: dict[_Manager, list[Path]] = {}
    for manager, path in conflicts:
        by_manager.setdefault(manager, []).append(path)
    lines: list[str] = []
    for manager in sorted(by_manager, key=_Manager.sort_key):
        lines.append(f"conflicts with {manager.describe()}:")
        lines.extend(f"- {path_string(p)}" for p in by_manager[manager])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


# --------------------------------------------------------------------------- paths and FieldsV1


def path_string(path: Path) -> str:
    """kube's notation of a field path: ``.spec.containers[name="nginx"].image``."""
    out = []
    for element in path:
        tag, body = element[:2], element[2:]
        if tag == "f:":
            out.append("." + body)
        elif tag == "k:":
            try:
                keys = json.loads(body)
                out.append("[" + ",".join(f"{k}={_value_string(v)}" for k, v in sorted(keys.items())) + "]")
            except (ValueError, AttributeError):
                out.append(f"[{body}]")
        elif tag == "v:":
            out.append(f"[={body}]")
        elif tag == "i:":
            out.append(f"[{body}]")
        else:
            out.append(element)
    return "".join(out)


def _value_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _element_order(element: str) -> tuple[int, str]:
    return ({"f:": 0, "k:": 1, "v:": 2, "i:": 3}.get(element[:2], 4), element)


def fields_to_set(fields: dict[str, Any] | None) -> set[Path]:
    """Decode FieldsV1 into a set of paths."""
    out: set[Path] = set()

    def walk(tree: dict[str, Any], prefix: Path) -> None:
        for key, sub in tree.items():
            if key == ".":
                if prefix:
                    out.add(prefix)
                continue
            path = (*prefix, key)
            if isinstance(sub, dict) and sub:
                walk(sub, path)
            else:
                out.add(path)

    if isinstance(fields, dict):
        walk(fields, ())
    return out


def set_to_fields(paths: set[Path] | frozenset[Path]) -> dict[str, Any]:
    """Encode a set of paths as FieldsV1 (sorted like structured-merge-diff writes it)."""
    tree: dict[str, Any] = {}
    #: the tree nodes that are members themselves (by identity: the nodes live as long as
    #: this call), which spares building every prefix tuple again while rendering
    members: set[int] = set()
    for path in paths:
        node = tree
        for element in path:
            child = node.get(element)
            if child is None:
                child = node[element] = {}
            node = child
        members.add(id(node))

    def render(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if id(node) in members:
            out["."] = {}
        if len(node) > 1:
            keys = sorted(node)
            # the rank depends on an element's first two characters only: when the first and
            # the last of the plainly sorted keys share them, all do, and the plain order is
            # the ranked one (the common case: a node of fields only)
            if keys[0][:2] != keys[-1][:2]:
                keys.sort(key=_element_sort_key)
        else:
            keys = node  # type: ignore[assignment]
        for key in keys:
            child = node[key]
            out[key] = render(child) if child else {}
        return out

    return render(tree) if tree else {}


def _element_sort_key(element: str) -> str:
    """:func:`_element_order` as one string (cheaper to build and compare than a tuple)."""
    return _ELEMENT_RANK.get(element[:2], "4") + element


_ELEMENT_RANK = {"f:": "0", "k:": "1", "v:": "2", "i:": "3"}


# --------------------------------------------------------------------------- typed walking


def _child_meta(meta: FieldMeta | None, key: str) -> FieldMeta | None:
    node = meta.node if meta is not None else None
    if node is None or node.shape not in ("struct", "map"):
        return None
    child = node.field(key)
    return child if child.node is not None else None


def _item_meta(meta: FieldMeta | None) -> FieldMeta | None:
    if meta is None or meta.node is None:
        return None
    return meta.node.item_meta()


def _mode(value: Any, meta: FieldMeta | None) -> str:
    """How structured-merge-diff treats a value here: leaf, map (granular), set or assoc list."""
    node = meta.node if meta is not None else None
    if isinstance(value, dict):
        if node is not None and (node.atomic or node.shape in ("any", "scalar", "list")):
            return "leaf"
        return "map"
    if isinstance(value, list):
        if meta is None or meta.list_type == "atomic":
            return "leaf"
        return "set" if meta.list_type == "set" else "assoc"
    return "leaf"


def _is_struct(meta: FieldMeta | None) -> bool:
    return meta is not None and meta.node is not None and meta.node.shape == "struct"


def _item_element(item: Any, meta: FieldMeta | None, mode: str, index: int) -> str:
    if mode == "set":
        return "v:" + _canonical(item)
    keys = meta.list_keys if meta is not None else ()
    if len(keys) == 1 and isinstance(item, dict):  # (the common case: one key, no sorting)
        key = keys[0]
        value = item.get(key)
        if value is not None:
            return "k:" + _canonical({key: value})
        if key in _KEY_DEFAULTS:
            return "k:" + _canonical({key: _KEY_DEFAULTS[key]})
        return f"i:{index}"
    if isinstance(item, dict) and keys:
        values = {}
        for key in sorted(keys):
            if key in item and item[key] is not None:
                values[key] = item[key]
            elif key in _KEY_DEFAULTS:
                values[key] = _KEY_DEFAULTS[key]
        if values:
            return "k:" + _canonical(values)
    return f"i:{index}"


def _canonical(value: Any) -> str:
    """Compact JSON with sorted keys, as FieldsV1 keys spell values."""
    return msgspec.json.encode(value, order="sorted").decode()


def _index_items(items: list, meta: FieldMeta | None, mode: str) -> tuple[list[str], dict[str, Any]]:
    elements: list[str] = []
    by_element: dict[str, Any] = {}
    for index, item in enumerate(items):
        element = _item_element(item, meta, mode, index)
        elements.append(element)
        by_element.setdefault(element, item)
    return elements, by_element


def _to_set(value: Any, meta: FieldMeta | None, path: Path, out: set[Path]) -> None:
    """structured-merge-diff's ToFieldSet: the fields a (partial) object sets."""
    if value is None:
        return
    mode = _mode(value, meta)
    if mode == "leaf":
        if path:
            out.add(path)
        return
    if mode == "map":
        node = meta.node if meta is not None else None
        props = node.props if node is not None and node.shape == "struct" else None
        for key, child in value.items():
            child_path = (*path, "f:" + key)
            _to_set(child, _child_meta(meta, key), child_path, out)
            if not props or key not in props:
                # map entries (unlike struct fields) are members even when they hold a map
                out.add(child_path)
        return
    item_meta = _item_meta(meta)
    for index, item in enumerate(value):
        element_path = (*path, _item_element(item, meta, mode, index))
        out.add(element_path)
        if mode == "assoc":
            _to_set(item, item_meta, element_path, out)


@dataclass(slots=True)
class _Comparison:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list)) and not value)


def _compare(lhs: Any, rhs: Any, meta: FieldMeta | None, path: Path, res: _Comparison, item: bool) -> None:
    """structured-merge-diff's Compare: leaves added/modified/removed, plus added/removed
    map and list nodes themselves (struct fields excepted, see the module docstring)."""
    if lhs is None:
        if rhs is not None:
            _added(rhs, meta, path, res, item)
        return
    if lhs is rhs or (type(lhs) is type(rhs) and lhs == rhs):
        # identical subtrees hold no changes (the common case for most of an object)
        return
    mode = _mode(lhs, meta)
    if rhs is not None and _mode(rhs, meta) != mode:
        mode = "leaf"
    if mode == "map" and rhs is None and lhs and not item and _is_struct(meta):
        # a Go value struct is never missing from a typed object, only empty: a struct that
        # goes with content is owned through its fields, like kube reports it
        rhs = {}
    if mode != "leaf" and not lhs and _empty(rhs):
        mode = "leaf"
    if mode == "leaf":
        if not path:
            return
        if rhs is None:
            res.removed.add(path)
        elif not _equal(lhs, rhs):
            res.modified.add(path)
        return
    if mode == "map":
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        node = meta.node if meta is not None else None
        # the fields' schemas (None where _child_meta answers None for every key)
        field = node.field if node is not None and node.shape in ("struct", "map") else None
        for key, lvalue in left.items():
            rvalue = right.get(key)
            if lvalue is rvalue or (type(lvalue) is type(rvalue) and lvalue == rvalue):
                continue  # (also both None) what the call would find first
            if not isinstance(lvalue, (dict, list)) and not isinstance(rvalue, (dict, list)):
                # two scalars (or one and None) are leaves whatever the schema says
                if lvalue is None:
                    res.added.add((*path, "f:" + key))
                elif rvalue is None:
                    res.removed.add((*path, "f:" + key))
                elif not _equal(lvalue, rvalue):
                    res.modified.add((*path, "f:" + key))
                continue
            child = field(key) if field is not None else None
            if child is not None and child.node is None:
                child = None
            _compare(lvalue, rvalue, child, (*path, "f:" + key), res, False)
        for key, rvalue in right.items():
            if rvalue is None or key in left:
                continue
            if not isinstance(rvalue, (dict, list)):
                res.added.add((*path, "f:" + key))  # a new scalar: a leaf
                continue
            child = field(key) if field is not None else None
            if child is not None and child.node is None:
                child = None
            _added(rvalue, child, (*path, "f:" + key), res, False)
    else:
        item_meta = _item_meta(meta)
        left_elements, left_items = _index_items(lhs, meta, mode)
        right_elements, right_items = _index_items(rhs or [], meta, mode)
        for element in dict.fromkeys(left_elements + right_elements):
            lvalue = left_items.get(element)
            rvalue = right_items.get(element)
            if lvalue is rvalue or (type(lvalue) is type(rvalue) and lvalue == rvalue):
                continue  # what the call would find first
            _compare(lvalue, rvalue, item_meta, (*path, element), res, True)
    if path and rhs is None:
        res.removed.add(path)


def _added(rhs: Any, meta: FieldMeta | None, path: Path, res: _Comparison, item: bool) -> None:
    """:func:`_compare` of a value that is new (``lhs`` None), without the two-sided checks:
    every leaf and every map or list node is added, except a struct that appears with content
    (owned through its fields)."""
    if isinstance(rhs, dict):
        node = meta.node if meta is not None else None
        if not rhs or (node is not None and (node.atomic or node.shape in _NOT_MAPS)):
            if path:
                res.added.add(path)
            return
        field = node.field if node is not None and node.shape in ("struct", "map") else None
        added = res.added
        for key, value in rhs.items():
            if value is None:
                continue
            if not isinstance(value, (dict, list)):
                added.add((*path, "f:" + key))  # a scalar: a leaf whatever the schema says
                continue
            child = field(key) if field is not None else None
            if child is not None and child.node is None:
                child = None
            _added(value, child, (*path, "f:" + key), res, False)
        if path and (item or node is None or node.shape != "struct"):
            res.added.add(path)
        return
    if not isinstance(rhs, list) or not rhs or meta is None or meta.list_type == "atomic":
        if path:  # a leaf, or an empty list (compared as a leaf)
            res.added.add(path)
        return
    mode = "set" if meta.list_type == "set" else "assoc"
    item_meta = _item_meta(meta)
    elements, items = _index_items(rhs, meta, mode)
    for element in dict.fromkeys(elements):
        value = items[element]
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            _added(value, item_meta, (*path, element), res, True)
        else:
            res.added.add((*path, element))  # a scalar item: a leaf
    if path:
        res.added.add(path)


_NOT_MAPS = frozenset({"any", "scalar", "list"})


def _merge(live: Any, config: Any, meta: FieldMeta | None) -> Any:
    """structured-merge-diff's Merge of an applied configuration into the live object.

    Neither input is modified; the result shares subtrees with both (callers own both copies)."""
    if live is None:
        return config
    mode = _mode(config, meta)
    if mode == "leaf" or _mode(live, meta) != mode:
        return config
    if mode == "map":
        out = dict(live)
        for key, value in config.items():
            out[key] = _merge(live.get(key), value, _child_meta(meta, key))
        return out
    return _merge_list(live, config, meta, mode)


def _merge_list(lhs: list, rhs: list, meta: FieldMeta | None, mode: str) -> list:
    """Merge two keyed lists keeping smd's order: live-only items stay where they were, shared
    and new items follow the applied order."""
    item_meta = _item_meta(meta)
    left, left_items = _index_items(lhs, meta, mode)
    right, right_items = _index_items(rhs, meta, mode)
    shared = [e for e in right if e in left_items]
    shared_pos = 0

    def next_shared() -> str | None:
        return shared[shared_pos] if shared_pos < len(shared) else None

    def merged_item(element: str) -> Any:
        if mode == "set":
            return right_items[element]
        return _merge(left_items.get(element), right_items[element], item_meta)

    out: list = []
    done: set[str] = set()
    li = ri = 0
    current_shared = next_shared()
    while li < len(left) or ri < len(right):
        if li < len(left) and ri < len(right):
            element = left[li]
            if element == right[ri]:
                done.add(element)
                out.append(merged_item(element))
                li += 1
                ri += 1
                shared_pos += 1 if current_shared is not None else 0
                current_shared = next_shared()
                continue
            if element in right_items and current_shared is not None and current_shared != element:
                li += 1
                continue
        if li < len(left):
            element = left[li]
            if element not in right_items:
                out.append(lhs[li])
                li += 1
                continue
            if element in done:
                li += 1
                continue
        if ri < len(right):
            element = right[ri]
            done.add(element)
            out.append(merged_item(element))
            ri += 1
            if current_shared is not None and current_shared == element:
                shared_pos += 1
                current_shared = next_shared()
    return out


def _remove_path(value: Any, path: Path, meta: FieldMeta | None) -> None:
    """Remove the field or list item ``path`` points at, if it exists."""
    if not path or not isinstance(value, (dict, list)):
        return
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if not head.startswith("f:"):
            return
        key = head[2:]
        if key not in value:
            return
        if not rest:
            del value[key]
        else:
            _remove_path(value[key], rest, _child_meta(meta, key))
        return
    mode = _mode(value, meta)
    if mode not in ("set", "assoc"):
        return
    for index, item in enumerate(value):
        if _item_element(item, meta, mode, index) == head:
            if not rest:
                del value[index]
            else:
                _remove_path(item, rest, _item_meta(meta))
            return


def _with_named_fields(paths: set[Path]) -> set[Path]:
    """kube's EnsureNamedFieldsAreMembers: a field with owned children counts as owned itself."""
    out = set(paths)
    for path in paths:
        for end in range(1, len(path)):
            if path[end - 1].startswith("f:"):
                out.add(path[:end])
    # metadata itself is never pruned: it holds the server-owned fields nobody manages
    out.discard(("f:metadata",))
    return out


# --------------------------------------------------------------------------- managed fields


@dataclass(slots=True)
class _Entry:
    #: None until needed, when ``raw`` holds them (see :meth:`paths`)
    fields: set[Path] | None
    api_version: str
    time: str | None
    #: the FieldsV1 the fields were parsed from, and how many paths it held: while the set
    #: keeps that size (writes only take paths away from other managers, see track_update),
    #: it is still that FieldsV1, and encoding reuses it instead of rendering the set again
    raw: Any = None
    raw_len: int = -1

    def paths(self) -> set[Path]:
        """The field set, parsed from ``raw`` on first use."""
        if self.fields is None:
            self.fields = fields_to_set(self.raw)
            self.raw_len = len(self.fields)
        return self.fields

    def holds(self, path: Path) -> bool:
        """``path in self.paths()``, answered from the FieldsV1 tree while it is not parsed."""
        if self.fields is not None:
            return path in self.fields
        node = self.raw
        last = len(path) - 1
        for i, element in enumerate(path):
            if not isinstance(node, dict) or element not in node:
                return False
            node = node[element]
            if i < last and not (isinstance(node, dict) and node):
                return False
        # a member unless it is only the parent of other members
        return not (isinstance(node, dict) and node) or "." in node

    def nonempty(self) -> bool:
        if self.fields is not None:
            return bool(self.fields)
        return any(k != "." for k in self.raw)

    def encoded(self) -> Any:
        """The FieldsV1 of the entry: the parsed one while the set has not changed."""
        if self.fields is None or (self.raw is not None and len(self.fields) == self.raw_len):
            return self.raw
        return _encoded_fields(frozenset(self.fields))


def _parse_managed(entries: Any, keep_raw: bool = False) -> dict[_Manager, _Entry]:
    """``keep_raw``: the entries are the stored object's, which this server encoded (so in
    canonical form): an entry whose fields do not change is written back as it was, and its
    field set is only parsed when a write touches it (see :meth:`_Entry.paths`)."""
    managers: dict[_Manager, _Entry] = {}
    if not isinstance(entries, list):
        return managers
    for entry in entries:
        if not isinstance(entry, dict) or (not entry.get("manager") and not entry.get("operation")):
            continue
        operation = entry.get("operation") or "Update"
        api_version = entry.get("apiVersion") or ""
        key = _Manager(
            entry.get("manager") or "",
            operation,
            api_version if operation == "Update" else "",
            entry.get("subresource") or "",
        )
        raw = entry.get("fieldsV1")
        if key in managers:
            managers[key].paths().update(fields_to_set(raw))
            managers[key].raw = None
        elif keep_raw and isinstance(raw, dict):
            managers[key] = _Entry(None, api_version, entry.get("time"), raw)
        else:
            managers[key] = _Entry(fields_to_set(raw), api_version, entry.get("time"))
    return managers


@functools.lru_cache(maxsize=4096)
def _epoch(time: str | None) -> int:
    """Seconds of a managedFields time (cached: every write sorts its entries by time)."""
    if not time:
        return 0
    try:
        return int(dt.datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _encode_managed(managers: dict[_Manager, _Entry]) -> list[dict[str, Any]]:
    """Entries in kube's order: operation, time, manager, apiVersion, subresource."""
    if len(managers) == 1:  # (most objects have one manager: nothing to order)
        ((key, entry),) = managers.items()
        if not entry.nonempty():
            return []
        return [_entry_dict(key, entry.api_version, entry.time, entry.encoded())]
    ordered = sorted(
        ((k, e) for k, e in managers.items() if e.nonempty()),
        key=lambda pair: (
            pair[0].operation,
            _epoch(pair[1].time),
            pair[0].manager,
            pair[1].api_version,
            pair[0].subresource,
        ),
    )
    return [_entry_dict(key, entry.api_version, entry.time, entry.encoded()) for key, entry in ordered]


def _encoded_fields(paths: frozenset[Path]) -> dict[str, Any]:
    """set_to_fields through a cache of JSON texts: every write re-encodes each entry, and
    most entries (a status write leaves the spec owners alone) are the same sets again. A
    set seen for the first time (a pod's first status, with its own IPs) is rendered once and
    returned as rendered."""
    text = _FIELDS_JSON.get(paths)
    if text:
        return msgspec.json.decode(text)  # type: ignore[no-any-return]
    rendered = set_to_fields(paths)
    if text is None:
        # seen for the first time: most such sets are never seen again (a pod's own IPs are
        # in its status owner's set), so only note it and keep its JSON on the second sight
        if len(_FIELDS_JSON) >= _FIELDS_JSON_MAX:
            del _FIELDS_JSON[next(iter(_FIELDS_JSON))]  # the oldest
        _FIELDS_JSON[paths] = b""
    else:
        _FIELDS_JSON[paths] = msgspec.json.encode(rendered)
    return rendered


#: field sets -> their FieldsV1 JSON, or b"" for a set seen once (keys and texts of a few KB at
#: most: a few MB in all)
_FIELDS_JSON: dict[frozenset[Path], bytes] = {}
_FIELDS_JSON_MAX = 1024


def _entry_dict(
    key: _Manager, api_version: str, time: str | None, fields_v1: dict[str, Any]
) -> dict[str, Any]:
    """One managedFields entry in kube's key order."""
    encoded: dict[str, Any] = {"manager": key.manager, "operation": key.operation}
    if api_version:
        encoded["apiVersion"] = api_version
    if time:
        encoded["time"] = time
    encoded["fieldsType"] = "FieldsV1"
    encoded["fieldsV1"] = fields_v1
    if key.subresource:
        encoded["subresource"] = key.subresource
    return encoded


def _store_managed(obj: dict, managers: dict[_Manager, _Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    encoded = _encode_managed(managers)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def _has_status(meta: FieldMeta | None) -> bool:
    node = meta.node if meta is not None else None
    return node is not None and node.shape == "struct" and bool(node.props) and "status" in node.props


def _filter(paths: set[Path], has_status: bool, subresource: str) -> set[Path]:
    """Drop the paths field managers never own (stripped metadata, the other half of a subresource)."""
    out = set()
    for path in paths:
        first = path[0]
        if first in ("f:apiVersion", "f:kind"):
            continue
        if first == "f:metadata" and (len(path) == 1 or path[1][2:] in IGNORED_METADATA):
            continue
        if subresource == "status":
            if first != "f:status":
                continue
        elif has_status and first == "f:status" and subresource == "":
            continue
        out.add(path)
    return out


def _root_meta(definition: str | None) -> FieldMeta | None:
    node = root(definition)
    if node is None:
        return None
    meta = _ROOT_METAS.get(definition)
    if meta is None or meta.node is not node:  # (built again if the schema was compiled again)
        meta = _ROOT_METAS[definition] = FieldMeta(node, "", False, None, "atomic", ())
    return meta


#: definition -> the FieldMeta of its root, kept (one per schema definition at most)
_ROOT_METAS: dict[str | None, FieldMeta] = {}


def _clone(value: Any) -> Any:
    """A deep copy of decoded JSON, several times faster than copy.deepcopy."""
    return msgspec.json.decode(msgspec.json.encode(value))


def _without_managed(obj: dict | None, deep: bool) -> dict | None:
    """The object minus its managed fields; a shallow view unless ``deep``."""
    if obj is None:
        return None
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return _clone(out) if deep else out


def _tracked_view(obj: dict | None, has_status: bool, subresource: str) -> dict | None:
    """A shallow view of ``obj`` without what :func:`_filter` would drop from the comparison
    anyway (apiVersion, kind, managedFields, the metadata no manager owns, the other half of a
    subresource), so tracking a write does not walk fields nobody can own."""
    if obj is None:
        return None
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    out = {k: v for k, v in obj.items() if k not in _UNTRACKED_TOP}
    if has_status and not subresource:
        out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in _UNTRACKED_METADATA}
    return out


_UNTRACKED_TOP = frozenset({"apiVersion", "kind"})
_UNTRACKED_METADATA = IGNORED_METADATA | {"managedFields"}


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value if v is not None]
    return value


# --------------------------------------------------------------------------- public API


def track_update(
    old: dict | None,
    new: dict,
    manager: str,
    operation: str,
    definition: str,
    now: str,
    subresource: str = "",
) -> None:
    """Record a non-apply write in ``new["metadata"]["managedFields"]`` (in place).

    The writer takes every field it added or changed; everybody else loses those fields and
    the ones that were removed. Managed fields sent with the new object replace the live ones
    (kube lets clients rewrite them), except on subresources.
    """
    new_meta = new.setdefault("metadata", {})
    supplied = new_meta.get("managedFields")
    if old is None and not supplied:
        _track_create(new, new_meta, manager, operation, definition, now, subresource)
        return
    meta_root = _root_meta(definition)
    live = ((old or {}).get("metadata") or {}).get("managedFields")
    if supplied and not subresource and supplied != live:
        managers = _parse_managed(supplied)
    else:  # the stored entries (also when a client sends back the ones it read, unchanged)
        managers = _parse_managed(live, keep_raw=True)
    has_status = _has_status(meta_root)
    res = _Comparison()
    _compare(
        _tracked_view(old, has_status, subresource),
        _tracked_view(new, has_status, subresource),
        meta_root,
        (),
        res,
        False,
    )
    if subresource == "status":
        # the view held the status only: every path is a status path, which _filter keeps
        changed = res.added | res.modified
        removed = res.removed
    else:
        changed = _filter(res.added | res.modified, has_status, subresource)
        removed = _filter(res.removed, has_status, subresource)
    api_version = new.get("apiVersion") or (old or {}).get("apiVersion") or ""
    key = _Manager(manager, operation, api_version if operation == "Update" else "", subresource)
    #: the top-level fields the paths are under: an unparsed entry that has none of them
    #: holds none of the paths (a spec owner, on a status write)
    tops = {path[0] for path in changed}
    tops.update(path[0] for path in removed)
    for other, entry in managers.items():
        if entry.fields is None and not any(top in entry.raw for top in tops):
            continue
        # (an entry none of these paths are in stays as it was, unparsed)
        if any(map(entry.holds, removed)):
            entry.paths().difference_update(removed)
        if other != key and any(map(entry.holds, changed)):
            entry.paths().difference_update(changed)
    if changed:
        entry = managers.get(key)
        if entry is None:
            managers[key] = _Entry(changed, api_version, now)  # (a set of its own)
        else:
            if not all(map(entry.holds, changed)):
                fields = entry.paths()
                fields |= changed
                entry.raw = None  # grown (and perhaps shrunk before): render it again
            entry.api_version = api_version
            entry.time = now
    _store_managed(new, managers)


def _track_create(
    new: dict, new_meta: dict, manager: str, operation: str, definition: str, now: str, subresource: str
) -> None:
    """track_update for a new object without managed fields: the writer owns every field it
    set, so the entry depends only on the object's shape, and objects of one shape (the same
    keys, list items and value kinds) share one computed FieldsV1 (see :func:`_shape`)."""
    meta_root = _root_meta(definition)
    has_status = _has_status(meta_root)
    view = _tracked_view(new, has_status, subresource)
    key = (definition, subresource, _shape(view))
    fields = _CREATE_FIELDS.get(key, _MISSING)
    if fields is _MISSING:
        res = _Comparison()
        _compare(None, view, meta_root, (), res, False)
        changed = _filter(res.added | res.modified, has_status, subresource)
        fields = set_to_fields(changed) if changed else None
        if len(_CREATE_FIELDS) >= _CREATE_FIELDS_MAX:
            _CREATE_FIELDS.clear()
        _CREATE_FIELDS[key] = fields
    if fields is None:
        new_meta.pop("managedFields", None)
        return
    api_version = new.get("apiVersion") or ""
    who = _Manager(manager, operation, api_version if operation == "Update" else "", subresource)
    new_meta["managedFields"] = [_entry_dict(who, api_version, now, _clone(fields))]


_MISSING: Any = object()
_CREATE_FIELDS: dict[tuple[str, str, Any], dict[str, Any] | None] = {}
_CREATE_FIELDS_MAX = 1024  # keys hold list contents in full: keep the memory bounded


def _shape(value: Any) -> Any:
    """What a create's field set depends on: map keys, the kind of each value (map, list,
    scalar or null) and list contents in full (their items are identified by key values)."""
    if isinstance(value, dict):
        return tuple([(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("[]", msgspec.json.encode(value))
    return None if value is None else 0


def server_side_apply(
    live: dict | None,
    applied: dict,
    manager: str,
    force: bool,
    definition: str,
    now: str,
    subresource: str = "",
) -> dict:
    """Apply a configuration for ``manager``; returns the new object with its managed fields.

    ``live`` None means the object is being created. On the main resource the configuration's
    status is ignored (the live status is kept); with ``subresource="status"`` only its status
    is applied. Raises ApplyConflictError when the configuration changes fields other managers
    own and ``force`` is false, ApplyError (a ValueError, 400) when it carries managed fields.
    """
    if (applied.get("metadata") or {}).get("managedFields") is not None:
        raise ApplyError("metadata.managedFields must be nil")
    meta_root = _root_meta(definition)
    has_status = _has_status(meta_root)
    config = _strip_nulls(applied)
    config_meta = config.get("metadata")
    if isinstance(config_meta, dict):
        for key in _CONFIG_DROPPED_METADATA:
            config_meta.pop(key, None)
    status_only = subresource == "status"
    if status_only:
        meta = config_meta if isinstance(config_meta, dict) else {}
        config = {
            **{k: config[k] for k in ("apiVersion", "kind") if k in config},
            "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
            **({"status": config["status"]} if "status" in config else {}),
        }
    elif has_status:
        config.pop("status", None)

    api_version = config.get("apiVersion") or (live or {}).get("apiVersion") or ""
    key = _Manager(manager, "Apply", "", subresource)
    base = _without_managed(live, True)
    managers = _parse_managed(((live or {}).get("metadata") or {}).get("managedFields"))

    merged = _merge(base, config, meta_root) if base is not None else config
    applied_set: set[Path] = set()
    _to_set(config, meta_root, (), applied_set)
    applied_set = _filter(applied_set, has_status, subresource)
    previous = managers.get(key)
    managers[key] = _Entry(applied_set, api_version, previous.time if previous else None)

    if previous is not None and previous.paths() and not previous.paths() <= applied_set:
        owned: set[Path] = set()
        for entry in managers.values():
            owned |= entry.paths()
        stale = _with_named_fields(previous.paths()) - _with_named_fields(owned)
        if stale:
            # the merge shares untouched subtrees with ``base``, which must stay as it was
            merged = _clone(merged)
        for path in sorted(stale, key=len):
            if not any(path[:n] in stale for n in range(1, len(path))):
                _remove_path(merged, path, meta_root)

    if has_status and not status_only:
        if base is not None and base.get("status") is not None:
            merged["status"] = base["status"]
        else:
            merged.pop("status", None)

    if base is not None:
        res = _Comparison()
        _compare(base, merged, meta_root, (), res, False)
        changed = _filter(res.added | res.modified, has_status, subresource)
        removed = _filter(res.removed, has_status, subresource)
        conflicts: list[tuple[_Manager, Path]] = []
        for other in sorted(managers, key=_Manager.sort_key):
            if other == key:
                continue
            clashing = managers[other].paths() & changed
            conflicts.extend(
                (other, p) for p in sorted(clashing, key=lambda p: tuple(map(_element_order, p)))
            )
        if conflicts and not force:
            if manager == KUBECTL_MANAGER:
                # kube's lastAppliedManager: kubectl may take over what it applied client-side
                allowed = _last_applied_fields(base, meta_root)
                conflicts = [(m, p) for m, p in conflicts if p not in allowed]
            if conflicts:
                raise ApplyConflictError(conflicts)
        for other, entry in managers.items():
            if other != key:
                entry.paths().difference_update(changed, removed)
        changed_object = not _equal(base, merged)
    else:
        changed_object = True

    if changed_object or previous is None or not managers[key].time:
        managers[key].time = now
    if manager == KUBECTL_MANAGER:
        _sync_last_applied(merged, applied)
    _store_managed(merged, managers)
    return merged


def _last_applied_fields(live: dict, meta_root: FieldMeta | None) -> set[Path]:
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last = json.loads(annotations.get(LAST_APPLIED_ANNOTATION) or "")
    except ValueError:
        return set()
    out: set[Path] = set()
    if isinstance(last, dict):
        _to_set(last, meta_root, (), out)
    return out


def _sync_last_applied(merged: dict, applied: dict) -> None:
    """kube's lastAppliedUpdater: after a kubectl server-side apply, an existing client-side
    apply annotation is rewritten to the applied configuration, so both kinds of apply agree."""
    annotations = (merged.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict) or LAST_APPLIED_ANNOTATION not in annotations:
        return
    snapshot = _clone(applied)
    snapshot_annotations = (snapshot.get("metadata") or {}).get("annotations")
    if isinstance(snapshot_annotations, dict):
        snapshot_annotations.pop(LAST_APPLIED_ANNOTATION, None)
    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) > LAST_APPLIED_LIMIT:
        del annotations[LAST_APPLIED_ANNOTATION]
    else:
        annotations[LAST_APPLIED_ANNOTATION] = text
