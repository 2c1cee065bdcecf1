"""What the node's streaming server answers to attach requests it cannot serve, over real
HTTP (no cluster): a container that is not running, a runtime without attach, no upgrade,
a caller without the node token."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from kybern.plugins.nodestreams.server import StreamServer
from kybern.runtime import ContainerStatus

TOKEN = "K10" + "0" * 64 + "::node:" + "s" * 40


class NoAttachRuntime:
    """A runtime offering logs and exec only (as the simulated one does)."""


class AttachRuntime:
    async def attach(self, id: str, stdin: bool = False) -> Any:
        raise AssertionError("a refused request must not reach the runtime")


class Kubelet:
    def __init__(self, state: str, can_attach: bool) -> None:
        self.state = state
        self.can_attach = can_attach

    async def find_container(self, ns: str, pod: str, container: str | None, previous: bool) -> Any:
        status = ContainerStatus(id="c1", name=container or "app", sandbox_id="s1", pod_uid="u1",
                                 namespace=ns, pod_name=pod, state=self.state, image="img")  # type: ignore[arg-type]  # fmt: skip
        return (AttachRuntime() if self.can_attach else NoAttachRuntime()), status

    def container_spec(self, namespace: str, pod: str, container: str) -> dict[str, Any]:
        return {"name": container, "stdin": True}


async def answer(
    state: str, path: str, upgrade: bool = True, can_attach: bool = False, token: str = "s" * 40
) -> tuple[int, str]:
    app = StreamServer({"kubelet": Kubelet(state, can_attach)}, TOKEN).make_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    headers = {"Authorization": "Bearer " + token}
    if upgrade:
        headers |= {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Protocol": "v5.channel.k8s.io"}  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response:
                return response.status, await response.text()
    finally:
        await runner.cleanup()


def test_attach_refusals() -> None:
    path = "/attach/default/web/app?stdin=true&stdout=true"
    status, text = asyncio.run(answer("exited", path))
    assert status == 400 and text == 'container "app" is not running (state: exited)'
    status, text = asyncio.run(answer("running", path))
    assert status == 501 and text == "this node's container runtime cannot attach; use exec"
    status, text = asyncio.run(answer("running", path, upgrade=False, can_attach=True))
    assert status == 400 and text == "attach needs a WebSocket upgrade (v5 or v4.channel.k8s.io)"
    status, text = asyncio.run(answer("running", path, can_attach=True, token="x" * 40))
    assert status == 401 and text == "Unauthorized"
