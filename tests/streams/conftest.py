"""Fixtures of the stream tests: one real ``kybern server`` with its node agent on an isolated
Podman (the kubelet tests' helpers, imported from ``kubelet.nodes``), shared by the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubelet.nodes import Cluster, kubelet_cluster


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from support.hostcheck import podman_problem

    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    # --kubelet-port 0: tests run beside other kybern nodes on this machine
    with kubelet_cluster(tmp_path_factory.mktemp("streams"), "node-a", "--kubelet-port", "0") as c:
        yield c
