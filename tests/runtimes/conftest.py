"""Fixtures for the runtime tests: one isolated Podman runtime per module, torn down even
when tests fail. Tests are plain functions running ``asyncio.run`` (no async plugin)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from kybern.runtimes.podman.runtime import PodmanRuntime

from .podman_env import busybox_archive, close_runtime, open_runtime, write_containers_conf


@pytest.fixture(scope="session")
def podman_assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(test-local containers.conf, busybox image archive)."""
    from support.hostcheck import podman_problem

    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    base = tmp_path_factory.mktemp("podman-assets")
    return write_containers_conf(base / "containers.conf"), busybox_archive(base)


@pytest.fixture(scope="module")
def runtime(
    podman_assets: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodmanRuntime]:
    conf, archive = podman_assets
    rt = asyncio.run(open_runtime(tmp_path_factory.mktemp("agent"), conf, archive, "node-a"))
    try:
        yield rt
    finally:
        asyncio.run(close_runtime(rt))
