"""Label selector parsing and matching, checked against apimachinery's documented behaviour."""

from __future__ import annotations

import pytest
from kybern.labels import EVERYTHING, NOTHING, parse_selector, selector_from_dict, selector_from_set

LABELS = {"app": "web", "tier": "front", "version": "3"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("missing in (x)", False),
        ("app notin (db)", True),
        ("app notin (web, db)", False),
        ("missing notin (x)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("  app = web ,  tier in ( front ) ", True),
        ("version>2", True),
        ("version<3", False),
        ("app>1", False),
        ("missing=", False),
        ("example.com/role=web", False),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("tier=front,app=web", "app=web,tier=front"),
        ("app==web", "app==web"),
        ("app in (z, a, a)", "app in (a,z)"),
        ("!a,b notin (x)", "!a,b notin (x)"),
        ("x>5", "x>5"),
        ("k8s.io/name", "k8s.io/name"),
    ],
)
def test_canonical_string(text: str, canonical: str) -> None:
    sel = parse_selector(text)
    assert str(sel) == canonical
    assert parse_selector(str(sel)) == sel


@pytest.mark.parametrize(
    "text",
    [
        "app=",  # valid: empty value
    ],
)
def test_empty_value_is_allowed(text: str) -> None:
    assert parse_selector(text).matches({"app": ""})
    assert not parse_selector(text).matches({"app": "x"})


@pytest.mark.parametrize(
    "text",
    [
        "app in web",
        "app in (web",
        "app=web,",
        "=web",
        "app=(web)",
        "a b",
        "app in ()",
        "bad key=x",
        "-bad=x",
        "app=-bad",
        "x>abc",
        "a/b/c=d",
        "!a=b",
        "app=" + "v" * 64,
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_selector(text)


def test_empty_and_nothing() -> None:
    assert parse_selector("").empty
    assert parse_selector(None).empty
    assert not parse_selector("a").empty
    assert EVERYTHING.matches(None)
    assert not NOTHING.matches({})
    assert not NOTHING.empty
    assert parse_selector("!a").matches(None)
    assert not parse_selector("a").matches(None)


def test_selector_from_dict() -> None:
    assert selector_from_dict(None).nothing
    assert not selector_from_dict(None).matches(LABELS)
    assert selector_from_dict({}).empty
    assert selector_from_dict({"matchLabels": {}, "matchExpressions": []}).matches({})
    sel = selector_from_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "version", "operator": "NotIn", "values": ["1"]},
                {"key": "app", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "legacy": "yes"})
    assert not sel.matches({**LABELS, "tier": "back"})
    assert str(sel) == "app=web,app,!legacy,tier in (edge,front),version notin (1)"
    with pytest.raises(ValueError):
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
    with pytest.raises(ValueError):
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
    with pytest.raises(ValueError):
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})


def test_selector_from_set_and_exact_value() -> None:
    sel = selector_from_set({"app": "web", "tier": "front"})
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web"})
    assert sel.exact_value("app") == "web"
    assert sel.exact_value("other") is None
    assert selector_from_set({}).empty


def test_matching_speed_figure() -> None:
    """Prints a figure only: matching runs for every object of every list and watch."""
    import time

    sel = parse_selector("app=web,tier in (front,edge),!legacy")
    objects = [{"app": "web", "tier": "front", "n": str(i)} for i in range(20000)]
    start = time.perf_counter()
    hits = sum(1 for labels in objects if sel.matches(labels))
    elapsed = time.perf_counter() - start
    assert hits == len(objects)
    print(f"label selector: {len(objects) / elapsed:,.0f} matches/s")


def test_error_wording_follows_apimachinery() -> None:
    with pytest.raises(ValueError) as exc:
        parse_selector("bad key")
    assert str(exc.value) == "found 'key', expected: in, notin, =, ==, !=, gt, lt"
    with pytest.raises(ValueError) as exc:
        parse_selector("a in x")
    assert str(exc.value) == "found 'x', expected: '('"
