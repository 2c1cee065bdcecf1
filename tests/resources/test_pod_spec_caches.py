"""The pod spec caches (defaults per spec sent, specs found valid) answer as the general path.

Every pod of a template sends the same spec, so default_pod keeps the defaulted spec per
spec sent and validate_pod_spec remembers the specs it found valid. These tests compute each
spec's answer with the caches bypassed and check the first (filling) and the second (cached)
answer against it, key order included.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from kybern.plugins.resources import pod_defaults, pod_validation
from kybern.plugins.resources.pod_defaults import default_pod
from kybern.plugins.resources.pod_validation import validate_pod_spec


class _NoCache(dict):  # type: ignore[type-arg]
    def get(self, *_args: Any) -> None:
        return None


class _NoSet(set):  # type: ignore[type-arg]
    def __contains__(self, _item: object) -> bool:
        return False

    def add(self, _item: Any) -> None:
        pass


def _container(name: str = "c", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "pause", **extra}


SPECS: list[dict[str, Any]] = [
    {"containers": [_container(resources={"requests": {"cpu": "100m", "memory": "64Mi"}})]},
    {"containers": [_container(resources={"limits": {"cpu": "1", "memory": "1Gi"}})]},
    {"containers": [_container(resources={"limits": {"cpu": "1.0", "memory": "1024Mi"}})]},
    {"containers": [_container(resources={"requests": {"cpu": "bad"}})]},  # bad quantity
    {"containers": [_container()], "initContainers": [_container("init", image="busybox:1.36")]},
    {"containers": [_container(ports=[{"containerPort": 80}])], "hostNetwork": True},
    {"containers": [_container()], "serviceAccount": "builder", "priorityClassName": "system-node-critical"},
    {
        "containers": [_container()],
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
    },
    {"containers": [_container()], "terminationGracePeriodSeconds": 1},
    {"containers": [_container()], "terminationGracePeriodSeconds": 1.0},
    {"containers": [_container("Bad_Name")]},  # invalid
    {"containers": [_container(), _container()]},  # duplicate names: invalid
    {"containers": []},  # invalid: no containers
    {"containers": [_container()], "restartPolicy": "Sometimes"},  # invalid
    {"containers": [_container()], "nodeSelector": {"disk": "ssd"}, "dnsPolicy": "Default"},
]


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": copy.deepcopy(spec),
    }


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_defaults, "_DEFAULTED", {})
    monkeypatch.setattr(pod_validation, "_VALID_SPECS", set())


def _general(monkeypatch: pytest.MonkeyPatch, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with both caches bypassed (neither read nor filled)."""
    with monkeypatch.context() as m:
        m.setattr(pod_defaults, "_DEFAULTED", _NoCache())
        m.setattr(pod_validation, "_VALID_SPECS", _NoSet())
        return fn(*args)


@pytest.mark.parametrize("spec", SPECS, ids=[json.dumps(s)[:60] for s in SPECS])
def test_default_pod_cached_equals_general(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch, empty_caches: None
) -> None:
    expected = _pod(spec)
    _general(monkeypatch, default_pod, expected)
    for _ in range(3):  # filling the cache, then answering from it
        got = _pod(spec)
        default_pod(got)
        assert msgspec.json.encode(got) == msgspec.json.encode(expected)  # key order too
        assert got == expected
    # the spec key tells 1 from 1.0: both are in the cache, apart
    assert len(pod_defaults._DEFAULTED) == 1


def test_default_pod_answers_a_fresh_spec_each_time(empty_caches: None) -> None:
    first, second = _pod(SPECS[0]), _pod(SPECS[0])
    default_pod(first)
    spec_object = second["spec"]
    default_pod(second)
    assert second["spec"] is spec_object  # filled in place, as the general path does
    second["spec"]["containers"][0]["image"] = "changed"
    second["spec"]["tolerations"].clear()
    third = _pod(SPECS[0])
    default_pod(third)
    assert third == first


def test_default_pod_keeps_a_status_the_pod_brings(empty_caches: None) -> None:
    for _ in range(2):
        pod = _pod(SPECS[0])
        pod["status"] = {"phase": "Running", "qosClass": "Guaranteed"}
        default_pod(pod)
        assert pod["status"] == {"phase": "Running", "qosClass": "Guaranteed"}


@pytest.mark.parametrize("spec", SPECS, ids=[json.dumps(s)[:60] for s in SPECS])
@pytest.mark.parametrize("path", ["spec", "spec.template.spec"])
def test_validate_pod_spec_cached_equals_general(
    spec: dict[str, Any], path: str, monkeypatch: pytest.MonkeyPatch, empty_caches: None
) -> None:
    pod = _pod(spec)
    _general(monkeypatch, default_pod, pod)
    defaulted = pod["spec"]
    expected = _general(monkeypatch, validate_pod_spec, defaulted, path)
    for _ in range(3):
        assert validate_pod_spec(copy.deepcopy(defaulted), path) == expected
    # only valid specs are remembered
    assert len(pod_validation._VALID_SPECS) == (0 if expected else 1)


def test_validity_is_remembered_per_path_and_spec(empty_caches: None) -> None:
    pod = _pod(SPECS[0])
    default_pod(pod)
    assert validate_pod_spec(pod["spec"], "spec") == []
    bad = copy.deepcopy(pod["spec"])
    bad["containers"][0]["name"] = "Bad_Name"
    assert validate_pod_spec(bad, "spec")  # a different spec is checked, not taken as valid
    assert validate_pod_spec(bad, "spec")
    assert validate_pod_spec({**pod["spec"], "restartPolicy": "Sometimes"}, "spec")
    errs = validate_pod_spec({"containers": []}, "spec.template.spec")
    assert [e.field for e in errs] == [
        "spec.template.spec.containers",
        "spec.template.spec.restartPolicy",
        "spec.template.spec.dnsPolicy",
    ]


def _token_pod(name: str, extra_volume: str | None = None) -> dict[str, Any]:
    """A pod as the API server's service account admission leaves it: a token volume with a
    random name, mounted into every container."""
    volume = {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]
        },
    }
    mount = {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    spec: dict[str, Any] = {
        "containers": [_container(volumeMounts=[mount], resources={"requests": {"cpu": "100m"}})],
        "volumes": [volume],
    }
    if extra_volume is not None:
        spec["volumes"].append({"name": extra_volume, "emptyDir": {}})
    return _pod(spec)


@pytest.mark.parametrize(
    "names",
    [
        ("kube-api-access-bcdfg", "kube-api-access-2x4z9"),  # the placeholder stands for both
        ("kube-api-access-#####", "kube-api-access-2x4z9"),  # the placeholder itself: kept apart
    ],
)
def test_token_volume_names_share_one_entry(
    names: tuple[str, str], monkeypatch: pytest.MonkeyPatch, empty_caches: None
) -> None:
    for name in (*names, names[1]):
        expected = _token_pod(name)
        _general(monkeypatch, default_pod, expected)
        got = _token_pod(name)
        default_pod(got)
        assert msgspec.json.encode(got) == msgspec.json.encode(expected)
        assert got["spec"]["volumes"][0]["name"] == name
        assert got["spec"]["containers"][0]["volumeMounts"][0]["name"] == name
        errs = _general(monkeypatch, validate_pod_spec, got["spec"], "spec")
        assert validate_pod_spec(copy.deepcopy(got["spec"]), "spec") == errs
        assert validate_pod_spec(copy.deepcopy(got["spec"]), "spec") == errs
    shared = "#####" not in names[0]
    assert len(pod_defaults._DEFAULTED) == (1 if shared else 2)
    # after a renamed spec was found valid, a spec holding the placeholder itself (an invalid
    # volume name) is still checked
    odd = _token_pod("kube-api-access-#####")
    default_pod(odd)
    errs = validate_pod_spec(odd["spec"], "spec")
    assert errs and errs == _general(monkeypatch, validate_pod_spec, odd["spec"], "spec")


def test_two_token_like_names_are_not_merged(monkeypatch: pytest.MonkeyPatch, empty_caches: None) -> None:
    """A second volume with a token-like name: no renaming, each spec is its own entry, and a
    clash (the same name twice) is still reported after the valid spec was remembered."""
    for first, second in (
        ("kube-api-access-bcdfg", "kube-api-access-ghjkl"),
        ("kube-api-access-2x4z9", "kube-api-access-ghjkl"),
        ("kube-api-access-ghjkl", "kube-api-access-ghjkl"),  # duplicate volume name: invalid
    ):
        expected = _token_pod(first, extra_volume=second)
        _general(monkeypatch, default_pod, expected)
        got = _token_pod(first, extra_volume=second)
        default_pod(got)
        assert got == expected
        errs = _general(monkeypatch, validate_pod_spec, got["spec"], "spec")
        assert bool(errs) == (first == second)
        assert validate_pod_spec(got["spec"], "spec") == errs
        assert validate_pod_spec(got["spec"], "spec") == errs
    # the duplicate has one token-like name (renamed), the other two pairs are kept as sent
    assert len(pod_defaults._DEFAULTED) == 3
