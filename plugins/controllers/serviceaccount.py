"""The service account controller (kube's pkg/controller/serviceaccount): a ``default``
ServiceAccount in every active namespace, created when the namespace appears and again
whenever it is deleted (pods reference it by default, so it must always be there)."""

from __future__ import annotations

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec, lost_race
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController

DEFAULT_NAME = "default"


class ServiceAccountController(QueueController):
    component = "service-account-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ns_informer = ctx.informers.informer("namespaces")
        self.sa_informer = ctx.informers.informer("serviceaccounts")
        self.ns_informer.add_event_handler(
            on_add=self._ns_changed, on_update=lambda old, new: self._ns_changed(new)
        )
        self.sa_informer.add_event_handler(on_delete=self._sa_deleted)

    def _ns_changed(self, ns: util.Obj) -> None:
        self.queue.add(util.name_of(ns))

    def _sa_deleted(self, sa: util.Obj) -> None:
        if util.name_of(sa) == DEFAULT_NAME and util.namespace_of(sa):
            self.queue.add(str(util.namespace_of(sa)))

    async def sync(self, key: str) -> None:
        ns = self.ns_informer.store.get(key)
        if ns is None or util.meta(ns).get("deletionTimestamp"):
            return
        if (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.sa_informer.store.get_by_name(key, DEFAULT_NAME) is not None:
            return
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_NAME, "namespace": key},
        }
        try:
            await self.client.create("serviceaccounts", body, key)
        except ApiError as exc:
            if not lost_race(exc):
                raise


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="serviceaccount",
            factory=ServiceAccountController,
            description="keeps a default ServiceAccount in every namespace",
            workers=3,
        )
    ]
