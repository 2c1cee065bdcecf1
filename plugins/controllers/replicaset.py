"""The ReplicaSet controller (kube's pkg/controller/replicaset): keep spec.replicas pods.

Each sync compares the active pods the ReplicaSet controls (after adopting matching orphans
and releasing pods that stopped matching) with spec.replicas, creates the missing ones in
slow-start batches or deletes the surplus (worst pods first), then writes status. Creates and
deletes are remembered as expectations: until the informer shows them, the ReplicaSet is not
counted again, which is what keeps two quick syncs from creating twice.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from kybern import events, hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.labels import Selector, selector_from_dict
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController

RESOURCE = "replicasets.apps"
#: kube's BurstReplicas: at most this many creates/deletes per sync
BURST_REPLICAS = 500


class ReplicaSetController(QueueController):
    """Also the ReplicationController manager's body (``replicationcontroller``), as in kube,
    where the RC manager wraps this controller: subclasses change only the class attributes
    below and how a selector reads."""

    component = "replicaset-controller"
    resource = RESOURCE
    kind = "ReplicaSet"
    api_version = "apps/v1"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = util.Expectations()
        self.rs_informer = ctx.informers.informer(self.resource)
        self.pod_informer = ctx.informers.informer("pods")
        self.rs_informer.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._rs_deleted
        )
        self.pod_informer.add_event_handler(
            on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted
        )

    @staticmethod
    def selector_of(spec: util.Obj) -> Selector:
        """The spec's pod selector (a meta/v1 LabelSelector here)."""
        return selector_from_dict(spec.get("selector"))

    # --- event handlers -----------------------------------------------------------------------

    def _enqueue(self, rs: util.Obj) -> None:
        self.queue.add(util.key_of(util.namespace_of(rs), util.name_of(rs)))

    def _rs_deleted(self, rs: util.Obj) -> None:
        key = util.key_of(util.namespace_of(rs), util.name_of(rs))
        self.expectations.forget(key)
        self.queue.add(key)

    def _owner_key(self, pod: util.Obj, ref: util.Obj | None) -> str | None:
        """Key of the ReplicaSet the reference names, if it is one we know (same UID)."""
        if ref is None or ref.get("kind") != self.kind:
            return None
        rs = self.rs_informer.store.get_by_name(util.namespace_of(pod), ref.get("name", ""))
        if rs is None or util.uid_of(rs) != ref.get("uid"):
            return None
        return util.key_of(util.namespace_of(pod), ref["name"])

    def _matching_sets(self, pod: util.Obj) -> list[str]:
        labels = util.meta(pod).get("labels") or {}
        keys = []
        for rs in self.rs_informer.store.list(util.namespace_of(pod) or ""):
            spec = rs.get("spec") or {}
            if spec.get("selector") and self.selector_of(spec).matches(labels):
                keys.append(util.key_of(util.namespace_of(rs), util.name_of(rs)))
        return keys

    def _pod_added(self, pod: util.Obj) -> None:
        if util.meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        ref = util.controller_ref(pod)
        if ref is not None:
            key = self._owner_key(pod, ref)
            if key is not None:
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for key in self._matching_sets(pod):
            self.queue.add(key)

    def _pod_updated(self, old: util.Obj, new: util.Obj) -> None:
        if util.meta(new).get("resourceVersion") == util.meta(old).get("resourceVersion"):
            return  # a resync: the ReplicaSets' own resync covers it
        if util.meta(new).get("deletionTimestamp") and not util.meta(old).get("deletionTimestamp"):
            self._pod_deleted(new)
            return
        old_ref, new_ref = util.controller_ref(old), util.controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            key = self._owner_key(old, old_ref)
            if key is not None:
                self.queue.add(key)
        if new_ref is not None:
            key = self._owner_key(new, new_ref)
            if key is not None:
                self.queue.add(key)
                rs = self.rs_informer.store.get(key)
                mrs = int(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
                if mrs > 0 and util.is_pod_ready(new) and not util.is_pod_ready(old):
                    # becomes available later without any event: look again then
                    self.queue.add_after(key, mrs + 1)
            return
        if (util.meta(old).get("labels") or {}) != (
            util.meta(new).get("labels") or {}
        ) or old_ref is not None:
            for key in self._matching_sets(new):
                self.queue.add(key)

    def _pod_deleted(self, pod: util.Obj) -> None:
        key = self._owner_key(pod, util.controller_ref(pod))
        if key is not None:
            self.expectations.deletion_observed(key, util.uid_of(pod))
            self.queue.add(key)

    # --- sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.store.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        ns, name = util.namespace_of(rs), util.name_of(rs)
        spec = rs.get("spec") or {}
        selector = self.selector_of(spec)
        rs = {"kind": self.kind, "apiVersion": self.api_version, **rs}
        needs_sync = self.expectations.satisfied(key)
        candidates = [p for p in self.pod_informer.store.list(ns) if util.is_pod_active(p)]

        async def fresh() -> util.Obj | None:
            try:
                return await self.client.get(self.resource, name, ns)
            except ApiError as exc:
                if exc.not_found:
                    return None
                raise

        pods = await util.claim(
            self.client, "pods", rs, self.kind, self.api_version, selector, candidates, fresh
        )
        manage_error: Exception | None = None
        if needs_sync and not util.meta(rs).get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, rs, pods)
            except Exception as exc:
                manage_error = exc
        await self._update_status(key, rs, pods, manage_error)
        if manage_error is not None:
            raise manage_error

    async def _manage_replicas(self, key: str, rs: util.Obj, pods: list[util.Obj]) -> None:
        spec = rs.get("spec") or {}
        desired = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        diff = len(pods) - desired
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, count)
            template = spec.get("template") or {}

            async def create_one() -> None:
                body = util.pod_from_template(template, rs, self.kind, self.api_version)
                try:
                    pod = await self.client.create("pods", body, util.namespace_of(rs))
                except ApiError as exc:
                    self.recorder.event(
                        rs,
                        events.WARNING,
                        events.FAILED_CREATE,
                        f"Error creating: {exc.status.get('message', exc)}",
                    )
                    raise
                self.recorder.event(
                    rs, events.NORMAL, events.SUCCESSFUL_CREATE, f"Created pod: {util.name_of(pod)}"
                )

            done, err = await util.slow_start_batch(count, 1, create_one)
            if done < count:
                # the ones that failed or never ran will not show up in the informer
                self.expectations.creation_observed(key, count - done)
            if err is not None:
                raise err
        elif diff > 0:
            count = min(diff, BURST_REPLICAS)
            victims = util.pods_to_delete(pods, count)
            self.expectations.expect_deletions(key, {util.uid_of(p) for p in victims})

            async def delete_one(pod: util.Obj) -> None:
                try:
                    await self.client.delete("pods", util.name_of(pod), util.namespace_of(pod))
                except ApiError as exc:
                    # it will never be observed as deleted by us
                    self.expectations.deletion_observed(key, util.uid_of(pod))
                    if exc.not_found:
                        return
                    message = f"Error deleting: {exc.status.get('message', exc)}"
                    self.recorder.event(rs, events.WARNING, events.FAILED_DELETE, message)
                    raise
                message = f"Deleted pod: {util.name_of(pod)}"
                self.recorder.event(rs, events.NORMAL, events.SUCCESSFUL_DELETE, message)

            results = await asyncio.gather(*(delete_one(p) for p in victims), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    def _status(self, rs: util.Obj, pods: list[util.Obj], manage_error: Exception | None) -> dict[str, Any]:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = time.time()
        fully = ready = available = 0
        for pod in pods:
            labels = util.meta(pod).get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                fully += 1
            if util.is_pod_ready(pod):
                ready += 1
                if util.is_pod_available(pod, min_ready, now):
                    available += 1
        old = rs.get("status") or {}
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        failure = next((c for c in old.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
        if manage_error is not None:
            desired = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
            reason = "FailedCreate" if len(pods) < desired else "FailedDelete"
            message = (
                manage_error.status.get("message", str(manage_error))
                if isinstance(manage_error, ApiError)
                else str(manage_error)
            )
            if failure and failure.get("reason") == reason and failure.get("message") == message:
                conditions.append(failure)
            else:
                conditions.append(
                    {
                        "type": "ReplicaFailure",
                        "status": "True",
                        "lastTransitionTime": util.now_iso(),
                        "reason": reason,
                        "message": message,
                    }
                )
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": fully,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": util.meta(rs).get("generation"),
        }
        if conditions:
            status["conditions"] = conditions
        # the JSON kube writes: replicas always, the other counts only when non-zero (omitempty)
        return {k: v for k, v in status.items() if k == "replicas" or v not in (None, 0)}

    @staticmethod
    def _same_status(a: dict[str, Any], b: dict[str, Any]) -> bool:
        def norm(s: dict[str, Any]) -> dict[str, Any]:
            out = {k: v for k, v in s.items() if v not in (0, None, [])}
            return out

        return norm(a) == norm(b)

    async def _update_status(
        self, key: str, rs: util.Obj, pods: list[util.Obj], manage_error: Exception | None
    ) -> None:
        status = self._status(rs, pods, manage_error)
        if not self._same_status(rs.get("status") or {}, status):
            body = copy.deepcopy(rs)
            body["status"] = status
            for attempt in range(2):
                try:
                    await self.client.update(self.resource, body, util.namespace_of(rs), subresource="status")
                    break
                except ApiError as exc:
                    if exc.not_found:
                        return
                    if not exc.conflict or attempt == 1:
                        raise
                    latest = await self.client.get(self.resource, util.name_of(rs), util.namespace_of(rs))
                    if util.uid_of(latest) != util.uid_of(rs):
                        return
                    status["observedGeneration"] = util.meta(latest).get("generation")
                    body = {**latest, "status": status}
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        desired = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        if (
            min_ready > 0
            and status.get("readyReplicas", 0) == desired
            and status.get("availableReplicas", 0) != desired
        ):
            self.queue.add_after(key, float(min_ready))


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="replicaset",
            factory=ReplicaSetController,
            description="keeps each ReplicaSet's pods at spec.replicas",
            workers=5,
        )
    ]
