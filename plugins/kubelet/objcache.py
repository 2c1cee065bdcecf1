"""A short-lived cache of the ConfigMaps, Secrets and claims pods use, shared by every pod on
every node of this process (kubelet's TTL-based configmap/secret manager).

A pod's env and volumes read through it, so 100 pods using one ConfigMap cost one GET per
TTL, and a changed ConfigMap reaches mounted files within the TTL plus the resync period.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kybern.client import ApiClient, ApiError


class ObjectCache:
    def __init__(self, api: ApiClient, ttl: float = 20.0) -> None:
        self._api = api
        self._ttl = ttl
        self._entries: dict[tuple[str, str, str], tuple[float, dict[str, Any] | None]] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    @property
    def api(self) -> ApiClient:
        """The client the cache reads through (the volume manager requests tokens with it)."""
        return self._api

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist (other API errors raise)."""
        key = (resource, namespace, name)
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._entries.get(key)
            if hit is not None and time.monotonic() - hit[0] < self._ttl:
                return hit[1]
            try:
                obj: dict[str, Any] | None = await self._api.get(resource, name, namespace=namespace)
            except ApiError as exc:
                if not exc.not_found:
                    raise
                obj = None
            self._entries[key] = (time.monotonic(), obj)
            return obj

    def invalidate(self, resource: str, namespace: str, name: str) -> None:
        self._entries.pop((resource, namespace, name), None)
