"""Long-running components (API server, scheduler, controllers, kubelet, ...) and their wiring.

A plugin offers components through ``kybern_components``; ``kybern server`` and
``kybern agent`` start the enabled ones in dependency order and stop them in reverse. The
names users can pass to ``--disable`` are fixed here so scripts can rely on them, whether or
not a plugin providing them is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pluggy
    from kybern.client import ApiClient
    from kybern.config import Config
    from kybern.store import Store

#: the names `--disable` accepts (like k3s' --disable), besides single controllers by name
KNOWN_COMPONENTS: tuple[str, ...] = (
    "apiserver",
    "scheduler",
    "controller-manager",
    "kubelet",
    "proxy",
    "dns",
    "dashboard",
    "metrics",
    "logging",
)

#: single controllers `--disable` accepts (run by the controller-manager component), whether
#: or not a plugin providing them is installed; plugins may add more (hook kybern_controllers)
KNOWN_CONTROLLERS: tuple[str, ...] = (
    "replicaset",
    "replicationcontroller",
    "deployment",
    "daemonset",
    "job",
    "cronjob",
    "garbagecollector",
    "namespace",
    "nodelifecycle",
    "nodeipam",
    "serviceaccount",
    "rootcacertpublisher",
)


class ConfigurationError(Exception):
    """A user-fixable problem with how components were asked to run (one-line message)."""


class Component(Protocol):
    async def start(self) -> None:
        """Begin work; return once the component is serving (start-up errors raise here)."""
        ...

    async def stop(self) -> None:
        """Stop work and release resources; must be safe to call after a failed start."""
        ...


@dataclass
class RunContext:
    """What a component factory gets: configuration, plugins and its ways to the cluster."""

    config: Config
    plugins: pluggy.PluginManager
    #: the store, in the control plane process only (the API server owns it)
    store: Store | None = None
    #: an API client factory (optional argument: user agent); components write through the
    #: API like any client
    api: Callable[..., ApiClient] | None = None
    #: values components publish for others in the same process (e.g. the API server's URL)
    shared: dict[str, Any] = field(default_factory=dict)
    #: set when the process is shutting down
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    factory: Callable[[RunContext], Component]
    #: names of components (or groups) that must be enabled for this one to work
    requires: tuple[str, ...] = ()
    #: a group that disables it too (each controller is in "controller-manager")
    group: str | None = None
    #: which process runs it: "server" (control plane) and/or "agent" (every node)
    roles: frozenset[str] = frozenset({"server"})
    #: start order: lower first (store users before API clients)
    order: int = 50
    #: works on the store itself, so only in the API server's process (never as a
    #: ``kybern component`` process)
    needs_store: bool = False
    description: str = ""

    def matches(self, name: str) -> bool:
        return name == self.name or (self.group is not None and name == self.group)


def select_components(
    specs: Iterable[ComponentSpec],
    role: str,
    disabled: Iterable[str],
    run_agent: bool = True,
    controllers: Iterable[str] = (),
) -> list[ComponentSpec]:
    """The components a process runs, in start order.

    ``controllers`` are names of single controllers (the controller manager disables those
    itself; here they only count as known names). Raises ConfigurationError for an unknown
    --disable name or when an enabled component needs a disabled one, naming both, so the
    user can fix the command line.
    """
    specs = list(specs)
    disabled = set(disabled)
    known = set(KNOWN_COMPONENTS) | {s.name for s in specs} | {s.group for s in specs if s.group}
    known |= set(KNOWN_CONTROLLERS) | set(controllers)
    unknown = sorted(disabled - known)
    if unknown:
        raise ConfigurationError(
            f"unknown component {unknown[0]!r} in --disable; known: {', '.join(sorted(known))}"
        )
    wanted_roles = {role} | ({"agent"} if role == "server" and run_agent else set())
    chosen = [s for s in specs if (s.roles & wanted_roles) and not any(s.matches(d) for d in disabled)]

    def is_disabled(name: str) -> bool:
        return name in disabled or any(s.name == name and s.group in disabled for s in specs)

    for spec in chosen:
        for need in spec.requires:
            if is_disabled(need):
                raise ConfigurationError(
                    f"cannot disable {need}: {spec.name} needs it (disable {spec.name} too)"
                )
    return sorted(chosen, key=lambda s: (s.order, s.name))


def _runs_apart(spec: ComponentSpec) -> bool:
    return "server" in spec.roles and spec.name != "apiserver" and not spec.needs_store


def select_named(specs: Iterable[ComponentSpec], names: Iterable[str]) -> list[ComponentSpec]:
    """The server components ``names`` (for ``kybern component``), in start order.

    Raises ConfigurationError for a name no plugin offers, for the API server (it is the
    server process itself: it owns the store) and for node components (``kybern agent``).
    """
    by_name = {s.name: s for s in specs}
    chosen: list[ComponentSpec] = []
    for name in dict.fromkeys(names):
        spec = by_name.get(name)
        if name == "apiserver":
            raise ConfigurationError("the apiserver cannot run as a component: it is `kybern server` itself")
        if spec is None:
            offered = sorted(n for n, s in by_name.items() if _runs_apart(s))
            raise ConfigurationError(f"unknown component {name!r}; server components: {', '.join(offered)}")
        if "server" not in spec.roles:
            raise ConfigurationError(f"{name} is a node component: it runs in `kybern agent`")
        if spec.needs_store:
            raise ConfigurationError(f"{name} works on the store: it runs only in `kybern server` itself")
        chosen.append(spec)
    return sorted(chosen, key=lambda s: (s.order, s.name))
