"""Which components a process runs (``--disable``), and the order they start and stop in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kybern import hookimpl
from kybern.components import ComponentSpec, ConfigurationError, RunContext, select_components
from kybern.config import Config
from kybern.pluginmanager import load_plugins, new_manager
from kybern.runner import collect_components, run
from support.cli import assert_one_line_error, run_kybern


@dataclass
class Recorder:
    """Notes every start and stop, and can be told to fail one component's start."""

    events: list[str] = field(default_factory=list)
    fail_start: str | None = None


class RecordingComponent:
    def __init__(self, name: str, recorder: Recorder, ctx: RunContext) -> None:
        self.name, self.recorder, self.ctx = name, recorder, ctx

    async def start(self) -> None:
        if self.name == self.recorder.fail_start:
            raise ConfigurationError(f"{self.name} cannot start")
        self.recorder.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.recorder.events.append(f"stop {self.name}")


def spec(name: str, recorder: Recorder | None = None, **kw: object) -> ComponentSpec:
    rec = recorder or Recorder()
    return ComponentSpec(name=name, factory=lambda ctx: RecordingComponent(name, rec, ctx), **kw)  # type: ignore[arg-type]


def cluster_specs(recorder: Recorder | None = None) -> list[ComponentSpec]:
    """A control plane shaped like kybern's: what needs what, groups and roles."""
    rec = recorder or Recorder()
    agent = frozenset({"agent"})
    return [
        spec("apiserver", rec, order=10),
        spec("scheduler", rec, requires=("apiserver",), order=30),
        spec("deployment", rec, requires=("apiserver",), group="controller-manager", order=40),
        spec("replicaset", rec, requires=("apiserver",), group="controller-manager", order=40),
        spec("garbage-collector", rec, requires=("apiserver",), group="controller-manager", order=41),
        spec("dashboard", rec, requires=("apiserver", "metrics"), order=60),
        spec("metrics", rec, requires=("apiserver",), order=55),
        spec("kubelet", rec, roles=agent, order=70),
        spec("proxy", rec, roles=agent, order=71),
    ]


def names(specs: list[ComponentSpec]) -> list[str]:
    return [s.name for s in specs]


def test_server_runs_everything_in_start_order() -> None:
    chosen = select_components(cluster_specs(), "server", [])
    assert names(chosen) == [
        "apiserver",
        "scheduler",
        "deployment",
        "replicaset",
        "garbage-collector",
        "metrics",
        "dashboard",
        "kubelet",
        "proxy",
    ]


def test_disable_agent_leaves_out_node_components() -> None:
    chosen = select_components(cluster_specs(), "server", [], run_agent=False)
    assert "kubelet" not in names(chosen) and "proxy" not in names(chosen)
    assert "scheduler" in names(chosen)


def test_agent_runs_only_node_components() -> None:
    assert names(select_components(cluster_specs(), "agent", [])) == ["kubelet", "proxy"]


def test_disable_a_group_and_a_single_controller() -> None:
    no_cm = names(select_components(cluster_specs(), "server", ["controller-manager"]))
    assert not {"deployment", "replicaset", "garbage-collector"} & set(no_cm)
    assert "scheduler" in no_cm
    no_gc = names(select_components(cluster_specs(), "server", ["garbage-collector"]))
    assert "garbage-collector" not in no_gc and "deployment" in no_gc


def test_unknown_disable_name_lists_known_ones() -> None:
    with pytest.raises(ConfigurationError) as err:
        select_components(cluster_specs(), "server", ["schedular"])
    message = str(err.value)
    assert "'schedular'" in message and "scheduler" in message
    assert "\n" not in message


def test_known_name_without_a_provider_is_accepted() -> None:
    """``--disable dns`` works in scripts whether or not a DNS plugin is installed."""
    assert names(select_components([spec("apiserver")], "server", ["dns"])) == ["apiserver"]


def test_disabling_what_others_need_names_both() -> None:
    with pytest.raises(ConfigurationError) as err:
        select_components(cluster_specs(), "server", ["apiserver"])
    message = str(err.value)
    assert "apiserver" in message and "needs it" in message
    with pytest.raises(ConfigurationError, match="metrics: dashboard needs it"):
        select_components(cluster_specs(), "server", ["metrics"])


def test_disabling_the_dependents_too_is_fine() -> None:
    chosen = select_components(
        cluster_specs(),
        "server",
        ["apiserver", "scheduler", "controller-manager", "metrics", "dashboard"],
    )
    assert names(chosen) == ["kubelet", "proxy"]


class _Provides:
    """A plugin object offering components, registered like any entry point plugin."""

    def __init__(self, specs: list[ComponentSpec]) -> None:
        self.specs = specs

    @hookimpl
    def kybern_components(self) -> list[ComponentSpec]:
        return self.specs


def _agent_config(tmp_path: Path, disabled: frozenset[str] = frozenset()) -> Config:
    return Config(data_dir=tmp_path, role="agent", disabled=disabled, node_name="n1")


def test_runner_starts_in_order_and_stops_in_reverse(tmp_path: Path) -> None:
    rec = Recorder()
    pm = new_manager()
    pm.register(_Provides(cluster_specs(rec)), name="test")
    config = _agent_config(tmp_path)
    ctx = RunContext(config=config, plugins=pm)
    ctx.stopping.set()  # stop as soon as everything started
    asyncio.run(run(config, pm, ctx))
    assert rec.events == ["start kubelet", "start proxy", "stop proxy", "stop kubelet"]


def test_runner_failed_start_stops_the_started_ones(tmp_path: Path) -> None:
    rec = Recorder(fail_start="proxy")
    pm = new_manager()
    pm.register(_Provides(cluster_specs(rec)), name="test")
    config = _agent_config(tmp_path)
    with pytest.raises(ConfigurationError, match="proxy cannot start"):
        asyncio.run(run(config, pm, RunContext(config=config, plugins=pm)))
    # the failed one gets stop() too (it must be safe after a failed start), then the rest
    assert rec.events == ["start kubelet", "stop proxy", "stop kubelet"]


def test_two_plugins_providing_one_component_is_an_error() -> None:
    pm = new_manager()
    pm.register(_Provides([spec("scheduler")]), name="a")
    pm.register(_Provides([spec("scheduler")]), name="b")
    with pytest.raises(ConfigurationError, match="two plugins provide component 'scheduler'"):
        collect_components(pm)


def test_cli_refuses_to_disable_the_apiserver_others_need(tmp_path: Path) -> None:
    """With the installed plugins: ``--disable apiserver`` while something needs it."""
    specs = collect_components(load_plugins().manager)
    dependents = sorted(s.name for s in specs if "apiserver" in s.requires)
    if not dependents:
        pytest.skip("no installed component requires the apiserver yet")
    result = run_kybern("server", "--disable", "apiserver", "--data-dir", str(tmp_path), timeout=60)
    assert_one_line_error(result, "cannot disable apiserver", "needs it")
