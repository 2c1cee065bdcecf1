"""In-memory pods, nodes and profiles for scheduler unit tests (the real plugins, loaded
through the real entry points)."""

from __future__ import annotations

import functools
import itertools
from typing import Any

from kybern.pluginmanager import load_plugins
from kybern.plugins.scheduler.config import SchedulerPlugin, discover_plugins, parse_config
from kybern.plugins.scheduler.framework import FitError, Profile
from kybern.scheduling import NodeInfo, PodInfo

_uids = itertools.count(1)


def node(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: int = 110,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    **extra: str,
) -> NodeInfo:
    alloc = {"cpu": cpu, "memory": memory, "pods": str(pods), **extra}
    return NodeInfo.from_obj(
        {
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": alloc, "capacity": alloc},
        }
    )


def pod(
    name: str = "",
    cpu: str | None = None,
    memory: str | None = None,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    priority: int = 0,
    node_name: str = "",
    **spec: Any,
) -> PodInfo:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    uid = f"uid-{next(_uids)}"
    body = {
        "containers": [{"name": "c", "image": "nginx", "resources": {"requests": requests}}],
        "priority": priority,
        **spec,
    }
    if node_name:
        body["nodeName"] = node_name
    return PodInfo.from_obj(
        {
            "metadata": {
                "name": name or uid,
                "namespace": namespace,
                "uid": uid,
                "labels": labels or {},
                "creationTimestamp": f"2026-01-01T00:00:{next(_uids) % 60:02d}Z",
            },
            "spec": body,
        }
    )


@functools.cache
def _loaded() -> tuple[Any, dict[str, SchedulerPlugin]]:
    pm = load_plugins().manager
    return pm, discover_plugins(pm)


def profile(config: dict[str, Any] | None = None, profile_index: int = 0) -> Profile:
    pm, available = _loaded()
    doc = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        **(config or {}),
    }
    parsed = parse_config(doc, available, "test")
    return Profile(parsed.profiles[profile_index], pm, available)


def one_profile(**profile_fields: Any) -> Profile:
    return profile({"profiles": [{"schedulerName": "default-scheduler", **profile_fields}]})


def schedule(prof: Profile, p: PodInfo, nodes: list[NodeInfo]) -> str | FitError:
    state = prof.new_state(nodes, None)
    return prof.schedule(state, p, nodes, None)


def place(prof: Profile, p: PodInfo, nodes: list[NodeInfo]) -> str:
    """Schedule and assume, like the scheduler loop does; fails the test when nothing fits."""
    result = schedule(prof, p, nodes)
    assert isinstance(result, str), result.message()
    target = next(n for n in nodes if n.name == result)
    p.node_name = result
    target.add_pod(p)
    return result
