"""KubeSchedulerConfiguration parsing: defaults, enable/disable, weights, args, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from kybern.components import ConfigurationError
from kybern.plugins.scheduler.config import load_config, parse_config

from .helpers import _loaded, profile

HEAD = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"


def available() -> dict:
    return _loaded()[1]


def test_defaults_follow_kube_scheduler() -> None:
    config = parse_config(None, available())
    [prof] = config.profiles
    assert prof.scheduler_name == "default-scheduler"
    assert prof.enabled["queueSort"] == ["PrioritySort"]
    assert prof.enabled["filter"] == [
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodeResourcesFit",
        "PodTopologySpread",
        "InterPodAffinity",
    ]
    assert prof.enabled["score"] == [
        "TaintToleration",
        "NodeAffinity",
        "NodeResourcesFit",
        "PodTopologySpread",
        "InterPodAffinity",
    ]
    assert prof.enabled["postFilter"] == ["DefaultPreemption"]
    assert prof.enabled["bind"] == ["DefaultBinder"]
    assert prof.weights["TaintToleration"] == 3 and prof.weights["NodeAffinity"] == 2


def test_enable_disable_weights_and_multipoint() -> None:
    doc = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "profiles": [
            {
                "schedulerName": "a",
                "plugins": {
                    "score": {
                        "disabled": [{"name": "*"}],
                        "enabled": [{"name": "NodeResourcesFit", "weight": 7}],
                    },
                    "multiPoint": {"disabled": [{"name": "TaintToleration"}]},
                },
            },
            {"schedulerName": "b", "plugins": {"filter": {"disabled": [{"name": "NodeResourcesFit"}]}}},
        ],
    }
    config = parse_config(doc, available())
    a, b = config.profiles
    assert a.enabled["score"] == ["NodeResourcesFit"] and a.weights["NodeResourcesFit"] == 7
    assert "TaintToleration" not in a.enabled["filter"]
    assert "NodeResourcesFit" not in b.enabled["filter"] and "NodeResourcesFit" in b.enabled["score"]
    # the framework calls only what the profile enables
    prof = profile(doc, 0)
    assert [n for n, _ in prof.points["score"]] == ["NodeResourcesFit"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "apiVersion: v1\nkind: KubeSchedulerConfiguration\n",
            "apiVersion must be 'kubescheduler.config.k8s.io/v1'",
        ),
        (
            HEAD + "profiles:\n- plugins:\n    filter:\n      enabled:\n      - name: Nope\n",
            "unknown plugin 'Nope'",
        ),
        (HEAD + "profiles:\n- plugins:\n    scroe: {}\n", "unknown extension point 'scroe'"),
        (
            HEAD + "profiles:\n- schedulerName: x\n- schedulerName: x\n",
            "profiles[1].schedulerName: Duplicate value: 'x'",
        ),
        (
            HEAD + "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n"
            "      scoringStrategy: {type: Fancy}\n",
            "scoringStrategy.type: Unsupported value: 'Fancy'",
        ),
        (
            HEAD + "profiles:\n- plugins:\n    score:\n      enabled:\n"
            "      - {name: NodeResourcesFit, weight: 1000}\n",
            "weight: Invalid value: 1000",
        ),
        (
            HEAD + "profiles:\n- plugins:\n    bind:\n      enabled:\n      - name: NodeResourcesFit\n",
            "does not implement the bind extension point",
        ),
        (
            HEAD + "profiles:\n- plugins:\n    bind:\n      disabled:\n      - name: '*'\n",
            "at least one bind plugin",
        ),
        (HEAD + "leaderElection: {}\n", "unsupported field 'leaderElection'"),
        ("profiles: [\n", "not valid YAML (line 2)"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sched.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, available())
    assert message in str(info.value)
    assert str(info.value).startswith(f"scheduler config {path}")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="No such file"):
        load_config(tmp_path / "nope.yaml", available())
