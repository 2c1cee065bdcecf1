"""The node's streaming server (the kubelet's port 10250 role): ``kubectl logs``, ``exec`` and
``port-forward`` (kubectl's SPDY-in-WebSocket and the Python client's WebSocket protocol),
served per node over HTTPS for the API server to proxy.

It is its own component (``kubelet-streams``) in the ``kubelet`` group, so ``--disable
kubelet`` turns it off too. It starts just before the kubelet: on an agent it first fetches and
checks the server's CA (a ``K10<sha256>::node:<secret>`` join token, k3s style; see
:mod:`.join`), so every API client of the agent verifies the server. It finds containers
through ``RunContext.shared["kubelet"].find_container(...)``, which the kubelet publishes.

Endpoints (bearer node token): ``GET /containerLogs/NS/POD/CONTAINER``, WebSocket
``/exec/NS/POD/CONTAINER``, ``/attach/...`` (answers 501) and ``/portforward/NS/POD``.
The port goes into ``RunContext.shared["kubelet.streams_port"]``, from where the kubelet writes
it to ``Node.status.daemonEndpoints.kubeletEndpoint.Port`` (checked and patched here too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from kybern import hookimpl
from kybern.components import ComponentSpec

if TYPE_CHECKING:
    from kybern.components import RunContext
    from kybern.plugins.nodestreams.component import StreamsComponent

DEFAULT_PORT = 10250


def _factory(ctx: RunContext) -> StreamsComponent:
    from kybern.plugins.nodestreams.component import StreamsComponent

    return StreamsComponent(ctx)


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="kubelet-streams",
            factory=_factory,  # type: ignore[arg-type]
            group="kubelet",
            roles=frozenset({"agent"}),
            # before the kubelet: on an agent, the server's CA must be trusted before any API call
            order=55,
            description="Node streaming server: logs, exec and port-forward for the API server",
        )
    ]


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    return [
        click.Option(
            ["--kubelet-port"],
            type=click.IntRange(0, 65535),
            default=None,
            help=f"HTTPS port of the node's streaming server (logs/exec); 0: any free port "
            f"[default: {DEFAULT_PORT}, or a free port when taken]",
        )
    ]
