"""PATCH bodies: RFC 6902 JSON patch, RFC 7386 merge patch and Kubernetes strategic merge patch.

Pure functions over decoded JSON: the API server decodes the live object, calls
:func:`apply_patch`, then validates and stores the result. The strategic merge patch follows
apimachinery's ``strategicpatch`` apply semantics (the half kube-apiserver runs), driven by the
``x-kubernetes-patch-*`` hints of the OpenAPI definitions, so the three-way patches that
``kubectl apply`` computes (with ``$setElementOrder``, ``$retainKeys``, ``$deleteFromPrimitiveList``
and ``$patch`` directives) land exactly as they would on a real cluster.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import jsonpointer
import msgspec
from kybern.client import STATUS_REASONS
from kybern.plugins.apiserver.schemawalk import FieldMeta, Node, has_definition, root

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

#: kube-apiserver's limit on the operations of one JSON patch
MAX_JSON_PATCH_OPERATIONS = 10000

#: what kube-apiserver says for a 422 that carries no detail (NewGenericServerResponse)
INVALID_GENERIC = "the server rejected our request due to an error in our request"
UNSUPPORTED_SMP = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER = "$setElementOrder"

_ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
_ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
_ERR_SET_ORDER = "invalid patch format of setElementOrder list"
_ERR_LIST_OF_LISTS = "lists of lists are not supported"


class PatchError(Exception):
    """A patch that cannot be applied, carrying the HTTP status kube-apiserver would answer.

    ``message`` is the Status message kube sends; ``reason`` its Status reason; ``detail`` the
    underlying library error when kube hides it behind a generic message (worth logging).
    """

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or message
        self.reason = STATUS_REASONS.get(code, "BadRequest")


def apply_patch(original: dict, patch: bytes, content_type: str, definition: str | None) -> dict:
    """Apply a PATCH body to a decoded object and return the patched copy.

    ``content_type`` is the request's media type (parameters are ignored); ``definition`` the
    OpenAPI definition name of the object, needed for strategic merge patch (415 without one).
    ``original`` is never modified.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        result = _apply_json_patch(original, patch)
    elif media == MERGE_PATCH:
        result = _apply_merge_patch(original, patch)
    elif media == STRATEGIC_MERGE_PATCH:
        if not definition or not has_definition(definition):
            raise PatchError(415, UNSUPPORTED_SMP)
        result = strategic_merge(original, _decode_smp(patch), definition)
    else:
        raise PatchError(415, UNSUPPORTED_SMP)
    if not isinstance(result, dict):
        raise PatchError(422, INVALID_GENERIC, "the patched document is not a JSON object")
    return result


# --------------------------------------------------------------------------- JSON patch


def _apply_json_patch(original: dict, body: bytes) -> Any:
    try:
        ops = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PatchError(400, f"error decoding patch: {_json_error(exc)}") from exc
    if not isinstance(ops, list):
        kind = _go_json_kind(ops)
        raise PatchError(
            400,
            f"error decoding patch: json: cannot unmarshal {kind} into Go value of type "
            "[]handlers.jsonPatchOp",
        )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            413,
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    for op in ops:
        if not isinstance(op, dict):
            kind = _go_json_kind(op)
            raise PatchError(400, f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Operation")
    doc: Any = _clone(original)
    for op in ops:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
            # kube wraps every application failure in a generic 422 (the detail stays server-side)
            raise PatchError(422, INVALID_GENERIC, _json_patch_detail(op, exc)) from exc
    return doc


def _json_patch_detail(op: dict, exc: Exception) -> str:
    """The evanphx/json-patch wording of a failed operation, for logs."""
    kind = op.get("op")
    path = op.get("path", "")
    if isinstance(exc, jsonpatch.JsonPatchTestFailed):
        return f"testing value {path} failed: test failed"
    if kind in ("add", "remove", "replace", "move", "copy", "test"):
        return f"{kind} operation does not apply: doc is missing path: {path!s}: missing value ({exc})"
    return f"Unexpected kind: {kind}"


def _go_json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid character at offset {exc.pos}: {exc.msg}"
    return str(exc)


# --------------------------------------------------------------------------- JSON merge patch


def _apply_merge_patch(original: dict, body: bytes) -> Any:
    try:
        # msgspec decodes what the json module does (several times faster); what it refuses
        # (NaN, a BOM, lone surrogates, malformed input) goes to the json module, which either
        # accepts it as before or gives the error message clients know
        patch = msgspec.json.decode(body)
    except (msgspec.DecodeError, ValueError, TypeError):
        try:
            patch = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PatchError(400, "Invalid JSON Patch", _json_error(exc)) from exc
    if patch is None:
        raise PatchError(400, "Invalid JSON Patch")
    if not isinstance(patch, dict):
        kind = _go_json_kind(patch)
        raise PatchError(
            400,
            f"error decoding patch: json: cannot unmarshal {kind} into Go value of type "
            "map[string]interface {}",
        )
    return merge_patch(original, patch)


def _clone(value: Any) -> Any:
    """A deep copy of decoded JSON, several times faster than copy.deepcopy."""
    return msgspec.json.decode(msgspec.json.encode(value))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces.

    Neither input is modified. The result is new along the patched paths only: it shares the
    target's untouched subtrees and the patch's values (callers copy or re-encode the result,
    as the typed round trip of a PATCH does, before they change it)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = value
    return result


# --------------------------------------------------------------------------- strategic merge patch


def _decode_smp(body: bytes) -> dict:
    try:
        patch = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PatchError(400, _json_error(exc)) from exc
    if not isinstance(patch, dict):
        kind = _go_json_kind(patch)
        raise PatchError(
            400, f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
        )
    return patch


def strategic_merge(original: dict, patch: dict, definition: str | None) -> dict:
    """Apply a decoded strategic merge patch; both arguments are left untouched."""
    return _merge_map(_clone(original), _clone(patch), root(definition))


def _bad(message: str) -> PatchError:
    return PatchError(400, message)


def _merge_map(original: dict | None, patch: dict, node: Node | None) -> dict:
    """Merge ``patch`` into ``original`` (both owned by the caller and mutated)."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            del patch[_DIRECTIVE]
            kept, _ = _remove_directives(_discard_nulls(patch))
            return kept
        if directive == "delete":
            return {}
        raise _bad(f"unknown patch type: {directive} in map: {_go_map(patch)}")
    if original is None:
        original = {}

    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, node)

    for key, patch_value in list(patch.items()):
        is_delete_list = False
        if key.startswith(_DELETE_FROM_PRIMITIVE):
            key = _directive_target(key, _DELETE_FROM_PRIMITIVE, _ERR_PRIMITIVE_LIST)
            is_delete_list = True
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original or _kind(original[key]) != _kind(patch_value):
            if not is_delete_list:
                value, keep = _remove_directives(_discard_nulls(patch_value))
                if keep:
                    original[key] = value
                else:
                    original.pop(key, None)
            continue
        meta = node.field(key) if node is not None else None
        current = original[key]
        if isinstance(current, dict):
            if meta is not None and meta.strategy == "replace":
                original[key] = patch_value
            else:
                original[key] = _merge_map(current, patch_value, meta.node if meta else None)
        elif isinstance(current, list):
            original[key] = _merge_list_field(current, patch_value, meta, is_delete_list)
        else:
            value, keep = _remove_directives(patch_value)
            if keep:
                original[key] = value
            else:
                original.pop(key, None)
    return original


def _directive_target(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise _bad(error)
    return rest


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad(_ERR_RETAIN_KEYS)
    allowed = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE, _SET_ELEMENT_ORDER)):
            continue
        if key not in allowed:
            raise _bad(_ERR_RETAIN_KEYS)
    for key in list(original):
        if key not in allowed:
            del original[key]


def _apply_set_element_order(original: dict, patch: dict, node: Node | None) -> None:
    """Process ``$setElementOrder/<list>`` with the list it orders (kube's mergePatchIntoOriginal)."""
    for key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad(_ERR_SET_ORDER)
        field = _directive_target(key, _SET_ELEMENT_ORDER, _ERR_SET_ORDER)
        found_original = field in original
        found_patch = field in patch
        original_list = original.get(field)
        patch_list = patch.get(field)
        if found_original and not isinstance(original_list, list):
            raise _bad(f"expected a slice, but received a {_go_kind(original_list)}")
        if found_patch and not isinstance(patch_list, list):
            raise _bad(f"expected a slice, but received a {_go_kind(patch_list)}")
        meta = node.field(field) if node is not None else None
        merge_key = meta.merge_key if meta else None
        if found_patch:
            _validate_against_order(patch_list, order, merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged, _ = _remove_directives(_discard_nulls(patch_list))
        elif found_original and found_patch:
            merged = _merge_list_field(original_list, patch_list, meta, False)
        else:
            continue
        elements = (original_list or []) + (patch_list or [])
        if not elements or not merged:
            original[field] = merged
            patch.pop(field, None)
            continue
        maps = isinstance(elements[0], dict)
        key_name = merge_key if maps else None
        if maps and not key_name:
            original[field] = merged
            patch.pop(field, None)
            continue
        ordered_items, server_only = _partition(merged, order, key_name)
        original[field] = _normalize_order(ordered_items, server_only, order, original_list or [], key_name)
        patch.pop(field, None)


def _validate_against_order(patch_list: list, order: list, merge_key: str | None) -> None:
    """Patch list items must appear in the $setElementOrder list, in the same relative order."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        items = [i for i in patch_list if not (isinstance(i, dict) and i.get(_DIRECTIVE) == "delete")]
    p = o = 0
    while p < len(items) and o < len(order):
        item = items[p]
        if isinstance(item, dict) and _DIRECTIVE in item:
            p += 1
            continue
        if _order_value(item, merge_key) == _order_value(order[o], merge_key):
            p += 1
        o += 1
    if p < len(items):
        raise _bad(
            f"The order in patch list:\n{patch_list}\n doesn't match {_SET_ELEMENT_ORDER} list:\n{order}\n"
        )


def _order_value(item: Any, merge_key: str | None) -> Any:
    if merge_key:
        if not isinstance(item, dict):
            raise _bad(f"expected a map, but received a {_go_kind(item)}")
        if merge_key not in item:
            raise _bad(f"map: {_go_map(item)} does not contain declared merge key: {merge_key}")
        return item[merge_key]
    return item


def _merge_list_field(current: list, patch_list: list, meta: FieldMeta | None, is_delete_list: bool) -> list:
    """kube's mergeSliceHandler: merge-strategy lists merge, every other list is replaced."""
    if meta is not None and meta.strategy == "merge":
        items = meta.node.items() if meta.node is not None else None
        return _merge_slice(current, patch_list, items, meta.merge_key, is_delete_list)
    if is_delete_list:
        # a deletion list is only ever generated for merging primitive lists; without schema
        # information deleting the named values is the only meaningful reading
        return _delete_from(current, patch_list)
    value, _ = _remove_directives(_discard_nulls(patch_list))
    return value


def _merge_slice(
    original: list, patch: list, items: Node | None, merge_key: str | None, is_delete_list: bool
) -> list:
    if not original and not patch:
        return original
    elements = original + patch
    _check_element_kinds(elements)
    if not isinstance(elements[0], dict):
        if is_delete_list:
            return _delete_from(original, patch)
        merged = _dedupe(original + patch)
        key_name = None
    else:
        if not merge_key:
            raise _bad("cannot merge lists without merge key for type map")
        original, patch = _merge_special_elements(original, patch, merge_key)
        # merge into a copy: the pre-merge list is the "server order" used below
        merged = _merge_by_key(list(original), patch, merge_key, items)
        key_name = merge_key
    in_patch, server_only = _partition(merged, patch, key_name)
    return _normalize_order(in_patch, server_only, patch, original, key_name)


def _check_element_kinds(elements: list) -> None:
    first = _kind(elements[0])
    if first == "list":
        raise PatchError(422, INVALID_GENERIC, _ERR_LIST_OF_LISTS)
    for element in elements[1:]:
        if _kind(element) != first:
            raise _bad(f"list element types are not identical: {elements}")


def _merge_special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Handle list items carrying ``$patch``: delete matching items, or replace the whole list."""
    plain: list = []
    replace = False
    for item in patch:
        directive = item.get(_DIRECTIVE)
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if merge_key not in item:
                raise _bad(f"map: {_go_map(item)} does not contain declared merge key: {merge_key}")
            value = item[merge_key]
            original = [
                o for o in original if not (isinstance(o, dict) and o.get(merge_key, _MISSING) == value)
            ]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _bad("merging lists cannot yet be specified in the patch")
        else:
            raise _bad(f"unknown patch type: {directive} in map: {_go_map(item)}")
    if replace:
        cleaned, _ = _remove_directives(_discard_nulls(plain))
        return cleaned, []
    return original, plain


_MISSING = object()


def _merge_by_key(original: list, patch: list, merge_key: str, items: Node | None) -> list:
    for item in patch:
        if merge_key not in item:
            raise _bad(f"map: {_go_map(item)} does not contain declared merge key: {merge_key}")
        value = item[merge_key]
        for index, existing in enumerate(original):
            if not isinstance(existing, dict):
                raise _bad(f"value for key {index} is not a map.")
            if existing.get(merge_key, _MISSING) == value:
                original[index] = _merge_map(existing, item, items)
                break
        else:
            kept, keep = _remove_directives(_discard_nulls(item))
            if keep:
                original.append(kept)
    return original


def _delete_from(current: list, to_delete: list) -> list:
    return [v for v in current if not _contains(to_delete, v)]


def _contains(values: list, value: Any) -> bool:
    return any(_same(v, value) for v in values)


def _same(a: Any, b: Any) -> bool:
    # JSON true must not equal 1 the way Python's bool/int do
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _dedupe(values: list) -> list:
    out: list = []
    for v in values:
        if not _contains(out, v):
            out.append(v)
    return out


def _partition(merged: list, by: list, merge_key: str | None) -> tuple[list, list]:
    """Split ``merged`` into the items present in ``by`` and the server-only rest."""
    wanted = [_order_value(v, merge_key) for v in by]
    present: list = []
    server_only: list = []
    for item in merged:
        key = _order_value(item, merge_key)
        (present if _contains(wanted, key) else server_only).append(item)
    return present, server_only


def _index(order: list, item: Any, merge_key: str | None) -> int:
    value = item.get(merge_key) if merge_key and isinstance(item, dict) else item
    for i, candidate in enumerate(order):
        other = candidate.get(merge_key) if merge_key and isinstance(candidate, dict) else candidate
        if _same(other, value):
            return i
    return -1


def _sort_by(items: list, order: list, merge_key: str | None) -> list:
    deletions: list = []
    if merge_key:
        kept = []
        for item in items:
            if isinstance(item, dict) and item.get(_DIRECTIVE) == "delete":
                deletions.append(item)
            else:
                kept.append(item)
        items = kept
    ranked = sorted(
        enumerate(items),
        key=lambda pair: (i if (i := _index(order, pair[1], merge_key)) >= 0 else len(order), pair[0]),
    )
    return [item for _, item in ranked] + deletions


def _normalize_order(
    patch_items: list, server_only: list, patch_order: list, server_order: list, merge_key: str | None
) -> list:
    """kube's normalizeElementOrder: patch items in patch order, server-only items in live order,
    interleaved where both positions are known from the live list (patch items first otherwise)."""
    right = _sort_by(patch_items, patch_order, merge_key)
    left = _sort_by(server_only, server_order, merge_key)
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key)
            ri = _index(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _discard_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for v in value.values():
            _discard_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _discard_nulls(v)
    return value


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """Strip directive markers from a value that is taken over whole (kube's removeDirectives).

    A map carrying ``$patch`` is dropped; kybern also drops the other ``$``-prefixed directive
    keys, which kube would leave for strict decoding to reject.
    """
    if isinstance(value, dict):
        if _DIRECTIVE in value:
            return None, False
        for key in list(value):
            if key == _RETAIN_KEYS or key.startswith((_SET_ELEMENT_ORDER, _DELETE_FROM_PRIMITIVE)):
                del value[key]
                continue
            new, keep = _remove_directives(value[key])
            if keep:
                value[key] = new
            else:
                del value[key]
        return value, True
    if isinstance(value, list):
        out = []
        for item in value:
            new, keep = _remove_directives(item)
            if keep:
                out.append(new)
        return out, True
    return value, True


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "null"


def _go_kind(value: Any) -> str:
    return {"map": "map", "list": "slice", "null": "nil"}.get(_kind(value), _kind(value))


def _go_map(value: dict) -> str:
    inner = " ".join(f"{k}:{v}" for k, v in sorted(value.items()))
    return f"map[{inner}]"
