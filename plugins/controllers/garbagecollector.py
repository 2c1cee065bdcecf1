"""The garbage collector (kube's pkg/controller/garbagecollector): ownerReferences across kinds.

One informer per served resource (from discovery) feeds a graph keyed by UID: an object whose
owners are all gone is deleted (with the policy its own finalizers ask for, Background
otherwise); an owner being deleted in the foreground (``foregroundDeletion`` finalizer) gets
its dependents deleted and loses the finalizer once no dependent with blockOwnerDeletion is
left; an owner with the ``orphan`` finalizer has its reference removed from every dependent,
then loses the finalizer. "Gone" is always confirmed with a live GET (the owner's informer
may simply lag behind the dependent's), comparing UIDs so a re-created namesake is no owner.

Work items are ``"<action>:<uid>"``: ``delete`` (check a dependent's owners), ``foreground``
and ``orphan`` (owners being deleted).
"""

from __future__ import annotations

import asyncio

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.informers import SharedInformer, index_by_owner_uid, object_key
from kybern.plugins.controllers import util
from kybern.plugins.controllers.apiresources import ApiResource, served_resources
from kybern.plugins.controllers.base import QueueController
from loguru import logger

log = logger.bind(component="garbage-collector")

OWNER_INDEX = "gc-owner-uid"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
#: kube's GC ignores these (high churn, never owners or dependents worth tracking)
IGNORED = frozenset({"events", "events.events.k8s.io"})


class GarbageCollector(QueueController):
    component = "garbage-collector-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.resources: dict[str, ApiResource] = {}
        #: (group, kind) -> resource, to find an owner from its reference
        self.by_kind: dict[tuple[str, str], ApiResource] = {}
        self.informers: dict[str, SharedInformer] = {}
        #: uid -> (resource name, cache key)
        self.nodes: dict[str, tuple[str, str]] = {}

    # --- graph --------------------------------------------------------------------------------

    async def _discover(self) -> None:
        for res in await served_resources(self.client):
            if res.name in IGNORED or not {"list", "watch", "delete"} <= res.verbs:
                continue
            self.resources[res.name] = res
            self.by_kind[(res.group, res.kind)] = res
            if res.name in self.informers:
                continue
            inf = self.ctx.informers.informer(res.name)
            inf.add_indexers({OWNER_INDEX: index_by_owner_uid})
            name = res.name
            inf.add_event_handler(
                on_add=lambda o, n=name: self._observe(n, None, o),
                on_update=lambda old, new, n=name: self._observe(n, old, new),
                on_delete=lambda o, n=name: self._gone(o),
            )
            self.informers[name] = inf

    def _observe(self, resource: str, old: util.Obj | None, obj: util.Obj) -> None:
        m = util.meta(obj)
        uid = m.get("uid")
        if not uid:
            return
        self.nodes[uid] = (resource, object_key(obj))
        if m.get("deletionTimestamp"):
            finalizers = m.get("finalizers") or []
            if FOREGROUND in finalizers:
                self.queue.add(f"foreground:{uid}")
            if ORPHAN in finalizers:
                self.queue.add(f"orphan:{uid}")
        refs = m.get("ownerReferences") or []
        if refs and (
            old is None
            or (util.meta(old).get("ownerReferences") or []) != refs
            or any(r.get("uid") not in self.nodes for r in refs)
        ):
            self.queue.add(f"delete:{uid}")
        if old is not None and old is not obj:
            # an owner that was being deleted in the foreground waits on this one
            for ref in refs:
                if ref.get("uid") in self.nodes:
                    self.queue.add(f"foreground:{ref['uid']}")

    def _gone(self, obj: util.Obj) -> None:
        m = util.meta(obj)
        uid = m.get("uid")
        if not uid:
            return
        self.nodes.pop(uid, None)
        for dep in self.dependents(uid):
            self.queue.add(f"delete:{util.uid_of(dep)}")
        for ref in m.get("ownerReferences") or []:
            if ref.get("uid"):
                self.queue.add(f"foreground:{ref['uid']}")

    def dependents(self, uid: str) -> list[util.Obj]:
        out: list[util.Obj] = []
        for inf in self.informers.values():
            out.extend(inf.store.by_index(OWNER_INDEX, uid))
        return out

    def cached(self, uid: str) -> tuple[ApiResource, util.Obj] | None:
        node = self.nodes.get(uid)
        if node is None:
            return None
        res, key = node
        obj = self.informers[res].store.get(key)
        if obj is None or util.uid_of(obj) != uid:
            return None
        return self.resources[res], obj

    async def _owner_state(self, dependent: util.Obj, ref: util.Obj) -> tuple[str, util.Obj | None]:
        """("solid" | "dangling" | "waiting", the owner as found)."""
        known = self.cached(ref.get("uid", ""))
        if known is not None:
            m = util.meta(known[1])
            if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or []):
                return "waiting", known[1]
            return "solid", known[1]
        api_version = ref.get("apiVersion") or ""
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
        res = self.by_kind.get((group, ref.get("kind", "")))
        if res is None:
            return "solid", None  # an unknown kind: never delete on a guess (kube keeps it too)
        ns = util.namespace_of(dependent) if res.namespaced else None
        if res.namespaced and not ns:
            return "dangling", None  # a cluster-scoped object cannot be owned by a namespaced one
        try:
            owner = await self.client.get(res.name, ref.get("name", ""), ns)
        except ApiError as exc:
            if exc.not_found:
                return "dangling", None
            raise
        if util.uid_of(owner) != ref.get("uid"):
            return "dangling", None
        m = util.meta(owner)
        if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or []):
            return "waiting", owner
        return "solid", owner

    # --- sync ---------------------------------------------------------------------------------

    async def run(self, workers: int) -> None:
        while True:
            try:
                await self._discover()
                break
            except Exception as exc:
                log.warning("discovery failed, retrying: {}", exc)
                await asyncio.sleep(2)
        await asyncio.gather(*(inf.wait_for_sync() for inf in self.informers.values()))
        await super().run(workers)

    async def sync(self, item: str) -> None:
        action, _, uid = item.partition(":")
        if action == "delete":
            await self._attempt_to_delete(uid)
        elif action == "foreground":
            await self._process_foreground(uid)
        elif action == "orphan":
            await self._process_orphan(uid)

    async def _attempt_to_delete(self, uid: str) -> None:
        found = self.cached(uid)
        if found is None:
            return
        res, obj = found
        m = util.meta(obj)
        refs = m.get("ownerReferences") or []
        if not refs:
            return
        if m.get("deletionTimestamp") and FOREGROUND not in (m.get("finalizers") or []):
            return  # already going
        solid: list[util.Obj] = []
        dangling: list[util.Obj] = []
        waiting: list[util.Obj] = []
        for ref in refs:
            state, _owner = await self._owner_state(obj, ref)
            {"solid": solid, "dangling": dangling, "waiting": waiting}[state].append(ref)
        if solid:
            gone = [r["uid"] for r in dangling + waiting if r.get("uid")]
            if gone:
                await self._remove_owner_refs(res, obj, gone)
            return
        if m.get("deletionTimestamp"):
            return
        finalizers = m.get("finalizers") or []
        if waiting and self.dependents(uid):
            policy = "Foreground"
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        log.debug("deleting {} {} (owners gone), propagation {}", res.kind, object_key(obj), policy)
        try:
            await self.client.delete(
                res.name,
                util.name_of(obj),
                util.namespace_of(obj),
                propagation_policy=policy,
                preconditions={"uid": uid},
            )
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    async def _remove_owner_refs(self, res: ApiResource, obj: util.Obj, uids: list[str]) -> None:
        patch = {
            "metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": u} for u in uids],
                "uid": util.uid_of(obj),
            }
        }
        try:
            await self.client.patch(
                res.name, util.name_of(obj), patch, patch_type="strategic", namespace=util.namespace_of(obj)
            )
        except ApiError as exc:
            if not (exc.not_found or exc.code == 422 or exc.conflict):
                raise

    async def _remove_finalizer(self, res: ApiResource, obj: util.Obj, finalizer: str) -> None:
        name, ns = util.name_of(obj), util.namespace_of(obj)
        for _ in range(5):
            m = util.meta(obj)
            finalizers = m.get("finalizers") or []
            if finalizer not in finalizers or util.uid_of(obj) == "":
                return
            patch = {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != finalizer],
                    "resourceVersion": m.get("resourceVersion"),
                }
            }
            try:
                await self.client.patch(res.name, name, patch, namespace=ns)
                return
            except ApiError as exc:
                if exc.not_found:
                    return
                if not exc.conflict:
                    raise
            try:
                fresh = await self.client.get(res.name, name, ns)
            except ApiError as exc:
                if exc.not_found:
                    return
                raise
            if util.uid_of(fresh) != util.uid_of(obj):
                return
            obj = fresh
        raise RuntimeError(f"could not remove finalizer {finalizer} from {res.kind} {ns}/{name}")

    async def _process_foreground(self, uid: str) -> None:
        found = self.cached(uid)
        if found is None:
            return
        res, owner = found
        m = util.meta(owner)
        if not m.get("deletionTimestamp") or FOREGROUND not in (m.get("finalizers") or []):
            return
        blocking = []
        for dep in self.dependents(uid):
            ref = next((r for r in util.meta(dep).get("ownerReferences") or [] if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking.append(dep)
            # every dependent goes (kube's attemptToDelete decides its own policy)
            if not util.meta(dep).get("deletionTimestamp") or FOREGROUND in (
                util.meta(dep).get("finalizers") or []
            ):
                self.queue.add(f"delete:{util.uid_of(dep)}")
        if blocking:
            # each dependent's deletion enqueues this owner again (see _gone/_observe)
            return
        log.debug("foreground deletion of {} {}: no blocking dependents left", res.kind, object_key(owner))
        await self._remove_finalizer(res, owner, FOREGROUND)

    async def _process_orphan(self, uid: str) -> None:
        found = self.cached(uid)
        if found is None:
            return
        res, owner = found
        m = util.meta(owner)
        if not m.get("deletionTimestamp") or ORPHAN not in (m.get("finalizers") or []):
            return
        for dep in self.dependents(uid):
            node = self.cached(util.uid_of(dep))
            if node is not None:
                await self._remove_owner_refs(node[0], dep, [uid])
        await self._remove_finalizer(res, owner, ORPHAN)


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="garbagecollector",
            factory=GarbageCollector,
            description="deletes objects whose owners are gone; foreground and orphan propagation",
            workers=10,
        )
    ]
