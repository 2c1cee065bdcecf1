"""contrib/example-score-plugin: a third-party Score plugin, installed with pip into a
temporary directory the server sees through PYTHONPATH, changes where pods go."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support import REPO
from support.cli import run_kybern
from support.cluster import running_server

from .kube import apply, make_nodes, namespace, pod_manifest, wait_bound

SRC = REPO / "contrib" / "example-score-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("example-score")
    src = work / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return target


def test_installed_plugin_is_listed(site: Path, tmp_path: Path) -> None:
    result = run_kybern("plugins", env={"PYTHONPATH": str(site)}, cwd=tmp_path)
    line = next(line for line in result.stdout.splitlines() if line.startswith("example-preferred-node"))
    assert "kybern-example-score-plugin 0.1.0" in line and "kybern_sched_score" in line


def test_installed_plugin_changes_placement(site: Path, tmp_path: Path) -> None:
    args = ("--disable", "controller-manager", "--disable", "kubelet")
    with running_server(tmp_path, *args, env={"PYTHONPATH": str(site)}) as server:
        ns = namespace(server, "example")
        make_nodes(
            server,
            {"name": "ex-a"},
            {"name": "ex-b", "labels": {"example.kybern.io/preferred": "true"}},
            {"name": "ex-c"},
        )
        apply(server, [pod_manifest(f"p{i}", ns, cpu="200m") for i in range(6)])
        where = wait_bound(server, ns, 6)
        # without the plugin LeastAllocated spreads these 2/2/2
        assert Counter(where.values()) == {"ex-b": 6}
