"""The resources the API server serves, from discovery (what the garbage collector and the
namespace controller must cover: every kind, including ones added by plugins later).

The ``ApiClient`` protocol has no discovery call, so this reads ``/api/v1`` and ``/apis``
through the HTTP client's request method; a client without one gets the built-in list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger

log = logger.bind(component="controller-manager")


@dataclass(frozen=True)
class ApiResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def name(self) -> str:
        """How ``ApiClient`` addresses it: ``pods``, ``deployments.apps``, ``x.v1beta1.g``."""
        if not self.group:
            return self.plural if self.version == "v1" else f"{self.plural}.{self.version}"
        return (
            f"{self.plural}.{self.group}"
            if self.version == "v1"
            else f"{self.plural}.{self.version}.{self.group}"
        )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


_FALLBACK: tuple[tuple[str, str, str, str, bool], ...] = (
    ("", "v1", "pods", "Pod", True),
    ("", "v1", "services", "Service", True),
    ("", "v1", "endpoints", "Endpoints", True),
    ("", "v1", "configmaps", "ConfigMap", True),
    ("", "v1", "secrets", "Secret", True),
    ("", "v1", "serviceaccounts", "ServiceAccount", True),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("", "v1", "events", "Event", True),
    ("", "v1", "nodes", "Node", False),
    ("", "v1", "namespaces", "Namespace", False),
    ("apps", "v1", "deployments", "Deployment", True),
    ("apps", "v1", "replicasets", "ReplicaSet", True),
    ("apps", "v1", "daemonsets", "DaemonSet", True),
    ("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    ("batch", "v1", "jobs", "Job", True),
    ("batch", "v1", "cronjobs", "CronJob", True),
    ("coordination.k8s.io", "v1", "leases", "Lease", True),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
)
_ALL_VERBS = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})


def _from_list(group: str, version: str, doc: dict[str, Any]) -> list[ApiResource]:
    out = []
    for r in doc.get("resources") or []:
        name = r.get("name", "")
        if "/" in name:
            continue  # subresources
        out.append(
            ApiResource(
                group,
                version,
                name,
                r.get("kind", ""),
                bool(r.get("namespaced")),
                frozenset(r.get("verbs") or ()),
            )
        )
    return out


async def served_resources(client: Any) -> list[ApiResource]:
    """Every top-level resource of every group's preferred version."""
    request = getattr(client, "_request", None)
    if request is None:
        return [ApiResource(g, v, p, k, n, _ALL_VERBS) for g, v, p, k, n in _FALLBACK]
    found = _from_list("", "v1", await request("GET", "/api/v1"))
    groups = await request("GET", "/apis")
    for group in groups.get("groups") or []:
        pref = (group.get("preferredVersion") or {}).get("version")
        if not pref:
            continue
        try:
            found.extend(
                _from_list(group["name"], pref, await request("GET", f"/apis/{group['name']}/{pref}"))
            )
        except Exception as exc:  # one broken group must not hide the others
            log.warning("discovery of {}/{} failed: {}", group.get("name"), pref, exc)
    return found
