"""The Podman container runtime plugin (``--runtime podman``).

Registered as the ``podman`` entry point in the ``kybern.plugins`` group; node agents find it
through the ``kybern_container_runtimes`` hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kybern import hookimpl
from kybern.hooktypes import RuntimeSpec

if TYPE_CHECKING:
    from kybern.components import RunContext
    from kybern.runtimes.podman.runtime import PodmanRuntime


def create_runtime(context: RunContext) -> PodmanRuntime:
    """The runtime for one node agent, configured from ``podman_*`` options (or
    ``KYBERN_PODMAN_*`` variables); see :class:`~kybern.runtimes.podman.config.PodmanConfig`."""
    from kybern.runtimes.podman.config import PodmanConfig
    from kybern.runtimes.podman.runtime import PodmanRuntime

    cfg = context.config
    return PodmanRuntime(PodmanConfig.from_extra(cfg.data_dir, cfg.node_name, cfg.extra))


@hookimpl
def kybern_container_runtimes() -> list[RuntimeSpec]:
    return [RuntimeSpec("podman", create_runtime, "Podman pods and containers over the REST socket")]
