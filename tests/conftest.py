"""Shared test settings: what the markers mean on this machine, and CI detection.

Markers (declared in pyproject.toml): ``slow`` (left out of the default run), ``podman``
(needs Podman) and ``postgres`` (needs ``KYBERN_TEST_PG_URL``). On a developer's machine a
test whose ``podman``/``postgres`` need is missing is skipped with the reason; under CI
(``CI=true``) the same test fails instead, because contrib/host-setup.sh provides both there
and a silent skip would hide a broken setup.

Helpers shared by tests live in ``tests/support`` (``from support.hostcheck import IN_CI``;
pytest puts this folder on ``sys.path`` because it has no ``__init__.py``). Import them from
there, never from a ``conftest`` module: several folders have one, and the name is ambiguous.
"""

from __future__ import annotations

import pytest
from support.hostcheck import IN_CI, podman_problem, postgres_problem


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
