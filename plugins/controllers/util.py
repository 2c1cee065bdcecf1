"""Helpers every workload controller needs (kube's pkg/controller/controller_utils.go).

Pod states the way kube-controller-manager judges them, controller references and claiming
(adopt orphans matching a selector, release owned objects that stopped matching),
expectations (do not act again before the writes we made are seen in the cache), and the
ranking of pods to delete first.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kybern.client import ApiClient, ApiError
from kybern.labels import Selector
from loguru import logger

log = logger.bind(component="controller-manager")

Obj = dict[str, Any]

#: how long expectations may stay unmet before a controller acts anyway (kube: 5 minutes)
EXPECTATIONS_TIMEOUT = 300.0


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch for an RFC 3339 timestamp (None if missing or unreadable)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def name_of(obj: Obj) -> str:
    return meta(obj).get("name", "")


def namespace_of(obj: Obj) -> str | None:
    return meta(obj).get("namespace")


def uid_of(obj: Obj) -> str:
    return meta(obj).get("uid", "")


def key_of(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


# --- pods -------------------------------------------------------------------------------------


def pod_condition(pod: Obj, type_: str) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def is_pod_active(pod: Obj) -> bool:
    """Counts towards replicas: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def is_pod_ready(pod: Obj) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float | None = None) -> bool:
    """Ready for at least ``min_ready_seconds`` (by the Ready condition's transition time)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if since is None:
        return False
    return since + min_ready_seconds <= (now or time.time())


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj, doubled_up: int = 0) -> tuple[Any, ...]:
    """Sort key: pods to delete first sort first (kube's ActivePodsWithRanks ordering).

    Unassigned before assigned, Pending < Unknown < Running, not ready before ready, lower
    pod-deletion-cost first, more siblings on the same node (``doubled_up``) first, ready for
    less time first, more restarts first, newer first.
    """
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ready = is_pod_ready(pod)
    try:
        cost = int((meta(pod).get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost", 0))
    except ValueError:
        cost = 0
    ready_since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime")) if ready else None
    restarts = max([int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []] or [0])
    created = parse_time(meta(pod).get("creationTimestamp")) or 0.0
    return (
        1 if spec.get("nodeName") else 0,
        _PHASE_RANK.get(status.get("phase") or "Pending", 0),
        1 if ready else 0,
        cost,
        -doubled_up,
        -(ready_since or 0.0),
        -restarts,
        -created,
    )


def pods_to_delete(pods: list[Obj], count: int) -> list[Obj]:
    """The ``count`` pods a scale-down removes first; pods sharing a node with more of their
    siblings go before lone ones, so replicas stay spread."""
    per_node: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            per_node[node] = per_node.get(node, 0) + 1

    def key(pod: Obj) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName")
        return deletion_rank(pod, per_node.get(node, 0) if node else 0)

    return sorted(pods, key=key)[:count]


def pod_from_template(template: Obj, owner: Obj, owner_kind: str, owner_api_version: str) -> Obj:
    """A new pod for a controller (kube's GetPodFromTemplate): generateName ``<owner>-``."""
    tmeta = template.get("metadata") or {}
    pod_meta: Obj = {
        "generateName": f"{name_of(owner)}-",
        "namespace": namespace_of(owner),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller_reference(owner, owner_kind, owner_api_version)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(template.get("spec")),
    }


# --- owners -----------------------------------------------------------------------------------


def controller_reference(owner: Obj, kind: str, api_version: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


async def claim(
    client: ApiClient,
    resource: str,
    owner: Obj,
    owner_kind: str,
    owner_api_version: str,
    selector: Selector,
    candidates: list[Obj],
    fresh_owner: Any,
) -> list[Obj]:
    """The objects ``owner`` controls after adopting matching orphans and releasing owned
    objects that no longer match (kube's ControllerRefManager.Claim*).

    ``fresh_owner`` is an async callable returning the owner as the API has it now: adoption
    re-checks that the owner still exists with the same UID and is not being deleted
    (kube's RecheckDeletionTimestamp), so a deleted owner never adopts.
    """
    owner_uid = uid_of(owner)
    deleting = bool(meta(owner).get("deletionTimestamp"))
    claimed: list[Obj] = []
    can_adopt: bool | None = None
    for obj in candidates:
        ref = controller_ref(obj)
        labels = meta(obj).get("labels") or {}
        if ref is not None:
            if ref.get("uid") != owner_uid:
                continue
            if selector.matches(labels) or deleting:
                claimed.append(obj)
                continue
            # owned but no longer selected: release
            try:
                await client.patch(
                    resource,
                    name_of(obj),
                    {
                        "metadata": {
                            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
                            "uid": uid_of(obj),
                        }
                    },
                    patch_type="strategic",
                    namespace=namespace_of(obj),
                )
            except ApiError as exc:
                if not (exc.not_found or exc.code == 422):
                    raise
            continue
        if deleting or meta(obj).get("deletionTimestamp") or not selector.matches(labels):
            continue
        if can_adopt is None:
            latest = await fresh_owner()
            can_adopt = bool(
                latest is not None
                and uid_of(latest) == owner_uid
                and not meta(latest).get("deletionTimestamp")
            )
        if not can_adopt:
            continue
        ref_new = controller_reference(owner, owner_kind, owner_api_version)
        try:
            adopted = await client.patch(
                resource,
                name_of(obj),
                {"metadata": {"ownerReferences": [ref_new], "uid": uid_of(obj)}},
                patch_type="strategic",
                namespace=namespace_of(obj),
            )
        except ApiError as exc:
            if exc.not_found or exc.code == 422:
                continue
            raise
        if controller_ref(adopted) and controller_ref(adopted).get("uid") == owner_uid:  # type: ignore[union-attr]
            claimed.append(adopted)
    return claimed


# --- expectations -----------------------------------------------------------------------------


@dataclass
class _Expectation:
    add: int
    deletes: set[str]
    timestamp: float


class Expectations:
    """Creates/deletes a controller made and has not yet seen in its informer (per key).

    Until they are observed the controller must not count pods again, or it would create
    twice. Deletions are tracked by pod UID (kube's UIDTrackingControllerExpectations): a pod
    shows up as deleted twice (deletionTimestamp set, then gone) and must count once. Entries
    older than ``EXPECTATIONS_TIMEOUT`` count as satisfied (a lost event must not wedge a
    controller forever).
    """

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.timeout = timeout
        self._items: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        exp = self._items.get(key)
        if exp is None:
            return True
        if exp.add <= 0 and not exp.deletes:
            return True
        return time.monotonic() - exp.timestamp > self.timeout

    def expect_creations(self, key: str, count: int) -> None:
        self._items[key] = _Expectation(count, set(), time.monotonic())

    def expect_deletions(self, key: str, uids: set[str]) -> None:
        self._items[key] = _Expectation(0, set(uids), time.monotonic())

    def creation_observed(self, key: str, count: int = 1) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.add -= count

    def deletion_observed(self, key: str, uid: str) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.deletes.discard(uid)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


# --- batches ----------------------------------------------------------------------------------


async def slow_start_batch(count: int, initial_batch: int, fn: Any) -> tuple[int, Exception | None]:
    """Call async ``fn()`` ``count`` times in batches of 1, 2, 4, ... (kube's slowStartBatch).

    A batch with a failure stops the rest, so a quota or webhook error costs one call, not
    hundreds. Returns (successes, first error).
    """
    done = 0
    batch = min(count, initial_batch)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(errors)
        if errors:
            err = errors[0]
            if isinstance(err, Exception):
                return done, err
            raise err
        remaining = count - done
        batch = min(2 * batch, remaining)
    return done, None
