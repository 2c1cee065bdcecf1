"""Concurrent writers and watchers: every watcher rebuilds exactly the state a list shows."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from typing import Any

import aiohttp

Cluster = Any  # tests/apiserver/conftest.py


def test_watchers_converge_with_list_under_concurrent_writes(cluster: Cluster, ns: str) -> None:
    async def scenario() -> None:
        ctx = ssl.create_default_context(cafile=cluster.ca_file)
        headers = {"Authorization": f"Bearer {cluster.token}", "Content-Type": "application/json"}
        base = f"{cluster.url}/api/v1/namespaces/{ns}/configmaps"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers) as s:
            async with s.get(base) as r:
                start_rv = (await r.json())["metadata"]["resourceVersion"]
            states: list[dict[str, str]] = [{}, {}, {}]
            last_rv: list[int] = [0, 0, 0]
            stop = asyncio.Event()

            async def watcher(i: int, selector: str | None) -> None:
                params = {"watch": "true", "resourceVersion": start_rv, "timeoutSeconds": "60"}
                if selector:
                    params["labelSelector"] = selector
                async with s.get(base, params=params) as r:
                    buf = b""
                    async for chunk in r.content.iter_any():
                        buf += chunk
                        while b"\n" in buf:
                            line, buf = buf.split(b"\n", 1)
                            ev = json.loads(line)
                            meta = ev["object"]["metadata"]
                            rv = int(meta["resourceVersion"])
                            assert rv > last_rv[i], "events out of order or repeated"
                            last_rv[i] = rv
                            if ev["type"] == "DELETED":
                                states[i].pop(meta["name"], None)
                            else:
                                states[i][meta["name"]] = meta["resourceVersion"]
                        if stop.is_set() and last_rv[i] >= final_rv[0]:
                            return

            final_rv = [10**12]
            tasks = [
                asyncio.create_task(watcher(0, None)),
                asyncio.create_task(watcher(1, None)),
                asyncio.create_task(watcher(2, "keep=yes")),
            ]
            await asyncio.sleep(0.5)

            async def writer(w: int) -> None:
                rng = random.Random(w)
                for _ in range(40):
                    name = f"o{rng.randint(0, 14)}"
                    action = rng.random()
                    if action < 0.5:
                        body = {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {"name": name, "labels": {"keep": rng.choice(["yes", "no"])}},
                            "data": {"w": str(w)},
                        }
                        async with s.post(base, data=json.dumps(body)) as r:
                            assert r.status in (201, 409)
                    elif action < 0.8:
                        patch = {
                            "metadata": {"labels": {"keep": rng.choice(["yes", "no"])}},
                            "data": {"w": str(w)},
                        }
                        async with s.patch(
                            f"{base}/{name}",
                            data=json.dumps(patch),
                            headers={"Content-Type": "application/merge-patch+json"},
                        ) as r:
                            assert r.status in (200, 404)
                    else:
                        async with s.delete(f"{base}/{name}") as r:
                            assert r.status in (200, 404)

            await asyncio.gather(*(writer(w) for w in range(6)))
            async with s.get(base) as r:
                final = await r.json()
            async with s.get(base, params={"labelSelector": "keep=yes"}) as r:
                kept = await r.json()
            final_rv[0] = int(final["metadata"]["resourceVersion"])
            # a no-op write to the collection makes sure every watcher gets past final_rv
            async with s.post(
                base,
                data=json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "zz-end", "labels": {"keep": "yes"}},
                    }
                ),
            ) as r:
                assert r.status == 201
            final_rv[0] += 1
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in final["items"]}
            want_kept = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in kept["items"]}
            for i in (0, 1):
                states[i].pop("zz-end", None)
                assert states[i] == want
            states[2].pop("zz-end", None)
            assert states[2] == want_kept

    asyncio.run(scenario())
