"""The node agent (kubelet role): registers the node, runs the pods bound to it on a
container runtime plugin, and reports their status.

Registered as the ``kubelet`` entry point of the ``kybern.plugins`` group. It runs in
``kybern server`` for the local node and alone in ``kybern agent``; ``--nodes N`` runs N
hollow nodes in one process (with ``--runtime simulated``) for scale tests.

For the logs/exec streams: ``RunContext.shared["kubelet"].find_container(namespace, pod,
container, previous)`` returns ``(runtime, ContainerStatus)`` of a pod on this process' nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from kybern import hookimpl
from kybern.components import ComponentSpec

if TYPE_CHECKING:
    from kybern.components import RunContext
    from kybern.plugins.kubelet.component import Kubelet


def _factory(ctx: RunContext) -> Kubelet:
    from kybern.plugins.kubelet.component import Kubelet

    return Kubelet(ctx)


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="kubelet",
            factory=_factory,  # type: ignore[arg-type]
            # "agent" alone: a server runs it as its local node agent unless --disable-agent
            roles=frozenset({"agent"}),
            order=60,
            description="Node agent: runs this node's pods on a container runtime",
        )
    ]


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    options = [
        click.Option(
            ["--runtime"],
            default=None,
            metavar="NAME",
            help="Container runtime of the node agent (podman, simulated, ...) [default: podman]",
        ),
        click.Option(
            ["--nodes"],
            type=click.IntRange(1, 100_000),
            default=None,
            help="Run N (hollow) nodes in this process [default: 1]",
        ),
        click.Option(
            ["--node-name-prefix"], default=None, help="Names of the N nodes: PREFIX0, PREFIX1, ..."
        ),
        click.Option(["--cpu"], default=None, help="CPU capacity a (hollow) node reports [default: host]"),
        click.Option(
            ["--memory"], default=None, help="Memory capacity a (hollow) node reports [default: host]"
        ),
        click.Option(
            ["--pods"],
            type=click.IntRange(1, 100_000),
            default=None,
            help="Pod capacity of each node [default: 110]",
        ),
        click.Option(
            ["--cluster-cidr"],
            default=None,
            metavar="CIDR",
            help="Range node pod CIDRs (/24) come from when the control plane sets none "
            "[default: 10.42.0.0/16]",
        ),
    ]
    if command == "agent":
        options.append(
            click.Option(
                ["--server-ca"],
                default=None,
                metavar="FILE",
                envvar="KYBERN_SERVER_CA",
                help="CA certificate of the server (its DATA_DIR/tls/ca.crt)",
            )
        )
    return options
