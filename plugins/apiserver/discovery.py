"""Discovery documents built from the registered resource types.

kubectl learns everything it knows about resources from these answers (the RESTMapper,
short names, ``kubectl api-resources``, ``scale`` support), so they follow kube-apiserver's
shapes exactly: the legacy per-group-version lists (still used by the Python DynamicClient)
and aggregated discovery (apidiscovery.k8s.io/v2), which kubectl 1.32 prefers.

Types are read by attribute only (group, version, kind, plural, singular, namespaced,
short_names, categories, verbs, subresources), so "virtual" types such as metrics.k8s.io's
can be passed without being full ResourceTypes.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import kybern
from kybern.resources import GroupVersionKind, ResourceType, Subresource

__all__ = [
    "aggregated_discovery",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "discovery_content_type",
    "group_versions",
    "subresource_kind",
    "version_info",
]

DISCOVERY_GROUP = "apidiscovery.k8s.io"
DISCOVERY_VERSION = "v2"
BUILD_DATE = "2026-01-01T00:00:00Z"

#: kube-apiserver's group order in /apis (its group priorities); unknown groups follow by name
_GROUP_ORDER = (
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "metrics.k8s.io",
)

#: kinds of the subresources whose kind is neither the parent's nor given by the plugin
_SUBRESOURCE_KINDS: dict[str, GroupVersionKind] = {
    "scale": GroupVersionKind("autoscaling", "v1", "Scale"),
    "eviction": GroupVersionKind("policy", "v1", "Eviction"),
    "binding": GroupVersionKind("", "v1", "Binding"),
    "exec": GroupVersionKind("", "v1", "PodExecOptions"),
    "attach": GroupVersionKind("", "v1", "PodAttachOptions"),
    "portforward": GroupVersionKind("", "v1", "PodPortForwardOptions"),
}

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def discovery_content_type() -> str:
    """The Content-Type of aggregated answers; kubectl uses them only when it carries g, v, as."""
    return f"application/json;g={DISCOVERY_GROUP};v={DISCOVERY_VERSION};as=APIGroupDiscoveryList"


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{sys.platform}/{arch}"


def version_info() -> dict[str, str]:
    """``/version``: gitVersion parses as semver (kubectl's version-skew check needs that)."""
    kube = kybern.KUBERNETES_VERSION.lstrip("v")
    major, minor, *_ = kube.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{kube}-kybern+{kybern.__version__}",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "cpython",
        "platform": _platform(),
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """``/api`` (APIVersions); ``server_address`` is host:port as clients reach the server."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _version_key(version: str) -> tuple[int, int, int, str]:
    """Sort key giving kube's version priority: GA > beta > alpha, higher numbers first."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)


def _group_key(group: str) -> tuple[int, str]:
    try:
        return (_GROUP_ORDER.index(group), group)
    except ValueError:
        return (len(_GROUP_ORDER), group)


def group_versions(types: Iterable[ResourceType]) -> dict[str, list[str]]:
    """Named group -> versions in preference order (core group excluded), groups in kube order."""
    found: dict[str, set[str]] = {}
    for rt in types:
        if rt.group:
            found.setdefault(rt.group, set()).add(rt.version)
    return {g: sorted(found[g], key=_version_key) for g in sorted(found, key=_group_key)}


def api_group_list(types: Iterable[ResourceType]) -> dict[str, Any]:
    """``/apis`` (APIGroupList)."""
    groups = []
    for group, versions in group_versions(types).items():
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def subresource_kind(rt: ResourceType, sub: Subresource) -> GroupVersionKind:
    """The kind a subresource's requests and answers carry (the parent's unless known otherwise)."""
    if sub.kind is not None:
        gvk = sub.kind
        if not gvk.version:
            return GroupVersionKind(gvk.group or rt.group, rt.version, gvk.kind)
        return gvk
    if sub.name == "proxy":
        return GroupVersionKind("", "v1", f"{rt.kind}ProxyOptions")
    known = _SUBRESOURCE_KINDS.get(sub.name)
    if known is not None:
        return known
    return GroupVersionKind(rt.group, rt.version, rt.kind)


def _storage_version_hash(rt: ResourceType) -> str:
    """Like kube's: 8 bytes of sha256 over the storage group/version/kind, base64."""
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode("ascii")


def _select(types: Iterable[ResourceType], group: str, version: str) -> list[ResourceType]:
    chosen = [rt for rt in types if rt.group == group and rt.version == version]
    return sorted(chosen, key=lambda rt: rt.plural)


def api_resource_list(types: Iterable[ResourceType], group: str, version: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/GROUP/VERSION`` (APIResourceList); None if nothing is served there."""
    chosen = _select(types, group, version)
    if not chosen:
        return None
    resources: list[dict[str, Any]] = []
    for rt in chosen:
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        if "create" in rt.verbs or "update" in rt.verbs:
            entry["storageVersionHash"] = _storage_version_hash(rt)
        resources.append(entry)
        for sub in sorted(rt.subresources, key=lambda s: s.name):
            gvk = subresource_kind(rt, sub)
            sub_entry: dict[str, Any] = {
                "name": f"{rt.plural}/{sub.name}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": gvk.kind,
                "verbs": list(sub.verbs),
            }
            if (gvk.group, gvk.version) != (rt.group, rt.version):
                sub_entry["group"] = gvk.group
                sub_entry["version"] = gvk.version
            resources.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _discovery_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in sorted(rt.subresources, key=lambda s: s.name):
        gvk = subresource_kind(rt, sub)
        subs.append(
            {
                "subresource": sub.name,
                "responseKind": {"group": gvk.group, "version": gvk.version, "kind": gvk.kind},
                "verbs": list(sub.verbs),
            }
        )
    if subs:
        entry["subresources"] = subs
    return entry


def _discovery_group(types: Sequence[ResourceType], group: str, versions: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": group, "creationTimestamp": None},
        "versions": [
            {
                "version": v,
                "resources": [_discovery_resource(rt) for rt in _select(types, group, v)],
                "freshness": "Current",
            }
            for v in versions
        ],
    }


def aggregated_discovery(types: Iterable[ResourceType], legacy: bool) -> dict[str, Any]:
    """APIGroupDiscoveryList for ``/api`` (``legacy``: the core group) or ``/apis`` (the others)."""
    all_types = list(types)
    if legacy:
        core_versions = sorted({rt.version for rt in all_types if not rt.group}, key=_version_key)
        items = [_discovery_group(all_types, "", core_versions or ["v1"])]
    else:
        items = [_discovery_group(all_types, g, vs) for g, vs in group_versions(all_types).items()]
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{DISCOVERY_GROUP}/{DISCOVERY_VERSION}",
        "metadata": {},
        "items": items,
    }
