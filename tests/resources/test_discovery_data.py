"""Discovery data of the built-in kinds matches kube-apiserver 1.32's."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from kybern.resources import ResourceType

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
MODULES = {
    name: target
    for name, target in PYPROJECT["project"]["entry-points"]["kybern.plugins"].items()
    if name.startswith("resources-")
}

# plural: (kind, group, namespaced, short names, categories, subresources)
EXPECTED = {
    "pods": ("Pod", "", True, ("po",), ("all",), {"status", "binding", "eviction", "exec", "log"}),
    "nodes": ("Node", "", False, ("no",), (), {"status"}),
    "namespaces": ("Namespace", "", False, ("ns",), (), {"status", "finalize"}),
    "services": ("Service", "", True, ("svc",), ("all",), {"status"}),
    "endpoints": ("Endpoints", "", True, ("ep",), (), set()),
    "configmaps": ("ConfigMap", "", True, ("cm",), (), set()),
    "secrets": ("Secret", "", True, (), (), set()),
    "serviceaccounts": ("ServiceAccount", "", True, ("sa",), (), {"token"}),
    "events": ("Event", "", True, ("ev",), (), set()),
    "persistentvolumes": ("PersistentVolume", "", False, ("pv",), (), {"status"}),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "", True, ("pvc",), (), {"status"}),
    "replicationcontrollers": ("ReplicationController", "", True, ("rc",), ("all",), {"status", "scale"}),
    "deployments": ("Deployment", "apps", True, ("deploy",), ("all",), {"status", "scale"}),
    "replicasets": ("ReplicaSet", "apps", True, ("rs",), ("all",), {"status", "scale"}),
    "daemonsets": ("DaemonSet", "apps", True, ("ds",), ("all",), {"status"}),
    "statefulsets": ("StatefulSet", "apps", True, ("sts",), ("all",), {"status", "scale"}),
    "controllerrevisions": ("ControllerRevision", "apps", True, (), (), set()),
    "jobs": ("Job", "batch", True, (), ("all",), {"status"}),
    "cronjobs": ("CronJob", "batch", True, ("cj",), ("all",), {"status"}),
    "leases": ("Lease", "coordination.k8s.io", True, (), (), set()),
    "endpointslices": ("EndpointSlice", "discovery.k8s.io", True, (), (), set()),
}


def all_resources() -> list[ResourceType]:
    found: list[ResourceType] = []
    for target in MODULES.values():
        found.extend(importlib.import_module(target).kybern_api_resources())
    return found


def test_entry_points_cover_every_kind() -> None:
    expected = ("core", "apps", "batch", "coordination", "discovery")
    assert set(MODULES) == {f"resources-{name}" for name in expected}
    plurals = [rt.plural for rt in all_resources()]
    assert sorted(plurals) == sorted(EXPECTED)


@pytest.mark.parametrize("rt", all_resources(), ids=lambda rt: rt.plural)
def test_discovery(rt: ResourceType) -> None:
    kind, group, namespaced, short, categories, subresources = EXPECTED[rt.plural]
    assert (rt.kind, rt.group, rt.version, rt.namespaced) == (kind, group, "v1", namespaced)
    assert rt.singular == kind.lower()
    assert rt.short_names == short
    assert rt.categories == categories
    assert {s.name for s in rt.subresources} == subresources
    assert rt.status_subresource == ("status" in subresources)
    assert rt.model.__name__ == kind
    assert rt.key_segment == (f"{group}/{rt.plural}" if group else rt.plural)
    names = [c.name for c in rt.table_columns]
    if rt.kind != "Event":
        assert "Age" in names  # kube prints LAST SEEN first for events
        assert rt.table_columns[0].name == "Name"
        assert rt.table_columns[0].format == "name"
    assert all(c.priority in (0, 1) for c in rt.table_columns)
    for sub in rt.subresources:
        if sub.name == "scale":
            assert (sub.kind.group, sub.kind.version, sub.kind.kind) == ("autoscaling", "v1", "Scale")


def test_generation_tracking_follows_kube() -> None:
    tracked = {rt.plural for rt in all_resources() if rt.generation_fields}
    assert tracked == {
        "deployments",
        "replicasets",
        "replicationcontrollers",
        "daemonsets",
        "statefulsets",
        "jobs",
        "cronjobs",
        "endpointslices",
    }
