"""Finding, loading and listing plugins.

Every plugin, built-in or third-party, is an entry point in the ``kybern.plugins`` group;
core imports none of them by name. A plugin that fails to import, or implements a hook that
no spec declares, is left out with a one-line error naming its package, unless it was
required, in which case loading fails.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
from dataclasses import dataclass, field
from typing import Any

import pluggy
from kybern import hookspecs
from loguru import logger

ENTRY_POINT_GROUP = "kybern.plugins"


class PluginLoadError(Exception):
    """A required plugin could not be loaded."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class PluginProblem:
    name: str
    distribution: str
    error: str

    def line(self) -> str:
        return f"plugin {self.name!r} from {self.distribution} not loaded: {self.error}"


@dataclass
class LoadedPlugins:
    manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    problems: list[PluginProblem] = field(default_factory=list)


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "")
    return (dist.metadata["Name"] or dist.name, dist.version)


def _undeclared_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no spec (pluggy only warns later)."""
    bad = []
    for name, _ in inspect.getmembers(plugin):
        if pm.parse_hookimpl_opts(plugin, name) is None:
            continue
        caller = getattr(pm.hook, name, None)
        if caller is None or caller.spec is None:
            bad.append(name)
    return bad


def register(pm: pluggy.PluginManager, plugin: object, name: str) -> tuple[str, ...]:
    """Register one plugin object; return its hook names. Raises ValueError if invalid."""
    bad = _undeclared_hooks(pm, plugin)
    if bad:
        raise ValueError(f"hook {bad[0]!r} matches no hook specification (typo?)")
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    return tuple(sorted(c.name for c in pm.get_hookcallers(plugin) or []))


def load_plugins(
    required: set[str] | frozenset[str] = frozenset(),
    entry_points: list[md.EntryPoint] | None = None,
) -> LoadedPlugins:
    """Load every plugin in the entry point group into a fresh plugin manager."""
    pm = new_manager()
    loaded = LoadedPlugins(manager=pm)
    eps = entry_points if entry_points is not None else list(md.entry_points(group=ENTRY_POINT_GROUP))
    seen: set[str] = set()
    for ep in sorted(eps, key=lambda e: e.name):
        dist, version = _dist_of(ep)
        if ep.name in seen:
            continue  # the same distribution visible twice on sys.path
        seen.add(ep.name)
        try:
            obj: Any = ep.load()
            hooks = register(pm, obj, ep.name)
        except Exception as exc:  # any import-time failure must not take the process down
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            problem = PluginProblem(ep.name, dist, f"{type(exc).__name__}: {first}")
            if ep.name in required:
                raise PluginLoadError(problem.line()) from exc
            logger.bind(component="plugins").error(problem.line())
            loaded.problems.append(problem)
            continue
        module = getattr(obj, "__name__", type(obj).__module__)
        loaded.plugins.append(PluginInfo(ep.name, dist, version, module, hooks))
    missing = sorted(set(required) - {p.name for p in loaded.plugins})
    if missing:
        raise PluginLoadError(f"required plugin {missing[0]!r} is not installed")
    return loaded
