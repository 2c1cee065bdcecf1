"""How one node agent reaches Podman: which socket, which storage, which pod network."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_SOCKET = Path("/run/podman/podman.sock")
#: registries Podman may talk to without TLS (Docker treats 127.0.0.0/8 the same way)
LOOPBACK_REGISTRIES = ("localhost", "127.0.0.1", "[::1]")
#: Podman's limit for --runroot, and the room a unix socket path has (sun_path)
MAX_RUNROOT = 50
MAX_SOCKET_PATH = 100


@dataclass
class PodmanConfig:
    """Settings of the Podman runtime of one node agent.

    With ``isolated`` (or an explicit ``root``/``runroot``) the agent runs its own
    ``podman system service`` on its own storage, run and network-config directories, so
    several agents on one machine never see each other's pods. Otherwise it uses the system
    socket when something answers there and starts its own service on the default storage
    when nothing does.
    """

    data_dir: Path
    #: node name; every object carries it (io.kybern.node) so agents sharing a socket stay apart
    node_name: str = "local"
    #: explicit socket path (or unix:// URL); None picks as described above
    socket: str | None = None
    isolated: bool = False
    root: Path | None = None
    runroot: Path | None = None
    #: containers.conf for the service kybern starts (CONTAINERS_CONF); None = the host's
    containers_conf: Path | None = None
    #: the pod network sandboxes join when their spec names none
    network: str | None = None
    podman_binary: str = "podman"
    insecure_registries: tuple[str, ...] = LOOPBACK_REGISTRIES
    #: an image pull with no progress line from Podman for this long fails (ErrImagePull);
    #: Podman reports per layer, so this bounds the time one layer may take
    pull_stall_timeout_s: float = 300.0
    #: seconds to wait for a started service to answer
    service_start_timeout_s: float = 20.0
    #: threads for Podman's synchronous client (podman-py); parallel pod starts need several
    threads: int = 16
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def podman_dir(self) -> Path:
        return self.data_dir / "podman"

    @property
    def own_storage(self) -> bool:
        return self.isolated or self.root is not None or self.runroot is not None

    def global_args(self) -> list[str]:
        """``podman`` options that select this agent's storage (empty for the host's)."""
        if not self.own_storage:
            return []
        base = self.podman_dir
        return [
            "--root", str(self.root or base / "storage"),
            "--runroot", str(self.effective_runroot()),
            "--tmpdir", str(base / "tmp"),
            "--network-config-dir", str(base / "networks"),
        ]  # fmt: skip

    def short_dir(self) -> Path:
        """A short per-agent directory for paths with length limits (runroot, socket)."""
        digest = hashlib.sha256(str(self.podman_dir.resolve()).encode()).hexdigest()[:12]
        base = Path("/run") if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
        return base / f"kybern-podman-{digest}"

    def effective_runroot(self) -> Path:
        """Podman refuses a runroot over 50 characters; a deep DATA_DIR gets a short one."""
        if self.runroot is not None:
            return self.runroot
        runroot = self.podman_dir / "run"
        return runroot if len(str(runroot)) <= MAX_RUNROOT else self.short_dir() / "run"

    def own_socket(self) -> Path:
        sock = self.podman_dir / "podman.sock"
        return sock if len(str(sock)) <= MAX_SOCKET_PATH else self.short_dir() / "podman.sock"

    @classmethod
    def from_extra(cls, data_dir: Path, node_name: str, extra: dict[str, Any]) -> PodmanConfig:
        """Build from ``Config.extra`` (``podman_*`` options), falling back to
        ``KYBERN_PODMAN_*`` environment variables so test fixtures can steer an agent."""

        def get(key: str) -> Any:
            value = extra.get(f"podman_{key}")
            return value if value not in (None, "") else os.environ.get(f"KYBERN_PODMAN_{key.upper()}")

        def path(key: str) -> Path | None:
            value = get(key)
            return Path(value) if value else None

        isolated = get("isolated")
        return cls(
            data_dir=Path(data_dir),
            node_name=node_name,
            socket=get("socket") or None,
            isolated=str(isolated).lower() in ("1", "true", "yes") if isolated is not None else False,
            root=path("root"),
            runroot=path("runroot"),
            containers_conf=path("containers_conf"),
            network=get("network") or None,
        )
