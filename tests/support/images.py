"""The busybox image tests and the demo run: built locally, since no registry is reachable.

The build itself is contrib/build-test-image.sh (host-setup and people running
shared/acceptance/kubectl-smoke.sh use it too), so the image's contents are defined once.
"""

from __future__ import annotations

import subprocess

from support import REPO

BUILD_SCRIPT = REPO / "contrib" / "build-test-image.sh"
#: not ``latest``: a ``latest`` image defaults to imagePullPolicy Always, and nothing can be pulled
DEFAULT_TAG = "localhost/kybern-busybox:1.0"


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], stdin=subprocess.DEVNULL).returncode == 0


def ensure_busybox_image(tag: str = DEFAULT_TAG) -> str:
    """Build the busybox test image unless it exists; return its tag.

    The image has /bin/busybox (Debian's busybox-static), a link for every applet, PATH=/bin,
    CMD /bin/sh and /www/index.html (for ``httpd -f -p 8080 -h /www``).
    """
    if image_exists(tag):
        return tag
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), tag], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if out.returncode != 0:
        raise RuntimeError(f"building {tag} failed: {out.stderr.strip()}")
    return tag
