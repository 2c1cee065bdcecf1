"""The namespace controller (kube's pkg/controller/namespace): empties terminating namespaces.

A namespace being deleted carries the ``kubernetes`` finalizer in spec.finalizers (the API
server puts it there on create). This controller deletes every namespaced object in it, of
every served kind, checks again until nothing is left (pods go only once their kubelet has
stopped them, objects with finalizers once their controllers let go), then removes the
finalizer through ``namespaces/NAME/finalize`` and the API server deletes the namespace.
While content remains the status carries kube's NamespaceContentRemaining /
NamespaceFinalizersRemaining / NamespaceDeletionContentFailure conditions.
"""

from __future__ import annotations

import copy
from typing import Any

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.plugins.controllers import util
from kybern.plugins.controllers.apiresources import ApiResource, served_resources
from kybern.plugins.controllers.base import QueueController
from loguru import logger

log = logger.bind(component="namespace-controller")

FINALIZER = "kubernetes"
#: how soon to look again while content is still going away
RECHECK_SECONDS = 1.0


class NamespaceController(QueueController):
    component = "namespace-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ns_informer = ctx.informers.informer("namespaces")
        self.ns_informer.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new)
        )
        self._resources: list[ApiResource] | None = None

    def _enqueue(self, ns: util.Obj) -> None:
        if util.meta(ns).get("deletionTimestamp"):
            self.queue.add(util.name_of(ns))

    async def _namespaced_resources(self) -> list[ApiResource]:
        # discovery once per sync round would be exact but costly: refresh on every namespace
        # that starts terminating is enough (new kinds appear with plugins, i.e. restarts)
        if self._resources is None:
            self._resources = [
                r
                for r in await served_resources(self.client)
                if r.namespaced and {"list", "delete"} <= r.verbs
            ]
        return self._resources

    async def sync(self, key: str) -> None:
        ns = self.ns_informer.store.get(key)
        if ns is None or not util.meta(ns).get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining: dict[str, int] = {}
        finalizers_left: dict[str, int] = {}
        failures: list[str] = []
        for res in await self._namespaced_resources():
            try:
                items = (await self.client.list(res.name, key)).get("items") or []
            except ApiError as exc:
                if exc.code in (404, 405):
                    continue
                failures.append(f"{res.name}: {exc}")
                continue
            if not items:
                continue
            remaining[res.name] = len(items)
            for item in items:
                m = util.meta(item)
                for f in m.get("finalizers") or []:
                    finalizers_left[f] = finalizers_left.get(f, 0) + 1
                if m.get("deletionTimestamp"):
                    continue
                try:
                    await self.client.delete(
                        res.name,
                        util.name_of(item),
                        key,
                        propagation_policy="Background",
                        preconditions={"uid": util.uid_of(item)},
                    )
                except ApiError as exc:
                    if not (exc.not_found or exc.conflict):
                        failures.append(f"{res.name} {util.name_of(item)}: {exc}")
        await self._set_conditions(ns, remaining, finalizers_left, failures)
        if remaining or failures:
            log.debug("namespace {}: waiting for {}", key, remaining or failures)
            self.queue.add_after(key, RECHECK_SECONDS)
            return
        body = copy.deepcopy(ns)
        body.setdefault("kind", "Namespace")
        body.setdefault("apiVersion", "v1")
        body["spec"] = {
            **(body.get("spec") or {}),
            "finalizers": [f for f in body["spec"].get("finalizers") or [] if f != FINALIZER],
        }
        try:
            await self.client.update("namespaces", body, subresource="finalize")
        except ApiError as exc:
            if not exc.not_found:
                raise
        log.info("namespace {} emptied and finalized", key)

    async def _set_conditions(
        self, ns: util.Obj, remaining: dict[str, int], finalizers: dict[str, int], failures: list[str]
    ) -> None:
        def cond(type_: str, bad: bool, reason_bad: str, message: str, reason_ok: str) -> dict[str, Any]:
            return {
                "type": type_,
                "status": "True" if bad else "False",
                "reason": reason_bad if bad else reason_ok,
                "message": message if bad else "",
            }

        wanted = [
            cond(
                "NamespaceDeletionContentFailure",
                bool(failures),
                "ContentDeletionFailed",
                "; ".join(failures)[:1000],
                "ContentDeleted",
            ),
            cond(
                "NamespaceContentRemaining",
                bool(remaining),
                "SomeResourcesRemain",
                "Some resources are remaining: "
                + ", ".join(f"{r} has {n} resource instances" for r, n in sorted(remaining.items())),
                "ContentRemoved",
            ),
            cond(
                "NamespaceFinalizersRemaining",
                bool(finalizers),
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: "
                + ", ".join(f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())),
                "ContentHasNoFinalizers",
            ),
        ]
        old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or []}
        changed = False
        conditions = []
        for c in wanted:
            prev = old.get(c["type"])
            if prev and all(prev.get(k, "") == c[k] for k in ("status", "reason", "message")):
                conditions.append(prev)
                continue
            changed = True
            conditions.append({**c, "lastTransitionTime": util.now_iso()})
        if not changed:
            return
        try:
            await self.client.patch(
                "namespaces", util.name_of(ns), {"status": {"conditions": conditions}}, subresource="status"
            )
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                log.debug("namespace {} status: {}", util.name_of(ns), exc)


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="namespace",
            factory=NamespaceController,
            description="deletes the content of terminating namespaces, then finalizes them",
            workers=10,
        )
    ]
