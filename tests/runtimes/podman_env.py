"""Building isolated Podman runtimes for tests (shared by the tests and the benchmark).

Each runtime gets its own storage, run and network-config directories, its own
``podman system service`` and its own bridge network on a subnet nothing else on the host
routes, so tests never touch the host's containers and parallel test runs stay apart. The
containers.conf the services read is test-local (CONTAINERS_CONF): runc, and ulimits within
the host's hard limits; /etc is left alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from kybern.runtime import ContainerSpec, ContainerStatus, SandboxSpec, SandboxStatus
from kybern.runtimes.podman.config import PodmanConfig
from kybern.runtimes.podman.runtime import PodmanRuntime
from support.images import ensure_busybox_image

BUSYBOX = "localhost/kybern-busybox:1.0"


def write_containers_conf(path: Path, ulimits: bool = True) -> Path:
    """runc and (unless told otherwise) ulimits the host's hard limits allow."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    lines = ["[containers]"]
    if ulimits:
        lines.append(f'default_ulimits = ["nofile={hard}:{hard}", "nproc={hard}:{hard}"]')
    lines += ["[engine]", 'runtime = "runc"', ""]
    path.write_text("\n".join(lines))
    return path


def busybox_archive(directory: Path) -> Path:
    """The shared busybox test image, saved once as an archive each isolated storage loads."""
    ensure_busybox_image(BUSYBOX)
    archive = directory / "busybox.tar"
    if not archive.exists():
        subprocess.run(
            ["podman", "image", "save", "--quiet", "-o", str(archive), BUSYBOX],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
    return archive


def free_subnet() -> tuple[str, str]:
    """A /24 under 10.200-250.x.0 that no host route covers."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(200):
        prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        if f"{prefix}." not in routes:
            return f"{prefix}.0/24", f"{prefix}.1"
    raise RuntimeError("no free /24 found for the test network")


def podman_cli(config: PodmanConfig, *args: str) -> str:
    """The podman CLI on the runtime's storage (to check what really exists)."""
    env = dict(os.environ)
    if config.containers_conf:
        env["CONTAINERS_CONF"] = str(config.containers_conf)
    out = subprocess.run(
        ["podman", *config.global_args(), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return out.stdout


async def open_runtime(data_dir: Path, conf: Path, archive: Path, node: str) -> PodmanRuntime:
    """A connected, isolated runtime with the busybox image and its own pod network."""
    network = f"kybern-test-{uuid.uuid4().hex[:8]}"
    config = PodmanConfig(
        data_dir=data_dir, node_name=node, isolated=True, containers_conf=conf, network=network
    )
    runtime = PodmanRuntime(config)
    try:
        await runtime.connect()
        if await runtime.image_present(BUSYBOX) is None:
            podman_cli(config, "load", "--quiet", "-i", str(archive))
        subnet, gateway = free_subnet()
        await runtime.ensure_network(network, subnet, gateway)
    except BaseException:
        await runtime.close()
        raise
    return runtime


def _processes_using(prefix: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if prefix.encode() in cmdline and b"conmon" not in cmdline.split(b"\0")[0]:
            found.append(int(entry.name))
    return found


def unmount_under(directory: Path) -> None:
    """containers/storage keeps its overlay directory mounted after the service stops; a
    test's temporary directory can only be deleted once nothing is mounted in it."""
    prefix = str(directory.resolve()) + "/"
    # conmon runs `podman --root ... container cleanup` after a container dies; it mounts the
    # storage again, so wait for those to finish first
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _processes_using(prefix):
        time.sleep(0.1)
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, stdin=subprocess.DEVNULL)


async def close_runtime(runtime: PodmanRuntime) -> None:
    """Remove every pod, container and the network the runtime made, then stop its service."""
    try:
        await runtime.remove_unowned(set())
        if runtime.config.network:
            await runtime.remove_network(runtime.config.network)
    finally:
        await runtime.close()
        release_dirs(runtime.config)


def release_dirs(config: PodmanConfig) -> None:
    """Unmount what Podman left mounted, and drop the short run directory outside the test's."""
    unmount_under(config.data_dir)
    short = config.short_dir()
    if short.exists():
        unmount_under(short)
        shutil.rmtree(short, ignore_errors=True)


def sandbox_spec(name: str = "web", **kwargs: object) -> SandboxSpec:
    return SandboxSpec(uid=str(uuid.uuid4()), namespace="default", name=name, **kwargs)  # type: ignore[arg-type]


async def run_container(runtime: PodmanRuntime, sandbox: SandboxStatus, spec: ContainerSpec) -> str:
    cid = await runtime.create_container(sandbox, spec)
    await runtime.start_container(cid)
    return cid


async def wait_exited(runtime: PodmanRuntime, uid: str, name: str, timeout: float = 30) -> ContainerStatus:
    """Poll until the named container of the pod has exited (fails the test on timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for status in await runtime.list_containers(uid):
            if status.name == name and status.state == "exited":
                return status
        if loop.time() > deadline:
            raise AssertionError(f"container {name} did not exit within {timeout}s")
        await asyncio.sleep(0.1)
