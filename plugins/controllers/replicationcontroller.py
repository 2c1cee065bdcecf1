"""The ReplicationController manager (kube's pkg/controller/replication).

kube builds it from the ReplicaSet controller with an adapter that converts RCs to ReplicaSets;
here it is the same controller class reading ``replicationcontrollers`` instead: the same
adoption, expectations, slow-start creates, deletion order and status (replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration, ReplicaFailure).
Only the selector differs: an RC selects with a plain label map.
"""

from __future__ import annotations

from kybern import hookimpl
from kybern.controllers import ControllerSpec
from kybern.labels import Selector, selector_from_dict
from kybern.plugins.controllers import util
from kybern.plugins.controllers.replicaset import ReplicaSetController

RESOURCE = "replicationcontrollers"


class ReplicationManager(ReplicaSetController):
    component = "replication-controller"
    resource = RESOURCE
    kind = "ReplicationController"
    api_version = "v1"

    @staticmethod
    def selector_of(spec: util.Obj) -> Selector:
        """labels.SelectorFromSet(spec.selector); validation keeps it non-empty."""
        labels = spec.get("selector")
        return selector_from_dict({"matchLabels": labels} if labels else None)


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="replicationcontroller",
            factory=ReplicationManager,
            description="keeps each ReplicationController's pods at spec.replicas",
            workers=5,
        )
    ]
