"""The Podman container runtime plugin (``--runtime podman``).

Registered as the ``podman`` entry point in the ``kybern.plugins`` group; node agents find it
through the ``kybern_container_runtimes`` hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
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


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    """Where the Podman runtime of this node's agent keeps its state (values reach
    ``Config.extra['podman_*']``; KYBERN_PODMAN_* environment variables work too)."""
    return [
        click.Option(
            ["--podman-socket"], help="Podman REST socket (default: system socket, else own service)"
        ),
        click.Option(
            ["--podman-isolated"],
            is_flag=True,
            default=None,
            help="own Podman service and storage under DATA_DIR/podman (several agents per machine)",
        ),
        click.Option(["--podman-root"], help="Podman storage root for the agent's own service"),
        click.Option(["--podman-runroot"], help="Podman run root for the agent's own service"),
        click.Option(["--podman-containers-conf"], help="containers.conf for the agent's own service"),
        click.Option(["--podman-network"], help="Podman network pods join by default"),
    ]
