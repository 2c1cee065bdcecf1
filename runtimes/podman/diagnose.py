"""Turning Podman's failures into one line that says what is wrong and how to fix it.

The node's NotReady condition and the kubelet's events show these lines, so each names the
fix a Debian host needs (the same ones contrib/host-setup.sh applies).
"""

from __future__ import annotations

import resource
import shutil

INSTALL_FIX = "apt-get install podman runc"
HOST_SETUP = "run contrib/host-setup.sh"


def podman_missing(binary: str = "podman") -> str | None:
    """None when the podman binary is on PATH, else the reason it is not usable."""
    if shutil.which(binary):
        return None
    return f"podman is not installed ({binary!r} not on PATH): {INSTALL_FIX}"


def hard_nofile() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def explain(error: str) -> str | None:
    """A one-line reason and fix for a known host problem in a Podman error text, else None."""
    text = error.lower()
    if "hybrid mode" in text or ("crun" in text and "cgroup" in text):
        return (
            'crun cannot run containers on hybrid cgroups: set runtime = "runc" under [engine] '
            f"in containers.conf ({INSTALL_FIX}); {HOST_SETUP}"
        )
    if "rlimit" in text:
        n = hard_nofile()
        return (
            f"Podman's default ulimits exceed this host's hard limits (nofile {n}): set "
            f'default_ulimits = ["nofile={n}:{n}", "nproc={n}:{n}"] under [containers] in '
            f"containers.conf; {HOST_SETUP}"
        )
    if "runc" in text and ("not found" in text or "no such file" in text):
        return f"the OCI runtime runc is missing: {INSTALL_FIX}"
    if "oci runtime" in text and "not found" in text:
        return f'no usable OCI runtime: {INSTALL_FIX} and set runtime = "runc" in containers.conf'
    return None


def not_answering(url: str, error: str) -> str:
    return (
        f"Podman service at {url} does not answer ({first_line(error)}): start it (systemctl start "
        "podman.socket, or podman system service --time=0), or leave the socket unset so kybern "
        "starts its own"
    )


def first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."
