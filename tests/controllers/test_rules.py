"""kube's arithmetic and orderings the controllers reproduce (pure functions, no server)."""

from __future__ import annotations

import re

from kybern.plugins.controllers import deployment as dep
from kybern.plugins.controllers import util


def d(replicas: int, surge: int | str, unavailable: int | str, **extra: object) -> dict:
    return {
        "metadata": {"name": "d", "annotations": {}},
        "spec": {
            "replicas": replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            **extra,
        },
        "status": {},
    }


def test_fenceposts_round_surge_up_and_unavailable_down() -> None:
    assert dep.resolve_fenceposts(d(10, "25%", "25%")) == (3, 2)
    assert dep.resolve_fenceposts(d(3, "25%", "25%")) == (1, 0)
    assert dep.resolve_fenceposts(d(3, 0, 0)) == (0, 1)  # both zero would never progress
    assert dep.resolve_fenceposts(d(4, 1, "50%")) == (1, 2)
    assert dep.max_unavailable(d(2, 0, 5)) == 2  # capped at replicas
    recreate = {"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}
    assert dep.max_surge(recreate) == 0 and dep.max_unavailable(recreate) == 0


def test_new_replica_set_size_respects_surge() -> None:
    deployment = d(3, 1, 0)
    old = {"spec": {"replicas": 3}}
    new = {"spec": {"replicas": 0}}
    assert dep.new_rs_new_replicas(deployment, [old, new], new) == 1
    old["spec"]["replicas"] = 2
    new["spec"]["replicas"] = 1
    assert dep.new_rs_new_replicas(deployment, [old, new], new) == 2
    assert dep.new_rs_new_replicas({"spec": {"replicas": 5, "strategy": {"type": "Recreate"}}}, [], None) == 5


def test_template_hash_is_stable_label_safe_and_ignores_empty_values() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    h = dep.template_hash(template, None)
    assert h == dep.template_hash(
        {**template, "metadata": {"labels": {"app": "web"}, "creationTimestamp": None}}, None
    )
    assert h != dep.template_hash(template, 1)
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", h)
    hashed = {"metadata": {"labels": {"app": "web", "pod-template-hash": h}}, "spec": template["spec"]}
    assert dep.equal_ignore_hash(hashed, template)
    assert not dep.equal_ignore_hash(
        hashed, {**template, "spec": {"containers": [{"name": "c", "image": "y"}]}}
    )


def test_proportional_scaling_fractions() -> None:
    # kube's example: 10 -> 15 replicas with two ReplicaSets of 6 and 4 (max-replicas 11, surge 1)
    deployment = d(15, 1, 0)
    deployment["status"] = {"replicas": 10}
    big = {"metadata": {"annotations": {dep.MAX_REPLICAS: "11"}}, "spec": {"replicas": 6}}
    small = {"metadata": {"annotations": {dep.MAX_REPLICAS: "11"}}, "spec": {"replicas": 4}}
    to_add = 16 - 10
    first = dep.proportion(big, deployment, to_add, 0)
    second = dep.proportion(small, deployment, to_add, first)
    assert (first, second) == (3, 2)  # the leftover 1 goes to the largest


def test_pods_to_delete_first() -> None:
    def pod(name: str, node: str = "", phase: str = "Running", ready: bool = True, created: str = "") -> dict:
        return {
            "metadata": {"name": name, "creationTimestamp": created or "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": node} if node else {},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }

    pods = [
        pod("old-ready", "n1", created="2026-01-01T00:00:00Z"),
        pod("new-ready", "n1", created="2026-01-02T00:00:00Z"),
        pod("not-ready", "n1", ready=False),
        pod("pending", "n1", phase="Pending", ready=False),
        pod("unscheduled", phase="Pending", ready=False),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=util.deletion_rank)]
    assert order == ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]
    # among equals, a pod doubled up on a node goes before a lone one
    spread = [pod("lone", "n1"), pod("twin-a", "n2"), pod("twin-b", "n2")]
    assert {p["metadata"]["name"] for p in util.pods_to_delete(spread, 1)} <= {"twin-a", "twin-b"}


def test_available_needs_min_ready_seconds() -> None:
    pod = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }
    }
    since = util.parse_time("2026-01-01T00:00:00Z")
    assert since is not None
    assert util.is_pod_available(pod, 0)
    assert not util.is_pod_available(pod, 10, now=since + 5)
    assert util.is_pod_available(pod, 10, now=since + 10)
