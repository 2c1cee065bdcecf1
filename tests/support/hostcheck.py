"""Whether this machine has what marked tests need, and whether we run under CI.

Tests and conftest files import these from here (``from support.hostcheck import ...``):
a ``conftest`` module cannot be imported by name reliably, since every test folder may have one.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def podman_problem() -> str | None:
    """Why Podman cannot be used here, or None when it can (checked once per run)."""
    if shutil.which("podman") is None:
        return "podman is not installed (run contrib/host-setup.sh)"
    try:
        out = subprocess.run(
            ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "podman info timed out"
    if out.returncode != 0:
        return f"podman info failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def postgres_problem() -> str | None:
    """Why the PostgreSQL tests cannot run, or None when KYBERN_TEST_PG_URL names a server."""
    if not os.environ.get("KYBERN_TEST_PG_URL"):
        return "KYBERN_TEST_PG_URL is not set (contrib/run-tests.sh sets it)"
    return None
