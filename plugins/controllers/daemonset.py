"""The DaemonSet controller (kube 1.32's pkg/controller/daemon): one pod per eligible node.

A node is eligible when the pod template's nodeSelector and required node affinity match it
and the pod, with the tolerations kube adds to every daemon pod (not-ready and unreachable
NoExecute; disk/memory/PID pressure and unschedulable NoSchedule; network-unavailable for
host-network pods), tolerates its taints. A NoSchedule taint only stops new pods; an
untolerated NoExecute taint removes running ones too.

Daemon pods are not bound here: as in kube since 1.12 each gets a required node affinity term
``matchFields metadata.name In [node]`` and the scheduler binds it, so resources, ports and
priorities are honoured the same way as for any pod.

History lives in ControllerRevisions (``<ds>-<hash>``, data is a strategic patch replacing
spec.template, the form ``kubectl rollout history|undo ds`` reads and applies); pods carry the
``controller-revision-hash`` label of the revision they were made from. RollingUpdate
replaces old pods node by node within maxUnavailable (or, with maxSurge, starts the new pod
before removing the old one); OnDelete waits for the user to delete old pods. Status carries
everything ``kubectl rollout status ds`` reads.
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

from kybern import events, hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.informers import index_by_controller_uid
from kybern.labels import selector_from_dict
from kybern.plugins.controllers import nodematch, util
from kybern.plugins.controllers.base import QueueController
from loguru import logger

log = logger.bind(component="daemonset-controller")

RESOURCE = "daemonsets.apps"
REVISIONS = "controllerrevisions.apps"
HASH_LABEL = "controller-revision-hash"
OWNER_INDEX = "daemonset-controller-uid"
NODE_TARGET_INDEX = "daemonset-target-node"
#: kube's BurstReplicas for DaemonSets
BURST = 250

DAEMON_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def compute_hash(template: util.Obj, collision_count: int | None) -> str:
    """FNV-1a 32 of the template (plus the collision count), encoded with kube's safe alphabet."""
    h = 0x811C9DC5
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def add_daemon_tolerations(spec: util.Obj) -> None:
    tolerations = list(spec.get("tolerations") or [])
    wanted = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(NETWORK_UNAVAILABLE)
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    spec["tolerations"] = tolerations


def target_node(pod: util.Obj) -> str | None:
    """spec.nodeName, or the node a daemon pod's affinity pins it to before binding."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if (
                req.get("key") == "metadata.name"
                and req.get("operator") == "In"
                and len(req.get("values") or []) == 1
            ):
                return req["values"][0]
    return None


def pin_to_node(spec: util.Obj, node: str) -> None:
    """kube's ReplaceDaemonSetPodNodeNameNodeAffinity: one required term, the node's name."""
    affinity = spec.setdefault("affinity", {}) or {}
    spec["affinity"] = affinity
    node_affinity = affinity.setdefault("nodeAffinity", {}) or {}
    affinity["nodeAffinity"] = node_affinity
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}


def scaled(value: int | str | None, total: int, default: int | str) -> int:
    """An IntOrString against ``total`` (percentages round up, kube's GetScaledValueFromIntOrPercent)."""
    if value is None:
        value = default
    if isinstance(value, str):
        if value.endswith("%"):
            return math.ceil(int(value[:-1]) * total / 100)
        return int(value)
    return int(value)


class _Expectations:
    """Creates (a count) and deletes (pod UIDs) made and not yet seen, per DaemonSet: until
    the informer shows them the pods per node are stale and acting again would double up.
    Deletions are tracked by UID because a deletion shows up either as an update with
    deletionTimestamp (graceful) or as the object vanishing, whichever comes first."""

    def __init__(self, timeout: float = 300.0) -> None:
        self.timeout = timeout
        self._items: dict[str, tuple[int, set[str], float]] = {}

    def satisfied(self, key: str) -> bool:
        item = self._items.get(key)
        return item is None or (item[0] <= 0 and not item[1]) or time.monotonic() - item[2] > self.timeout

    def expect(self, key: str, adds: int, deletes: set[str]) -> None:
        self._items[key] = (adds, set(deletes), time.monotonic())

    def created(self, key: str, count: int = 1) -> None:
        item = self._items.get(key)
        if item is not None:
            self._items[key] = (item[0] - count, item[1], item[2])

    def deleted(self, key: str, uid: str) -> None:
        item = self._items.get(key)
        if item is not None:
            item[1].discard(uid)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


class DaemonSetController(QueueController):
    component = "daemonset-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = _Expectations()
        self.dss = ctx.informers.informer(RESOURCE)
        self.pods = ctx.informers.informer("pods")
        self.nodes = ctx.informers.informer("nodes")
        self.revisions = ctx.informers.informer(REVISIONS)
        self.pods.add_indexers({OWNER_INDEX: index_by_controller_uid})
        self.revisions.add_indexers({OWNER_INDEX: index_by_controller_uid})
        self.dss.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._ds_deleted
        )
        self.pods.add_event_handler(
            on_add=lambda p: self._pod_event(p, adds=1),
            on_update=self._pod_updated,
            on_delete=lambda p: self._pod_event(p, deletes=1),
        )
        self.nodes.add_event_handler(
            on_add=lambda n: self._enqueue_all(),
            on_update=self._node_updated,
            on_delete=lambda n: self._enqueue_all(),
        )

    # --- handlers -----------------------------------------------------------------------------

    def _enqueue(self, ds: util.Obj) -> None:
        self.queue.add(util.key_of(util.namespace_of(ds), util.name_of(ds)))

    def _enqueue_all(self) -> None:
        for ds in self.dss.store.list():
            self._enqueue(ds)

    def _ds_deleted(self, ds: util.Obj) -> None:
        self.expectations.forget(util.key_of(util.namespace_of(ds), util.name_of(ds)))

    def _owner_key(self, pod: util.Obj) -> str | None:
        ref = util.controller_ref(pod)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        ds = self.dss.store.get_by_name(util.namespace_of(pod), ref.get("name", ""))
        if ds is None or util.uid_of(ds) != ref.get("uid"):
            return None
        return util.key_of(util.namespace_of(pod), ref["name"])

    def _pod_event(self, pod: util.Obj, adds: int = 0, deletes: int = 0) -> None:
        key = self._owner_key(pod)
        if key is not None:
            if adds:
                self.expectations.created(key)
            if deletes or util.meta(pod).get("deletionTimestamp"):
                self.expectations.deleted(key, util.uid_of(pod))
            self.queue.add(key)

    def _pod_updated(self, old: util.Obj, new: util.Obj) -> None:
        if util.meta(old).get("resourceVersion") == util.meta(new).get("resourceVersion"):
            return
        key = self._owner_key(new)
        if key is None:
            return
        if util.meta(new).get("deletionTimestamp"):
            self.expectations.deleted(key, util.uid_of(new))
        self.queue.add(key)
        ds = self.dss.store.get(key)
        mrs = int(((ds or {}).get("spec") or {}).get("minReadySeconds") or 0)
        if mrs > 0 and util.is_pod_ready(new) and not util.is_pod_ready(old):
            self.queue.add_after(key, mrs + 1)

    def _node_updated(self, old: util.Obj, new: util.Obj) -> None:
        def shape(n: util.Obj) -> Any:
            spec = n.get("spec") or {}
            conds = {c.get("type"): c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
            return (util.meta(n).get("labels"), spec.get("taints"), spec.get("unschedulable"), conds)

        if shape(old) != shape(new):
            self._enqueue_all()

    # --- node predicates ----------------------------------------------------------------------

    @staticmethod
    def should_run(ds: util.Obj, node: util.Obj) -> tuple[bool, bool]:
        """(should run a new pod there, may keep an existing one) — NodeShouldRunDaemonPod."""
        template_spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
        if template_spec.get("nodeName") and template_spec["nodeName"] != util.name_of(node):
            return False, False
        add_daemon_tolerations(template_spec)
        if not nodematch.node_selector_matches(template_spec, node):
            return False, False
        taints = (node.get("spec") or {}).get("taints") or []
        tolerations = template_spec.get("tolerations") or []
        if nodematch.untolerated(tolerations, taints, ("NoExecute",)):
            return False, False
        if nodematch.untolerated(tolerations, taints, ("NoSchedule",)):
            return False, True
        return True, True

    # --- history ------------------------------------------------------------------------------

    def _revisions(self, ds: util.Obj) -> list[util.Obj]:
        return list(self.revisions.store.by_index(OWNER_INDEX, util.uid_of(ds)))

    async def _construct_history(self, ds: util.Obj) -> tuple[util.Obj, list[util.Obj]]:
        """The current revision (created, or re-numbered after a rollback) and the old ones."""
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        collision = int((ds.get("status") or {}).get("collisionCount") or 0)
        revisions = self._revisions(ds)
        data = {"spec": {"template": {**copy.deepcopy(template), "$patch": "replace"}}}
        max_rev = max((int(r.get("revision") or 0) for r in revisions), default=0)
        current = [r for r in revisions if r.get("data") == data]
        old = [r for r in revisions if r.get("data") != data]
        if current:
            cur = max(current, key=lambda r: int(r.get("revision") or 0))
            for dup in current:
                if dup is not cur:
                    old.append(dup)
            if int(cur.get("revision") or 0) < max_rev:
                body = {**copy.deepcopy(cur), "revision": max_rev + 1}
                cur = await self.client.update(REVISIONS, body, util.namespace_of(ds))
            return cur, old
        while True:
            hash_ = compute_hash(template, collision)
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            labels[HASH_LABEL] = hash_
            body = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": f"{util.name_of(ds)}-{hash_}",
                    "namespace": util.namespace_of(ds),
                    "labels": labels,
                    "annotations": dict(util.meta(ds).get("annotations") or {}),
                    "ownerReferences": [util.controller_reference(ds, "DaemonSet", "apps/v1")],
                },
                "data": data,
                "revision": max_rev + 1,
            }
            body["metadata"]["annotations"].pop("kubectl.kubernetes.io/last-applied-configuration", None)
            try:
                cur = await self.client.create(REVISIONS, body, util.namespace_of(ds))
                return cur, old
            except ApiError as exc:
                if not exc.already_exists:
                    raise
            existing = await self.client.get(REVISIONS, body["metadata"]["name"], util.namespace_of(ds))
            if existing.get("data") == data and (util.controller_ref(existing) or {}).get(
                "uid"
            ) == util.uid_of(ds):
                return existing, old
            collision += 1  # a different template with the same hash: kube's collisionCount
            await self._patch_status(ds, {"collisionCount": collision})

    async def _cleanup_history(self, ds: util.Obj, old: list[util.Obj], pods: list[util.Obj]) -> None:
        limit = (ds.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        if len(old) <= limit:
            return
        live_hashes = {(util.meta(p).get("labels") or {}).get(HASH_LABEL) for p in pods}
        removable = [
            r
            for r in sorted(old, key=lambda r: int(r.get("revision") or 0))
            if (util.meta(r).get("labels") or {}).get(HASH_LABEL) not in live_hashes
        ]
        for rev in removable[: len(old) - limit]:
            try:
                await self.client.delete(REVISIONS, util.name_of(rev), util.namespace_of(rev))
            except ApiError as exc:
                if not exc.not_found:
                    raise

    # --- sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ds = self.dss.store.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        ds = {"kind": "DaemonSet", "apiVersion": "apps/v1", **copy.deepcopy(ds)}
        if util.meta(ds).get("deletionTimestamp"):
            return
        spec = ds.get("spec") or {}
        selector = selector_from_dict(spec.get("selector"))
        cur, old_revs = await self._construct_history(ds)
        hash_ = (util.meta(cur).get("labels") or {}).get(HASH_LABEL) or compute_hash(
            spec.get("template") or {}, 0
        )
        ns, name = util.namespace_of(ds), util.name_of(ds)

        async def fresh() -> util.Obj | None:
            try:
                return await self.client.get(RESOURCE, name, ns)
            except ApiError as exc:
                if exc.not_found:
                    return None
                raise

        candidates = [p for p in self.pods.store.list(ns) if not util.meta(p).get("deletionTimestamp")]
        pods = await util.claim(self.client, "pods", ds, "DaemonSet", "apps/v1", selector, candidates, fresh)
        by_node: dict[str, list[util.Obj]] = {}
        for pod in pods:
            node = target_node(pod)
            if node:
                by_node.setdefault(node, []).append(pod)
        error: Exception | None = None
        if self.expectations.satisfied(key):
            try:
                await self._manage(key, ds, by_node, hash_)
            except Exception as exc:
                error = exc
        await self._cleanup_history(ds, old_revs, pods)
        await self._update_status(ds, by_node, hash_)
        if error is not None:
            raise error

    def _is_new(self, pod: util.Obj, hash_: str) -> bool:
        return (util.meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_

    async def _manage(self, key: str, ds: util.Obj, by_node: dict[str, list[util.Obj]], hash_: str) -> None:
        spec = ds.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        rolling = (strategy.get("type") or "RollingUpdate") == "RollingUpdate"
        ru = strategy.get("rollingUpdate") or {}
        nodes = {util.name_of(n): n for n in self.nodes.store.list()}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        desired_nodes = [n for n, node in nodes.items() if self.should_run(ds, node)[0]]
        desired = len(desired_nodes)
        max_surge = scaled(ru.get("maxSurge"), desired, 0) if rolling else 0
        max_unavailable = scaled(ru.get("maxUnavailable"), desired, 1) if rolling else 0
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1

        create_on: list[str] = []
        delete: list[util.Obj] = []
        for node_name, pods in by_node.items():
            if node_name not in nodes:
                delete.extend(pods)  # the node is gone
        for node_name, node in nodes.items():
            run, keep = self.should_run(ds, node)
            pods = by_node.get(node_name, [])
            if run and not pods:
                create_on.append(node_name)
            elif keep and pods:
                failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
                delete.extend(failed)
                alive = sorted(
                    (p for p in pods if p not in failed),
                    key=lambda p: util.meta(p).get("creationTimestamp", ""),
                )
                if not alive and run:
                    create_on.append(node_name)
                if len(alive) > 1:
                    if (
                        max_surge > 0
                        and len(alive) == 2
                        and self._is_new(alive[0], hash_) != self._is_new(alive[1], hash_)
                    ):
                        continue  # an old pod and its surge replacement
                    delete.extend(alive[1:])
            elif not keep and pods:
                delete.extend(pods)

        if rolling:
            extra_create, extra_delete = self._rolling(
                by_node, nodes, ds, hash_, desired_nodes, max_surge, max_unavailable, min_ready, now
            )
            create_on += [n for n in extra_create if n not in create_on]
            delete += [p for p in extra_delete if p not in delete]

        create_on = create_on[:BURST]
        delete = delete[:BURST]
        if not create_on and not delete:
            return
        self.expectations.expect(key, len(create_on), {util.uid_of(p) for p in delete})
        template = spec.get("template") or {}
        pending = list(create_on)

        async def create_one() -> None:
            node = pending.pop(0)
            body = util.pod_from_template(template, ds, "DaemonSet", "apps/v1")
            body["metadata"]["labels"][HASH_LABEL] = hash_
            add_daemon_tolerations(body["spec"])
            pin_to_node(body["spec"], node)
            try:
                pod = await self.client.create("pods", body, util.namespace_of(ds))
            except ApiError as exc:
                self.recorder.event(
                    ds,
                    events.WARNING,
                    events.FAILED_CREATE,
                    f"Error creating: {exc.status.get('message', exc)}",
                )
                raise
            self.recorder.event(
                ds, events.NORMAL, events.SUCCESSFUL_CREATE, f"Created pod: {util.name_of(pod)}"
            )

        first_error: Exception | None = None
        if create_on:
            done, err = await util.slow_start_batch(len(create_on), 1, create_one)
            if done < len(create_on):
                self.expectations.created(key, len(create_on) - done)
            first_error = err
        for pod in delete:
            try:
                await self.client.delete("pods", util.name_of(pod), util.namespace_of(pod))
            except ApiError as exc:
                self.expectations.deleted(key, util.uid_of(pod))
                if exc.not_found:
                    continue
                first_error = first_error or exc
                continue
            self.recorder.event(
                ds, events.NORMAL, events.SUCCESSFUL_DELETE, f"Deleted pod: {util.name_of(pod)}"
            )
        if first_error is not None:
            raise first_error

    def _rolling(
        self,
        by_node: dict[str, list[util.Obj]],
        nodes: dict[str, util.Obj],
        ds: util.Obj,
        hash_: str,
        desired_nodes: list[str],
        max_surge: int,
        max_unavailable: int,
        min_ready: int,
        now: float,
    ) -> tuple[list[str], list[util.Obj]]:
        """kube's rollingUpdate: which nodes get a new pod (surge) and which old pods go."""
        create: list[str] = []
        delete: list[util.Obj] = []
        candidates: list[util.Obj] = []
        unavailable = 0
        surging = 0

        def available(p: util.Obj) -> bool:
            return util.is_pod_available(p, min_ready, now)

        plans: list[tuple[str, util.Obj | None, util.Obj | None]] = []
        for node_name in desired_nodes:
            pods = [p for p in by_node.get(node_name, []) if (p.get("status") or {}).get("phase") != "Failed"]
            new = next((p for p in pods if self._is_new(p, hash_)), None)
            old = next((p for p in pods if not self._is_new(p, hash_)), None)
            plans.append((node_name, new, old))
        if max_surge == 0:
            for _node, new, old in plans:
                if old is None and new is None:
                    unavailable += 1
                elif old is None:
                    if new is not None and not available(new):
                        unavailable += 1
                elif not available(old):
                    delete.append(old)  # unavailable already: replacing it costs nothing
                else:
                    candidates.append(old)
            budget = max(max_unavailable - unavailable, 0)
            delete += candidates[:budget]
            return create, delete
        for _node, new, old in plans:
            if old is not None and new is not None and not available(new):
                surging += 1
        for node_name, new, old in plans:
            if old is None:
                continue
            if new is None:
                if not available(old):
                    delete.append(old)
                elif surging < max_surge:
                    create.append(node_name)
                    surging += 1
            elif available(new):
                delete.append(old)
        return create, delete

    # --- status -------------------------------------------------------------------------------

    async def _patch_status(self, ds: util.Obj, fields: util.Obj) -> None:
        try:
            await self.client.patch(
                RESOURCE,
                util.name_of(ds),
                {"status": fields},
                namespace=util.namespace_of(ds),
                subresource="status",
            )
        except ApiError as exc:
            if not exc.not_found:
                raise

    async def _update_status(self, ds: util.Obj, by_node: dict[str, list[util.Obj]], hash_: str) -> None:
        spec = ds.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        desired = current = misscheduled = ready = available = updated = 0
        for node in self.nodes.store.list():
            run, _keep = self.should_run(ds, node)
            pods = [
                p for p in by_node.get(util.name_of(node), []) if not util.meta(p).get("deletionTimestamp")
            ]
            if run:
                desired += 1
                if pods:
                    current += 1
                    pod = sorted(pods, key=lambda p: util.meta(p).get("creationTimestamp", ""))[0]
                    newest = [p for p in pods if self._is_new(p, hash_)]
                    if newest:
                        updated += 1
                        pod = newest[0] if util.is_pod_ready(newest[0]) else pod
                    if util.is_pod_ready(pod):
                        ready += 1
                        if util.is_pod_available(pod, min_ready, now):
                            available += 1
            elif pods:
                misscheduled += 1
        old = ds.get("status") or {}
        status = {
            **{k: v for k, v in old.items() if k in ("collisionCount", "conditions")},
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "observedGeneration": util.meta(ds).get("generation"),
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
        }
        status = {k: v for k, v in status.items() if v not in (None, 0)} | {
            k: status[k]
            for k in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady")
        }
        if {k: v for k, v in old.items() if v not in (None, 0)} != {
            k: v for k, v in status.items() if v not in (None, 0)
        }:
            body = copy.deepcopy(ds)
            body["status"] = status
            try:
                await self.client.update(RESOURCE, body, util.namespace_of(ds), subresource="status")
            except ApiError as exc:
                if not exc.not_found:
                    raise
        if min_ready > 0 and ready > available:
            self.queue.add_after(util.key_of(util.namespace_of(ds), util.name_of(ds)), float(min_ready))


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="daemonset",
            factory=DaemonSetController,
            description="runs one pod of each DaemonSet on every eligible node; rolling updates",
            workers=2,
        )
    ]
