"""Field selectors (``metadata.name=x,status.phase!=Running``), as apimachinery's fields package.

Only ``=``, ``==`` and ``!=`` exist; the keys a kind supports are metadata.name,
metadata.namespace and the kind's ``ResourceType.field_selectors``; anything else is a 400
``field label not supported: X`` (what kubectl users see from a real cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from kybern.plugins.apiserver import errors
from kybern.resources import ResourceType


@dataclass(frozen=True, slots=True)
class Requirement:
    field: str
    op: str  # "=" or "!="
    value: str


def _split_terms(text: str) -> list[str]:
    terms, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if esc:
        raise errors.bad_request(f'invalid field selector: "{text}": unterminated escape sequence')
    terms.append("".join(cur))
    return terms


def _unescape(value: str, whole: str) -> str:
    out, esc = [], False
    for ch in value:
        if esc:
            if ch not in "\\,=!":
                raise errors.bad_request(f"invalid field selector: {whole!r}: invalid escape sequence")
            out.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch in "=!,":
            raise errors.bad_request(f"invalid field selector: {whole!r}: unescaped {ch!r} in value")
        else:
            out.append(ch)
    return "".join(out)


def parse_field_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for term in _split_terms(text):
        if not term:
            continue
        for op, norm in (("!=", "!="), ("==", "="), ("=", "=")):
            idx = _find_unescaped(term, op)
            if idx >= 0:
                key = term[:idx].strip()
                value = _unescape(term[idx + len(op) :], text)
                if not key:
                    raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
                reqs.append(Requirement(key, norm, value))
                break
        else:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
    return reqs


def _find_unescaped(term: str, op: str) -> int:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        if term.startswith(op, i):
            return i
        i += 1
    return -1


FieldMatcher = Callable[[dict[str, Any]], bool]


def field_matcher(rt: ResourceType, reqs: list[Requirement]) -> FieldMatcher | None:
    """A predicate over plain object dicts, or None when there is nothing to check."""
    if not reqs:
        return None
    getters: list[tuple[Callable[[dict[str, Any]], str], Requirement]] = []
    for req in reqs:
        getters.append((_getter(rt, req.field), req))

    def match(obj: dict[str, Any]) -> bool:
        for get, req in getters:
            value = get(obj)
            if (value == req.value) != (req.op == "="):
                return False
        return True

    return match


def _getter(rt: ResourceType, field: str) -> Callable[[dict[str, Any]], str]:
    if field == "metadata.name":
        return lambda o: (o.get("metadata") or {}).get("name") or ""
    if field == "metadata.namespace":
        if not rt.namespaced:
            return lambda o: ""
        return lambda o: (o.get("metadata") or {}).get("namespace") or ""
    custom = rt.field_selectors.get(field)
    if custom is None:
        raise errors.bad_request(f"field label not supported: {field}")

    def get(o: dict[str, Any]) -> str:
        # the kinds' getters read plain JSON as well as models (``dig``): asked first, the
        # dict spares a conversion of the whole object per watch event and listed object
        try:
            value = custom(o)
        except Exception:  # a getter written for the model only
            try:
                value = custom(msgspec.convert(o, rt.model))
            except Exception:  # a getter failing on odd data selects nothing rather than a 500
                return ""
        return "" if value is None else str(value)

    return get
