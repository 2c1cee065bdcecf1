"""The Podman service an agent starts does not outlive the agents of its data dir: one left
behind by an agent that died without closing it is reused, then stopped, by the next agent."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kybern.runtimes.podman.config import PodmanConfig
from kybern.runtimes.podman.service import PodmanService, ping


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_leftover_service_is_adopted_and_stopped(podman_assets: tuple[Path, Path], tmp_path: Path) -> None:
    conf, _ = podman_assets
    config = PodmanConfig(data_dir=tmp_path, node_name="node-a", isolated=True, containers_conf=conf)
    first = PodmanService(config)
    sock = first.ensure()
    assert first.process is not None
    pid = first.process.pid
    try:
        first.process = None  # the agent dies without closing: nothing stops the service
        assert ping(sock) is None and _alive(pid)

        second = PodmanService(config)
        assert second.ensure() == sock, "the running service is reused, not replaced"
        assert second.process is None and second.adopted_pid == pid
        second.stop()
        assert not _alive(pid), "the adopting agent stops the service on close"
        assert ping(sock) is not None
        assert not (config.podman_dir / "service.pid").exists()

        third = PodmanService(config)
        assert third.stop_leftover() is False, "nothing left to stop"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_recycled_pid_is_not_signalled(podman_assets: tuple[Path, Path], tmp_path: Path) -> None:
    """A pid file naming a process that is not this data dir's service is ignored."""
    conf, _ = podman_assets
    config = PodmanConfig(data_dir=tmp_path, node_name="node-a", isolated=True, containers_conf=conf)
    config.podman_dir.mkdir(parents=True, exist_ok=True)
    (config.podman_dir / "service.pid").write_text(f"{os.getpid()}\n")
    assert PodmanService(config).stop_leftover() is False
    assert _alive(os.getpid())
