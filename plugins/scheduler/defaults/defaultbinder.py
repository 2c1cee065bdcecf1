"""DefaultBinder: binds through the pods/binding subresource, as kube-scheduler does."""

from __future__ import annotations

from collections.abc import Awaitable

from kybern import hookimpl
from kybern.client import ApiError
from kybern.scheduling import CycleState, PodInfo

SCHEDULER_PLUGIN_NAME = "DefaultBinder"
SCHEDULER_DEFAULT_ENABLED = True


async def _bind(state: CycleState, pod: PodInfo, node_name: str) -> str | None:
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
    }
    try:
        await state.client.create(
            "pods", binding, namespace=pod.namespace, name=pod.name, subresource="binding"
        )
    except ApiError as exc:
        return str(exc)
    return None


@hookimpl
def kybern_sched_bind(state: CycleState, pod: PodInfo, node_name: str) -> Awaitable[str | None]:
    return _bind(state, pod, node_name)
