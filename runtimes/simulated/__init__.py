"""The simulated container runtime (``--runtime simulated``): hollow nodes for scale tests.

Nothing runs: sandboxes and containers are in-memory records that are running as soon as
they are started, pods get fake IPs, logs and exec answer honestly that nothing is there.
One process can drive thousands of such nodes (kubemark's hollow kubelet, kwok's fake nodes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kybern import hookimpl
from kybern.hooktypes import RuntimeSpec

if TYPE_CHECKING:
    from kybern.components import RunContext
    from kybern.runtimes.simulated.runtime import SimulatedRuntime


def create_runtime(context: RunContext) -> SimulatedRuntime:
    """A runtime for one (hollow) node. ``Config.extra['simulated_pod_cidr']`` (or the
    ``pod_cidr`` argument of :class:`SimulatedRuntime`) picks the addresses pods get."""
    from kybern.runtimes.simulated.runtime import SimulatedRuntime

    extra = context.config.extra
    return SimulatedRuntime(node_name=context.config.node_name, pod_cidr=extra.get("simulated_pod_cidr"))


@hookimpl
def kybern_container_runtimes() -> list[RuntimeSpec]:
    return [RuntimeSpec("simulated", create_runtime, "in-memory pods that run at once (hollow nodes)")]
