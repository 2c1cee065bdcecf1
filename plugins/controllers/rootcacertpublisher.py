"""The root CA certificate publisher (kube's pkg/controller/certificates/rootcacertpublisher):
a ``kube-root-ca.crt`` ConfigMap with the cluster CA under ``ca.crt`` in every active namespace,
so pods can trust the API server (the ServiceAccount admission mounts it next to the token).
It is made again when deleted and put back when its data is changed.

The CA is the one the API server of this process publishes (``RunContext.shared["ca_file"]``).
"""

from __future__ import annotations

from pathlib import Path

from kybern import hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec, lost_race
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController
from loguru import logger

log = logger.bind(component="rootcacertpublisher")

CONFIGMAP_NAME = "kube-root-ca.crt"
DATA_KEY = "ca.crt"
#: the annotation kube-controller-manager puts on the ConfigMap
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)
DESCRIPTION_KEY = "kubernetes.io/description"


class RootCACertPublisher(QueueController):
    component = "root-ca-cert-publisher"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ns_informer = ctx.informers.informer("namespaces")
        self.cm_informer = ctx.informers.informer(
            "configmaps", field_selector=f"metadata.name={CONFIGMAP_NAME}"
        )
        self.ns_informer.add_event_handler(
            on_add=self._ns_changed, on_update=lambda old, new: self._ns_changed(new)
        )
        self.cm_informer.add_event_handler(
            on_update=lambda old, new: self._cm_changed(new), on_delete=self._cm_changed
        )
        self._ca: str | None = None

    def _ns_changed(self, ns: util.Obj) -> None:
        self.queue.add(util.name_of(ns))

    def _cm_changed(self, cm: util.Obj) -> None:
        if util.name_of(cm) == CONFIGMAP_NAME and util.namespace_of(cm):
            self.queue.add(str(util.namespace_of(cm)))

    def ca_pem(self) -> str | None:
        """The cluster CA as the API server published it (read once: the CA never changes)."""
        if self._ca is None:
            path = self.ctx.shared.get("ca_file")
            if not path:
                return None
            try:
                self._ca = Path(path).read_text()
            except OSError as exc:
                log.warning("cannot read the cluster CA {}: {}", path, exc)
                return None
        return self._ca

    async def sync(self, key: str) -> None:
        ns = self.ns_informer.store.get(key)
        if ns is None or util.meta(ns).get("deletionTimestamp"):
            return
        if (ns.get("status") or {}).get("phase") == "Terminating":
            return
        ca = self.ca_pem()
        if ca is None:
            log.warning("no cluster CA published in this process: {} is not kept", CONFIGMAP_NAME)
            return
        cm = self.cm_informer.store.get_by_name(key, CONFIGMAP_NAME)
        try:
            if cm is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": CONFIGMAP_NAME,
                        "namespace": key,
                        "annotations": {DESCRIPTION_KEY: DESCRIPTION},
                    },
                    "data": {DATA_KEY: ca},
                }
                await self.client.create("configmaps", body, key)
                return
            annotations = util.meta(cm).get("annotations") or {}
            if cm.get("data") == {DATA_KEY: ca} and annotations.get(DESCRIPTION_KEY) == DESCRIPTION:
                return
            patch = {"metadata": {"annotations": {DESCRIPTION_KEY: DESCRIPTION}}, "data": {DATA_KEY: ca}}
            extra = [k for k in cm.get("data") or {} if k != DATA_KEY]
            for k in extra:  # kube replaces the data wholesale
                patch["data"][k] = None
            await self.client.patch("configmaps", CONFIGMAP_NAME, patch, "merge", namespace=key)
        except ApiError as exc:
            if not lost_race(exc):
                raise


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="rootcacertpublisher",
            factory=RootCACertPublisher,
            description="keeps the kube-root-ca.crt ConfigMap (the cluster CA) in every namespace",
            workers=2,
        )
    ]
