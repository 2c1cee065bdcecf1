"""Shared test settings: what the markers mean on this machine, and CI detection.

Markers (declared in pyproject.toml): ``slow`` (left out of the default run), ``podman``
(needs Podman that can run containers) and ``postgres`` (needs ``KYBERN_TEST_PG_URL``).
On a developer's machine a test whose ``podman``/``postgres`` need is missing is skipped with
the reason; under CI (``CI=true``) the same test fails instead, because contrib/host-setup.sh
provides both there and a silent skip would hide a broken setup.

Helpers shared by tests live in ``tests/support`` (``from support.images import ...``;
pytest puts this folder on ``sys.path`` because it has no ``__init__.py``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def podman_problem() -> str | None:
    """Why Podman cannot run containers here, or None when it can (checked once per run)."""
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
    if not os.environ.get("KYBERN_TEST_PG_URL"):
        return "KYBERN_TEST_PG_URL is not set (contrib/run-tests.sh sets it)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, check in (("podman", podman_problem), ("postgres", postgres_problem)):
        if item.get_closest_marker(marker) is None:
            continue
        problem = check()
        if problem is None:
            continue
        if IN_CI:
            pytest.fail(f"{marker} is required under CI: {problem}", pytrace=False)
        pytest.skip(problem)
