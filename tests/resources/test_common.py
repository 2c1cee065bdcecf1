"""Printing helpers shared by the kinds: kubectl's durations and selector strings."""

from __future__ import annotations

import pytest
from kybern.plugins.resources.common import (
    format_label_selector,
    format_labels,
    human_duration,
    selector_matches,
    selector_string,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1.5, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (303, "5m3s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 120, "3h2m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (3 * 86400, "3d"),
        (3 * 86400 + 7200, "3d2h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_selectors() -> None:
    selector = {
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
        ],
    }
    assert selector_string(selector) == "app=shop,env in (dev,prod),!legacy,tier=web,zone"
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({}) == "<none>"
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    labels = {"app": "shop", "tier": "web", "env": "dev", "zone": "a"}
    assert selector_matches(selector, labels)
    assert not selector_matches(selector, {**labels, "legacy": "x"})
    assert not selector_matches(selector, {**labels, "env": "qa"})
    assert not selector_matches(None, labels)
    assert selector_matches({}, labels)
