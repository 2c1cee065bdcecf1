"""The kinds this API server serves, indexed the ways requests look them up.

Kinds come only from the ``kybern_api_resources`` hook: the API server knows no kind by name,
so a third-party plugin's kind is served exactly like a Pod.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kybern.resources import ResourceType
from loguru import logger

log = logger.bind(component="apiserver")


def collect_resource_types(pm: Any) -> list[ResourceType]:
    types: list[ResourceType] = []
    seen: set[tuple[str, str, str]] = set()
    for batch in pm.hook.kybern_api_resources():
        for rt in batch or []:
            key = (rt.group, rt.version, rt.plural)
            if key in seen:
                log.warning("two plugins serve {}/{} {}; keeping the first", rt.group, rt.version, rt.plural)
                continue
            seen.add(key)
            types.append(rt)
    return types


class Registry:
    def __init__(self, types: Iterable[ResourceType], virtual: Iterable[ResourceType] = ()) -> None:
        #: the stored kinds (each has a watch cache)
        self.types: list[ResourceType] = list(types)
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        self._group_versions: dict[str, list[str]] = {}
        segments: dict[str, ResourceType] = {}
        for rt in self.types:
            other = segments.setdefault(rt.key_segment, rt)
            if other is not rt:
                # one watch cache per key segment: two kinds there would see each other's objects
                log.warning(
                    "{} and {} share storage /registry/{}/; only one is cached correctly",
                    other.group_resource,
                    rt.group_resource,
                    rt.key_segment,
                )
            self._by_path[(rt.group, rt.version, rt.plural)] = rt
            self._by_kind.setdefault((rt.group, rt.kind), rt)
            self._add_version(rt)
        #: what discovery and OpenAPI publish: the stored kinds plus those the server answers
        #: without storing anything (the self-reviews); a plugin's kind of the same name wins
        self.all_types: list[ResourceType] = list(self.types)
        for rt in virtual:
            if (rt.group, rt.version, rt.plural) in self._by_path:
                continue
            self._by_path[(rt.group, rt.version, rt.plural)] = rt
            self._by_kind.setdefault((rt.group, rt.kind), rt)
            self._add_version(rt)
            self.all_types.append(rt)

    def _add_version(self, rt: ResourceType) -> None:
        versions = self._group_versions.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((group, kind))

    def has_group_version(self, group: str, version: str) -> bool:
        return version in self._group_versions.get(group, [])

    def has_group(self, group: str) -> bool:
        return group in self._group_versions

    def namespace_type(self) -> ResourceType | None:
        return self.lookup("", "v1", "namespaces")

    def key_prefix(self, rt: ResourceType, namespace: str | None = None) -> str:
        base = f"/registry/{rt.key_segment}/"
        if rt.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, rt: ResourceType, namespace: str | None, name: str) -> str:
        if rt.namespaced:
            return f"/registry/{rt.key_segment}/{namespace}/{name}"
        return f"/registry/{rt.key_segment}/{name}"

    def type_for_key(self, key: str) -> ResourceType | None:
        for rt in self.types:
            if key.startswith(f"/registry/{rt.key_segment}/"):
                return rt
        return None
