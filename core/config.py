"""Settings one kybern process runs with, filled by the CLI and read by components."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    """/var/lib/kybern as root (like k3s' /var/lib/rancher/k3s), else a per-user dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/kybern")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kybern"


def default_node_name() -> str:
    return socket.gethostname().split(".")[0].lower() or "localhost"


@dataclass
class Config:
    data_dir: Path = field(default_factory=default_data_dir)
    #: address the API server listens on (0.0.0.0 for every interface)
    bind_address: str = "0.0.0.0"
    https_port: int = 6443
    #: where the admin kubeconfig is written (default DATA_DIR/kubeconfig.yaml)
    kubeconfig_path: Path | None = None
    #: SQLAlchemy-style URL; None means SQLite in DATA_DIR/db/state.db
    datastore_endpoint: str | None = None
    #: component names (or groups such as controller-manager) turned off
    disabled: frozenset[str] = frozenset()
    #: "server" (control plane, plus the local agent unless disabled) or "agent"
    role: str = "server"
    run_agent: bool = True
    node_name: str = field(default_factory=default_node_name)
    #: for an agent: the API server it joins, and the node join token
    server_url: str | None = None
    token: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    #: values of options that plugins added to `kybern server`/`kybern agent`
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.kubeconfig_path or self.data_dir / "kubeconfig.yaml"

    def datastore_url(self) -> str:
        if self.datastore_endpoint:
            return self.datastore_endpoint
        return f"sqlite:///{self.data_dir / 'db' / 'state.db'}"
