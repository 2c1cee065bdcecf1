"""The public kubectl smoke path (../shared/acceptance) against a whole single-node cluster:
API, controllers, scheduler, a real node agent on Podman, logs, exec, a Service reached by its
DNS name from inside a pod."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .nodes import BUSYBOX, Cluster

pytestmark = [pytest.mark.podman, pytest.mark.slow]

SMOKE = Path(__file__).resolve().parents[3] / "shared" / "acceptance" / "kubectl-smoke.sh"


def test_public_smoke_path_passes_whole(cluster: Cluster) -> None:
    if not SMOKE.exists():
        pytest.skip(f"no acceptance script at {SMOKE}")
    proc = subprocess.run(
        ["bash", str(SMOKE), str(cluster.server.kubeconfig), BUSYBOX],
        capture_output=True,
        text=True,
        timeout=400,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout + proc.stderr
