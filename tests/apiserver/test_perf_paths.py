"""The API server's fast paths behave exactly like the ordinary ones.

- the local Unix socket (``DATA_DIR/apiserver.sock``, plain HTTP) serves the same API with the
  same bearer-token authentication, and only root may open it;
- ``api_factory`` gives in-process components a client over that socket;
- a write's response, a GET, a LIST and a watch event carry the same object (the response
  bytes are encoded once and reused by the watch cache);
- watches without selectors (no per-event decoding) and with selectors (transitions) still
  deliver every event in order.
"""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from typing import Any

import aiohttp
import pytest
from kybern.client import ApiError, HttpApiClient
from kybern.components import RunContext
from kybern.config import Config
from kybern.runner import api_factory

Cluster = Any  # the conftest fixture's Cluster


def _socket(cluster: Cluster) -> str:
    path = cluster.data_dir / "apiserver.sock"
    assert path.is_socket(), "the API server did not open its local socket"
    return str(path)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_local_socket_is_private_and_authenticated(cluster: Cluster) -> None:
    path = _socket(cluster)
    mode = stat.S_IMODE((cluster.data_dir / "apiserver.sock").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)

    async def go() -> tuple[int, int, dict[str, Any]]:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as s:
            async with s.get("http://localhost/api/v1/namespaces") as r:
                anonymous = r.status
            bad = {"Authorization": "Bearer not-the-token"}
            async with s.get("http://localhost/api/v1/namespaces", headers=bad) as r:
                wrong = r.status
            good = {"Authorization": f"Bearer {cluster.token}"}
            async with s.get("http://localhost/api/v1/namespaces/default", headers=good) as r:
                assert r.status == 200
                return anonymous, wrong, await r.json()

    anonymous, wrong, ns = run(go())
    assert anonymous == 401
    assert wrong == 401
    assert ns["metadata"]["name"] == "default"


def test_api_factory_uses_the_socket_and_validates_like_tcp(cluster: Cluster) -> None:
    ns = cluster.namespace()
    ctx = RunContext(config=Config(data_dir=cluster.data_dir), plugins=None)  # type: ignore[arg-type]
    ctx.shared.update(
        api_url=cluster.url, admin_token=cluster.token, ca_file=cluster.ca_file, api_socket=_socket(cluster)
    )

    async def go() -> None:
        local = api_factory(ctx)("perf-test")
        assert isinstance(local, HttpApiClient)
        tcp = HttpApiClient(cluster.url, cluster.token, cluster.ca_file)
        try:
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "via-socket"},
                "data": {"a": "1"},
            }
            created = await local.create("configmaps", obj, namespace=ns)
            # the same object over TCP + TLS
            seen = await tcp.get("configmaps", "via-socket", namespace=ns)
            assert seen == created
            # the field manager comes from the client's user agent, as over TCP
            assert created["metadata"]["managedFields"][0]["manager"] == "perf-test"
            # validation and conflicts are the same handlers
            with pytest.raises(ApiError) as bad:
                await local.create(
                    "configmaps",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}},
                    ns,
                )
            assert bad.value.code == 422
            with pytest.raises(ApiError) as dup:
                await local.create("configmaps", obj, namespace=ns)
            assert dup.value.already_exists
        finally:
            await local.close()
            await tcp.close()

    run(go())


def test_api_factory_without_a_socket_uses_the_url(cluster: Cluster) -> None:
    ctx = RunContext(config=Config(data_dir=cluster.data_dir), plugins=None)  # type: ignore[arg-type]
    ctx.shared.update(api_url=cluster.url, admin_token=cluster.token, ca_file=cluster.ca_file)

    async def go() -> dict[str, Any]:
        client = api_factory(ctx)()
        try:
            return await client.get("namespaces", "default")
        finally:
            await client.close()

    assert run(go())["metadata"]["name"] == "default"


def test_write_response_get_list_and_watch_agree(cluster: Cluster) -> None:
    ns = cluster.namespace()

    async def go() -> None:
        client = HttpApiClient(cluster.url, cluster.token, cluster.ca_file)
        try:
            listed = await client.list("configmaps", namespace=ns)
            rv = listed["metadata"]["resourceVersion"]
            events: list[tuple[str, dict[str, Any]]] = []

            async def watch() -> None:
                async for ev in client.watch(
                    "configmaps", namespace=ns, resource_version=rv, timeout_seconds=20
                ):
                    if ev.type in ("ADDED", "MODIFIED", "DELETED"):
                        events.append((ev.type, ev.object))
                    if len(events) == 3:
                        return

            task = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "agree", "labels": {"x": "1"}},
                "data": {"k": "v"},
            }
            created = await client.create("configmaps", obj, namespace=ns)
            patched = await client.patch("configmaps", "agree", {"data": {"k": "w"}}, namespace=ns)
            got = await client.get("configmaps", "agree", namespace=ns)
            assert got == patched
            listed = await client.list("configmaps", namespace=ns)
            assert listed["items"] == [patched]
            await client.delete("configmaps", "agree", namespace=ns)
            await asyncio.wait_for(task, 20)
            assert [t for t, _ in events] == ["ADDED", "MODIFIED", "DELETED"]
            assert events[0][1] == created
            assert events[1][1] == patched
            assert events[2][1]["metadata"]["name"] == "agree"
            assert int(events[2][1]["metadata"]["resourceVersion"]) > int(
                patched["metadata"]["resourceVersion"]
            )
        finally:
            await client.close()

    run(go())


def test_watch_with_selector_still_sees_transitions(cluster: Cluster) -> None:
    ns = cluster.namespace()

    async def go() -> list[tuple[str, str]]:
        client = HttpApiClient(cluster.url, cluster.token, cluster.ca_file)
        try:
            rv = (await client.list("configmaps", namespace=ns))["metadata"]["resourceVersion"]
            seen: list[tuple[str, str]] = []

            async def watch() -> None:
                async for ev in client.watch(
                    "configmaps",
                    namespace=ns,
                    resource_version=rv,
                    label_selector="pick=yes",
                    timeout_seconds=20,
                ):
                    if ev.type != "BOOKMARK":
                        seen.append((ev.type, ev.object["metadata"]["name"]))
                    if len(seen) == 2:
                        return

            task = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            for i in range(5):  # unselected traffic in between
                await client.create(
                    "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"n{i}"}}, ns
                )
            await client.create(
                "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}}, ns
            )
            await client.patch("configmaps", "m", {"metadata": {"labels": {"pick": "yes"}}}, namespace=ns)
            await client.patch("configmaps", "m", {"metadata": {"labels": {"pick": "no"}}}, namespace=ns)
            await asyncio.wait_for(task, 20)
            return seen
        finally:
            await client.close()

    assert run(go()) == [("ADDED", "m"), ("DELETED", "m")]


def test_many_concurrent_writes_reach_every_watcher_in_order(cluster: Cluster) -> None:
    ns = cluster.namespace()
    count, watchers = 60, 5

    async def go() -> list[list[int]]:
        client = HttpApiClient(cluster.url, cluster.token, cluster.ca_file)
        try:
            rv = (await client.list("configmaps", namespace=ns))["metadata"]["resourceVersion"]
            results: list[list[int]] = [[] for _ in range(watchers)]

            async def watch(out: list[int]) -> None:
                async for ev in client.watch(
                    "configmaps", namespace=ns, resource_version=rv, timeout_seconds=30
                ):
                    if ev.type == "ADDED":
                        out.append(int(ev.object["metadata"]["resourceVersion"]))
                    if len(out) == count:
                        return

            tasks = [asyncio.create_task(watch(r)) for r in results]
            await asyncio.sleep(0.3)
            names = iter(range(count))

            async def writer() -> None:
                for i in names:
                    body = {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"c{i}-{uuid.uuid4().hex[:4]}"},
                    }
                    await client.create("configmaps", body, namespace=ns)

            await asyncio.gather(*(writer() for _ in range(8)))
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return results
        finally:
            await client.close()

    results = run(go())
    for r in results:
        assert len(r) == count
        assert r == sorted(r), "events out of order"
    assert all(r == results[0] for r in results)


def test_client_sends_and_reads_json(cluster: Cluster) -> None:
    """The client's JSON codec keeps unicode and numbers intact both ways."""
    ns = cluster.namespace()

    async def go() -> dict[str, Any]:
        client = HttpApiClient(cluster.url, cluster.token, cluster.ca_file)
        try:
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "unicode", "annotations": {"note": 'grüße ✓ "quoted"'}},
                "data": {"json": json.dumps({"n": 1.5})},
            }
            await client.create("configmaps", obj, namespace=ns)
            return await client.get("configmaps", "unicode", namespace=ns)
        finally:
            await client.close()

    got = run(go())
    assert got["metadata"]["annotations"]["note"] == 'grüße ✓ "quoted"'
    assert json.loads(got["data"]["json"]) == {"n": 1.5}
