"""Service ClusterIPs and NodePorts as keys of the store: one key per address or port in use.

The API server picks addresses and ports (its ``allocators`` module, from what its cache
shows); this module makes the choice binding for every API server on the same database:
``Store.create`` of ``/registry/kybern.io/serviceips/<ip>`` or ``.../servicenodeports/<port>``
either wins or raises KeyExistsError, atomically, in SQLite and PostgreSQL alike, and the keys
outlive restarts (kube keeps the same data as one bitmap per range in etcd; one key per value
needs no read-modify-write). A key's value names its Service (``namespace/name``).

Keys are released when the Service is deleted or stops using them (the watch in
:class:`ReservationKeeper`), and a repair pass (kube's repair controllers) reserves what
existing Services use but lacks a key and frees keys no Service uses (only after they were
orphaned for a whole pass, so a create still in flight keeps its key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kybern.store import KeyExistsError, KeyNotFoundError, Store, StoreError
from loguru import logger

log = logger.bind(component="services")

IP_PREFIX = "/registry/kybern.io/serviceips/"
PORT_PREFIX = "/registry/kybern.io/servicenodeports/"
SERVICE_PREFIX = "/registry/services/"


def ip_key(ip: str) -> str:
    return IP_PREFIX + ip


def port_key(port: int) -> str:
    return f"{PORT_PREFIX}{port}"


def owner_of(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}"


def used_by(svc: dict[str, Any]) -> tuple[set[str], set[int]]:
    """The ClusterIPs and NodePorts a Service holds."""
    spec = svc.get("spec") or {}
    ips = {ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"}
    ports = {int(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")}
    return ips, ports


def _value(owner: str) -> bytes:
    return json.dumps({"service": owner}).encode()


def _owner_in(value: bytes) -> str | None:
    try:
        return str(json.loads(value)["service"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Conflict:
    """A value another Service holds."""

    kind: str  # "ip" or "port"
    value: str | int


@dataclass
class Reservations:
    store: Store
    #: keys seen without a Service in the last repair pass (freed if still so next pass)
    _orphans: set[str] = field(default_factory=set)

    def reserve(self, owner: str, ips: set[str], ports: set[int]) -> list[Conflict]:
        """Claim every value for ``owner``; on a conflict, undo this call's claims and name
        the first value held by another Service."""
        made: list[str] = []
        conflicts: list[Conflict] = []
        wanted: list[tuple[str, str, str | int]] = [(ip_key(ip), "ip", ip) for ip in sorted(ips)]
        wanted += [(port_key(p), "port", p) for p in sorted(ports)]
        for key, kind, value in wanted:
            holder = self._claim(key, owner)
            if holder is True:
                made.append(key)
            elif holder is not None:
                # stop at the first value held elsewhere: every writer claims in the same
                # (sorted) order, so of two racing for the same values one gets them all
                conflicts.append(Conflict(kind, value))
                break
        if conflicts:
            for key in made:
                self._release_key(key, owner)
        return conflicts

    def _claim(self, key: str, owner: str) -> bool | str | None:
        """True: created now; None: already ours; else the other owner holding it."""
        for _attempt in range(5):
            try:
                self.store.create(key, _value(owner))
                return True
            except KeyExistsError:
                current = self.store.get(key)
                if current is None:
                    continue  # released in between: try again
                other = _owner_in(current.value)
                return None if other == owner else (other or "?")
        return "?"

    def release(self, owner: str, ips: set[str], ports: set[int]) -> None:
        for key in [ip_key(ip) for ip in ips] + [port_key(p) for p in ports]:
            self._release_key(key, owner)

    def _release_key(self, key: str, owner: str) -> None:
        current = self.store.get(key)
        if current is None or _owner_in(current.value) != owner:
            return
        try:
            self.store.delete(key, expected_revision=current.mod_revision)
        except StoreError:
            pass  # re-claimed or released meanwhile

    def _list(self, prefix: str) -> list[Any]:
        items: list[Any] = []
        token = None
        rev = None
        while True:
            res = self.store.list(prefix, revision=rev, limit=1000, continue_token=token)
            items.extend(res.items)
            rev = res.revision
            token = res.continue_token
            if not token:
                return items

    def repair(self) -> tuple[int, int]:
        """One pass: (keys added for Services lacking them, orphaned keys freed)."""
        in_use: dict[str, str] = {}
        for kv in self._list(SERVICE_PREFIX):
            try:
                svc = json.loads(kv.value)
            except ValueError:
                continue
            meta = svc.get("metadata") or {}
            owner = owner_of(meta.get("namespace"), meta.get("name") or "")
            ips, ports = used_by(svc)
            for key in [ip_key(ip) for ip in ips] + [port_key(p) for p in ports]:
                in_use[key] = owner
        added = freed = 0
        reserved = {kv.key: kv for kv in self._list(IP_PREFIX) + self._list(PORT_PREFIX)}
        for key, owner in in_use.items():
            kv = reserved.get(key)
            if kv is None:
                try:
                    self.store.create(key, _value(owner))
                    added += 1
                except KeyExistsError:
                    pass
            elif _owner_in(kv.value) != owner:
                log.warning(
                    "{} is held by {} but used by {} (fix one of the Services)",
                    key,
                    _owner_in(kv.value),
                    owner,
                )
        orphans = {key for key in reserved if key not in in_use}
        for key in orphans & self._orphans:
            kv = reserved[key]
            try:
                self.store.delete(key, expected_revision=kv.mod_revision)
                freed += 1
            except (KeyNotFoundError, StoreError):
                pass
        self._orphans = orphans - self._orphans
        return added, freed
