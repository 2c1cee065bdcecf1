"""Fixtures of the kubelet tests: a real ``kybern server`` whose node agent runs pods on an
isolated Podman (see ``nodes``), shared by the package's modules (each test removes its pods);
torn down with every Podman object it made."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .nodes import Cluster, kubelet_cluster


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from support.hostcheck import podman_problem

    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    with kubelet_cluster(tmp_path_factory.mktemp("kubelet")) as c:
        yield c
