"""A real API server per module (no node agent), test hosts, and Service/EndpointSlice helpers.

The proxies run inside the test (``asyncio.run``), against the real API server, with a node
name of their own: the nftables table is ``kybern-proxy-<that name>``, so nothing else on the
machine is touched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import Server, running_server

from .nettopo import Topology, nft_problem, sh

PROBLEM = nft_problem()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if PROBLEM is None:
        return
    for item in items:
        needs_host = {"net", "node_name", "interface"} & set(getattr(item, "fixturenames", ()))
        if "tests/proxy/" in str(item.fspath) and needs_host:
            item.add_marker(pytest.mark.skip(reason=f"nftables/netns unavailable: {PROBLEM}"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("proxy")
    # no DNS server: it binds a fixed port other test servers may hold; the proxy needs none
    with running_server(base, "--disable", "dns") as srv:
        yield srv


@pytest.fixture
def net() -> Iterator[Topology]:
    topo = Topology()
    try:
        yield topo.open()
    finally:
        topo.close()


@pytest.fixture
def node_name() -> Iterator[str]:
    name = f"pt{os.getpid()}-{secrets.token_hex(2)}"
    yield name
    # whatever the test did, leave no table behind
    sh("nft", "delete", "table", "ip", f"kybern-proxy-{name}", check=False)
