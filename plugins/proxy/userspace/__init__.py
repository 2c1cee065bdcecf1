"""The userspace service proxy, for hosts where nftables cannot be programmed.

Registered as the ``userspace-proxy`` entry point; component ``userspace-proxy`` in the
``proxy`` group (``--disable proxy`` turns it off with the nftables one). It serves when
``--proxy-mode userspace``, or in ``auto`` mode (the default) when no nftables proxy is
installed or ``nft`` does not work here; otherwise it stays idle. The ``--proxy-mode``
option itself belongs to the nftables proxy plugin; without that plugin the mode is auto.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kybern import hookimpl
from kybern.components import ComponentSpec
from loguru import logger

if TYPE_CHECKING:
    from kybern.components import RunContext

log = logger.bind(component="userspace-proxy")


async def _nft_works() -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            "nft", "list", "tables", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return False
    return await proc.wait() == 0


class UserspaceProxyComponent:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.proxier: Any = None

    async def _should_serve(self) -> bool:
        mode = self.ctx.config.extra.get("proxy_mode") or "auto"
        if mode != "auto":
            return mode == "userspace"
        names = {s.name for batch in self.ctx.plugins.hook.kybern_components() for s in batch or []}
        return "proxy" not in names or not await _nft_works()

    async def start(self) -> None:
        if not await self._should_serve():
            log.debug("userspace proxy idle: the nftables proxy serves")
            return
        from kybern.plugins.proxy.userspace.proxier import UserspaceProxier

        assert self.ctx.api is not None
        proxier = UserspaceProxier(self.ctx.api("kybern-userspace-proxy"))
        try:
            await proxier.start()
        except Exception as exc:
            await proxier.stop()
            if self.ctx.config.extra.get("proxy_mode") == "userspace":
                raise
            # auto mode on a host where neither proxy can work (e.g. not root): the node still
            # runs pods; services just are not reachable by ClusterIP from it
            log.warning("no service proxy on this node: nftables unusable and userspace failed: {}", exc)
            return
        self.proxier = proxier
        self.ctx.shared["proxy"] = proxier

    async def stop(self) -> None:
        if self.proxier is not None:
            await self.proxier.stop()


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="userspace-proxy",
            factory=UserspaceProxyComponent,  # type: ignore[arg-type]
            group="proxy",
            roles=frozenset({"agent"}),
            order=65,
            description="Service proxy in user space (sockets on ClusterIPs), when nftables is unusable",
        )
    ]
