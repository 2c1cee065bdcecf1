"""The apiserver component in-process: start/stop, what it publishes, the pod connect hook."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from kybern.components import RunContext
from kybern.config import Config
from kybern.pluginmanager import load_plugins
from kybern.plugins.apiserver.app import CONNECT_HANDLERS_KEY
from kybern.plugins.apiserver.component import ApiServerComponent
from kybern.runner import open_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_publish_connect_hook_and_stop(tmp_path: Path) -> None:
    async def scenario() -> None:
        loaded = load_plugins()
        config = Config(data_dir=tmp_path, bind_address="127.0.0.1", https_port=_free_port())
        ctx = RunContext(config=config, plugins=loaded.manager)
        ctx.store = await asyncio.to_thread(open_store, loaded.manager, config)
        comp = ApiServerComponent(ctx)
        await comp.start()
        try:
            url = ctx.shared["api_url"]
            assert url == f"https://127.0.0.1:{config.https_port}"
            kubeconfig = yaml.safe_load(config.kubeconfig.read_text())
            assert kubeconfig["clusters"][0]["cluster"]["server"] == url
            assert kubeconfig["users"][0]["user"]["token"] == ctx.shared["admin_token"]
            calls: list[tuple[str, str]] = []

            async def fake_log(request: web.Request, pod: dict[str, Any], sub: str) -> web.StreamResponse:
                calls.append((pod["metadata"]["name"], sub))
                return web.Response(text="hello from the node\n", content_type="text/plain")

            ctx.shared[CONNECT_HANDLERS_KEY]["log"] = fake_log
            sslctx = ssl.create_default_context(cafile=ctx.shared["ca_file"])
            headers = {"Authorization": f"Bearer {ctx.shared['admin_token']}"}
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=sslctx), headers=headers
            ) as s:
                async with s.get(f"{url}/api/v1/namespaces") as r:
                    names = {n["metadata"]["name"] for n in (await r.json())["items"]}
                assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
                }
                async with s.post(
                    f"{url}/api/v1/namespaces/default/pods",
                    data=json.dumps(pod),
                    headers={"Content-Type": "application/json"},
                ) as r:
                    assert r.status == 201, await r.text()
                async with s.get(f"{url}/api/v1/namespaces/default/pods/p/log") as r:
                    assert r.status == 200 and await r.text() == "hello from the node\n"
                async with s.get(f"{url}/api/v1/namespaces/default/pods/p/exec?command=ls") as r:
                    st = await r.json()
                    assert r.status == 503 and "no node agent serves exec" in st["message"]
                assert calls == [("p", "log")]
                # a watch open during stop() must end, not hang the shutdown
                watch = await s.get(f"{url}/api/v1/namespaces/default/pods?watch=true")
                await asyncio.wait_for(comp.stop(), 10)
                body = await asyncio.wait_for(watch.read(), 10)
                assert b'"ADDED"' in body
        finally:
            await comp.stop()
            ctx.store.close()

    asyncio.run(scenario())


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exe = Path(sys.executable).parent / "kybern"
        proc = subprocess.run(
            [
                str(exe),
                "server",
                "--disable-agent",
                "--data-dir",
                str(tmp_path / "d"),
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"kybern: error: port {port} is in use: ") and "--https-listen-port" in last
    assert "Traceback" not in proc.stderr
