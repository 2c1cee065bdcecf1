"""The Podman plugin's wiring and its diagnosis texts (no containers needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kybern.components import RunContext
from kybern.config import Config
from kybern.pluginmanager import load_plugins
from kybern.runtime import ContainerRuntime
from kybern.runtimes.podman import diagnose
from kybern.runtimes.podman.config import MAX_RUNROOT, PodmanConfig
from kybern.runtimes.podman.runtime import PodmanRuntime


def test_plugin_offers_podman_runtime_built_from_agent_options(tmp_path: Path) -> None:
    loaded = load_plugins()
    specs = [s for batch in loaded.manager.hook.kybern_container_runtimes() for s in batch]
    [podman] = [s for s in specs if s.name == "podman"]
    config = Config(
        data_dir=tmp_path,
        node_name="n1",
        extra={"podman_isolated": True, "podman_network": "pods", "podman_containers_conf": "/x.conf"},
    )
    runtime = podman.factory(RunContext(config=config, plugins=loaded.manager))
    assert isinstance(runtime, PodmanRuntime) and isinstance(runtime, ContainerRuntime)
    cfg = runtime.config
    assert (cfg.node_name, cfg.isolated, cfg.network, cfg.containers_conf) == (
        "n1",
        True,
        "pods",
        Path("/x.conf"),
    )
    args = cfg.global_args()
    assert args[args.index("--root") + 1] == str(tmp_path / "podman" / "storage")
    options = [o.name for batch in loaded.manager.hook.kybern_server_options(command="agent") for o in batch]
    assert {"podman_socket", "podman_isolated", "podman_network"} <= set(options)


def test_environment_steers_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYBERN_PODMAN_SOCKET", "unix:///run/other.sock")
    cfg = PodmanConfig.from_extra(tmp_path, "n2", {})
    assert cfg.socket == "unix:///run/other.sock" and not cfg.own_storage


def test_long_data_dirs_get_short_runroot_and_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    cfg = PodmanConfig(data_dir=deep, isolated=True)
    assert len(str(cfg.effective_runroot())) <= MAX_RUNROOT
    assert len(str(cfg.own_socket())) <= 100
    assert (
        cfg.effective_runroot()
        != PodmanConfig(data_dir=tmp_path / "other", isolated=True).effective_runroot()
    )


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("crun: cgroups in hybrid mode not supported: OCI runtime error", 'runtime = "runc"'),
        (
            "runc create failed: error setting rlimits for ready process: error setting rlimit type 7: "
            "operation not permitted",
            "default_ulimits",
        ),
        ('default OCI runtime "runc" not found: invalid argument', "apt-get install podman runc"),
    ],
)
def test_known_podman_failures_become_one_line_fixes(error: str, fix: str) -> None:
    line = diagnose.explain(error)
    assert line is not None and fix in line and "\n" not in line
    assert diagnose.explain("container exited with code 1") is None
