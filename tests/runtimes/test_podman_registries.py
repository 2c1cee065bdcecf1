"""Which registries the Podman runtime pulls from without TLS: loopback ones always (as Docker
does), others only when registries.conf says ``insecure = true`` (the runtime must not
override it). A real docker-registry on this machine's non-loopback address, and a Podman
service per registries.conf (CONTAINERS_REGISTRIES_CONF), since the service reads it once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubelet.registry import registry_problem, running_registry
from kybern.plugins.kubelet.nodeinfo import host_ip
from kybern.runtime import ImagePullError
from kybern.runtimes.podman.config import PodmanConfig
from kybern.runtimes.podman.runtime import PodmanRuntime
from support.images import DEFAULT_TAG, ensure_busybox_image

from .podman_env import close_runtime

pytestmark = pytest.mark.podman


async def pull_with(registries_conf: Path, data_dir: Path, containers_conf: Path, image: str) -> str:
    """Pull ``image`` (Always) on a fresh isolated service; the image ID, or the error text."""
    config = PodmanConfig(
        data_dir=data_dir, node_name="node-r", isolated=True, containers_conf=containers_conf,
        extra_env={"CONTAINERS_REGISTRIES_CONF": str(registries_conf)},
    )  # fmt: skip
    runtime = PodmanRuntime(config)
    try:
        await runtime.connect()
        try:
            return (await runtime.pull_image(image, policy="Always")).id
        except ImagePullError as exc:
            assert exc.reason == "ErrImagePull"
            return f"error: {exc.message}"
    finally:
        await close_runtime(runtime)


def test_other_registries_follow_registries_conf(podman_assets: tuple[Path, Path], tmp_path: Path) -> None:
    problem = registry_problem()
    if problem:
        pytest.skip(problem)
    address = host_ip()
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address")
    containers_conf, _ = podman_assets
    with running_registry(tmp_path / "registry", address=address) as registry:
        image = registry.push(ensure_busybox_image(DEFAULT_TAG), "plain/app:1")
        strict = tmp_path / "strict.conf"
        strict.write_text("unqualified-search-registries = []\n")
        refused = asyncio.run(pull_with(strict, tmp_path / "a", containers_conf, image))
        assert refused.startswith("error: ") and "HTTP response to HTTPS client" in refused, refused
        insecure = tmp_path / "insecure.conf"
        entry = f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
        insecure.write_text("unqualified-search-registries = []\n\n" + entry)
        pulled = asyncio.run(pull_with(insecure, tmp_path / "b", containers_conf, image))
        assert not pulled.startswith("error"), pulled
    # a loopback registry needs no entry at all
    with running_registry(tmp_path / "local-registry") as loopback:
        local = loopback.push(ensure_busybox_image(DEFAULT_TAG), "plain/app:1")
        pulled = asyncio.run(pull_with(strict, tmp_path / "c", containers_conf, local))
        assert not pulled.startswith("error"), pulled
