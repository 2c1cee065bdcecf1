"""Label selectors as apimachinery's ``labels`` package parses and matches them.

The API server evaluates a selector against every object of a list or watch, so parsing
turns each requirement into a small closure once and matching is a loop over those.
Syntax: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
``a>1``, ``a<1``, joined with commas (all must hold).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVERYTHING",
    "NOTHING",
    "Requirement",
    "Selector",
    "parse_selector",
    "selector_from_dict",
    "selector_from_set",
]

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

#: operators as they appear in a requirement's canonical string
_OPS_TEXT = {
    "=": "=",
    "==": "==",
    "!=": "!=",
    "in": " in ",
    "notin": " notin ",
    "gt": ">",
    "lt": "<",
}


def _key_errors(key: str) -> list[str]:
    """Problems with a label key (a qualified name: optional DNS prefix, '/', name)."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        if len(prefix) > 253:
            return ["prefix part must be no more than 253 characters"]
        if not _DNS1123_SUBDOMAIN.match(prefix):
            return [
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character"
            ]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character with an optional DNS subdomain prefix and '/'"
        ]
    if not name:
        return ["name part must be non-empty"]
    if len(name) > 63:
        return ["name part must be no more than 63 characters"]
    if not _NAME_PART.match(name):
        return [
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character"
        ]
    return []


def _value_errors(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _LABEL_VALUE.match(value):
        return [
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
            "or '.', and must start and end with an alphanumeric character"
        ]
    return []


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key op values`` term; ``operator`` is one of =, ==, !=, in, notin, exists, !, gt, lt."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key}{_OPS_TEXT[self.operator]}({','.join(self.values)})"
        return f"{self.key}{_OPS_TEXT[self.operator]}{self.values[0]}"

    def matcher(self) -> Callable[[Mapping[str, str]], bool]:
        """A closure testing this requirement against a label map (never None)."""
        key = self.key
        op = self.operator
        if op in ("=", "=="):
            want = self.values[0]
            return lambda labels: labels.get(key) == want
        if op == "!=":
            bad = self.values[0]
            return lambda labels: labels.get(key) != bad
        if op == "in":
            allowed = frozenset(self.values)
            return lambda labels: key in labels and labels[key] in allowed
        if op == "notin":
            banned = frozenset(self.values)
            return lambda labels: labels.get(key) not in banned
        if op == "exists":
            return lambda labels: key in labels
        if op == "!":
            return lambda labels: key not in labels
        bound = int(self.values[0])
        greater = op == "gt"

        def compare(labels: Mapping[str, str]) -> bool:
            value = labels.get(key)
            if value is None:
                return False
            try:
                number = int(value)
            except ValueError:
                return False
            return number > bound if greater else number < bound

        return compare


def _make_requirement(key: str, operator: str, values: Iterable[str]) -> Requirement:
    """Validate and normalise (sorted, de-duplicated values) like labels.NewRequirement."""
    errors = _key_errors(key)
    if errors:
        raise ValueError(f'key: Invalid value: "{key}": {"; ".join(errors)}')
    vals = sorted(set(values))
    if operator in ("in", "notin"):
        if not vals:
            raise ValueError(
                "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
            )
    elif operator in ("=", "==", "!="):
        if len(vals) != 1:
            raise ValueError("values: Invalid value: exact-match compatibility requires one single value")
    elif operator in ("exists", "!"):
        if vals:
            raise ValueError("values: Invalid value: values set must be empty for exists and does not exist")
    elif operator in ("gt", "lt"):
        if len(vals) != 1:
            raise ValueError("values: Invalid value: for 'Gt', 'Lt' operators, exactly one value is required")
        try:
            int(vals[0])
        except ValueError:
            detail = "for 'Gt', 'Lt' operators, the value must be an integer"
            raise ValueError(f'values[0]: Invalid value: "{vals[0]}": {detail}') from None
    else:
        raise ValueError(f'operator: Unsupported value: "{operator}"')
    if operator not in ("gt", "lt"):
        for value in vals:
            verr = _value_errors(value)
            if verr:
                raise ValueError(f'values[0]: Invalid value: "{value}": {"; ".join(verr)}')
    return Requirement(key, operator, tuple(vals))


class Selector:
    """A conjunction of requirements; ``Selector([])`` selects everything."""

    __slots__ = ("_matchers", "_nothing", "requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing
        self._matchers = tuple(r.matcher() for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything (no requirements)."""
        return not self._nothing and not self.requirements

    @property
    def nothing(self) -> bool:
        """True for the selector of a nil LabelSelector, which selects no object."""
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        if labels is None:
            labels = {}
        for match in self._matchers:
            if not match(labels):
                return False
        return True

    def exact_value(self, key: str) -> str | None:
        """The value ``key`` must equal (``key=v`` or ``key in (v)``), for index look-ups."""
        for req in self.requirements:
            if req.key == key and req.operator in ("=", "==", "in") and len(req.values) == 1:
                return req.values[0]
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "Selector(<nothing>)" if self._nothing else f"Selector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Selector)
            and self._nothing == other._nothing
            and self.requirements == other.requirements
        )

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)

# --- parsing ---------------------------------------------------------------------------------

#: characters that end an identifier (labels.Lexer's special symbols and whitespace)
_SPECIAL = frozenset("=!(),<>")
_WS = frozenset(" \t\r\n")


def _tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; kinds: id, =, ==, !=, !, (, ), ",", in, notin, >, <."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WS:
            i += 1
            continue
        if ch in _SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                tokens.append((two, two))
                i += 2
            else:
                tokens.append((ch, ch))
                i += 1
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _WS:
            j += 1
        word = text[i:j]
        tokens.append((word if word in ("in", "notin") else "id", word))
        i = j
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.pos += 1
        return tok

    def fail(self, found: str, expected: str) -> ValueError:
        # apimachinery's wording; callers prefix "unable to parse requirement: " as kube does
        return ValueError(f"found '{found}', expected: {expected}")

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            kind, _ = self.peek()
            if kind == "end":
                return reqs
            if kind in ("id", "!"):
                reqs.append(self.requirement())
                kind, lit = self.take()
                if kind == "end":
                    return reqs
                if kind != ",":
                    raise self.fail(lit, "',' or 'end of string'")
                if self.peek()[0] == "end":
                    raise self.fail("", "identifier after ','")
                continue
            raise self.fail(self.peek()[1], "!, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        negated = False
        if self.peek()[0] == "!":
            self.take()
            negated = True
        kind, key = self.take()
        if kind != "id":
            raise self.fail(key, "identifier")
        nxt = self.peek()[0]
        if negated:
            if nxt not in ("end", ","):
                raise self.fail(self.peek()[1], "',' or 'end of string' after '!key'")
            return _make_requirement(key, "!", ())
        if nxt in ("end", ","):
            return _make_requirement(key, "exists", ())
        op_kind, op_lit = self.take()
        if op_kind in ("=", "==", "!="):
            return _make_requirement(key, op_kind, (self.exact_value(),))
        if op_kind in (">", "<"):
            return _make_requirement(key, "gt" if op_kind == ">" else "lt", (self.exact_value(),))
        if op_kind in ("in", "notin"):
            return _make_requirement(key, op_kind, self.value_set())
        raise self.fail(op_lit, "in, notin, =, ==, !=, gt, lt")

    def exact_value(self) -> str:
        kind, lit = self.peek()
        if kind in ("end", ","):
            return ""  # "a=" selects the empty value
        if kind in ("id", "in", "notin"):
            self.take()
            return lit
        raise self.fail(lit, "identifier")

    def value_set(self) -> list[str]:
        kind, lit = self.take()
        if kind != "(":
            raise self.fail(lit, "'('")
        values: list[str] = []
        expect_value = True
        while True:
            kind, lit = self.take()
            if kind == ")":
                if expect_value and values:
                    values.append("")  # "(a,)" carries an empty value, as in apimachinery
                return values
            if kind == "end":
                raise self.fail(lit, "')'")
            if kind == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if kind in ("id", "in", "notin") and expect_value:
                values.append(lit)
                expect_value = False
                continue
            raise self.fail(lit, "',' or ')'")


def parse_selector(text: str | None) -> Selector:
    """Parse a ``labelSelector`` query value; ``""`` selects everything.

    Raises ValueError with a kube-like message for bad syntax, keys or values.
    """
    if text is None or not text.strip():
        return EVERYTHING
    return Selector(_Parser(text).parse())


def selector_from_set(labels: Mapping[str, str] | None) -> Selector:
    """Equality on every pair (``matchLabels``, a Service or ReplicationController selector)."""
    if not labels:
        return EVERYTHING
    return Selector(_make_requirement(k, "=", (v,)) for k, v in labels.items())


_EXPRESSION_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def selector_from_dict(label_selector: Mapping[str, Any] | None) -> Selector:
    """A meta/v1 LabelSelector as metav1.LabelSelectorAsSelector builds it.

    ``None`` selects nothing, ``{}`` everything.
    """
    if label_selector is None:
        return NOTHING
    match_labels = label_selector.get("matchLabels") or {}
    expressions = label_selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return EVERYTHING
    reqs = [_make_requirement(k, "=", (v,)) for k, v in match_labels.items()]
    for expr in expressions:
        op = expr.get("operator")
        if op not in _EXPRESSION_OPS:
            raise ValueError(f'"{op}" is not a valid label selector operator')
        reqs.append(_make_requirement(expr.get("key") or "", _EXPRESSION_OPS[op], expr.get("values") or ()))
    return Selector(reqs)
