"""The service proxy (kube-proxy role) on nftables: ClusterIP and NodePort traffic, from pods
and from the host, reaches a ready endpoint chosen at random per connection.

Registered as the ``proxy`` entry point; runs as component ``proxy`` on every node (role
"agent": ``kybern agent``, and ``kybern server`` for its local node). ``--proxy-mode``
chooses the implementation: ``nftables`` (this plugin), ``userspace`` (the
``userspace-proxy`` plugin's component, for hosts without nftables) or ``auto`` (the default:
nftables when ``nft`` works here, else userspace). Both components are in the ``proxy``
group, so ``--disable proxy`` turns either off; the one not chosen stays idle.

The same component keeps routes to other nodes' pod CIDRs (see ``routes``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from kybern import hookimpl
from kybern.components import ComponentSpec
from loguru import logger

if TYPE_CHECKING:
    from kybern.components import RunContext

log = logger.bind(component="proxy")


class ProxyComponent:
    """Decides at start whether nftables serves here, then runs the proxier or idles."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.proxier: Any = None

    async def start(self) -> None:
        from kybern.plugins.proxy.nftables import nft_usable
        from kybern.plugins.proxy.proxier import DEFAULT_CLUSTER_CIDR, NftablesProxier

        config = self.ctx.config
        mode = config.extra.get("proxy_mode") or "auto"
        if mode == "userspace":
            log.info("proxy mode userspace: the nftables proxy stays idle")
            return
        problem = await nft_usable()
        if problem is not None:
            if mode == "nftables":
                raise RuntimeError(f"--proxy-mode nftables: {problem}")
            log.info("nftables unusable ({}); the userspace proxy serves", problem)
            return
        assert self.ctx.api is not None
        self.proxier = NftablesProxier(
            self.ctx.api("kybern-proxy"),
            config.node_name,
            cluster_cidr=config.extra.get("cluster_cidr") or DEFAULT_CLUSTER_CIDR,
        )
        self.ctx.shared["proxy"] = self.proxier
        await self.proxier.start()

    async def stop(self) -> None:
        if self.proxier is not None:
            await self.proxier.stop()


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="proxy",
            factory=ProxyComponent,  # type: ignore[arg-type]
            roles=frozenset({"agent"}),
            order=65,
            description="Service proxy: ClusterIP/NodePort rules in nftables, routes to other nodes' pods",
        )
    ]


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    return [
        click.Option(
            ["--proxy-mode"],
            type=click.Choice(["auto", "nftables", "userspace"]),
            default=None,
            help="Service proxy: nftables, userspace, or auto (nftables when nft works) [default: auto]",
        )
    ]
