"""The scheduler configuration file: a KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1).

Supported: ``profiles[].schedulerName``, ``profiles[].plugins.<extension point>.enabled`` /
``.disabled`` (``name``, ``weight`` for score; ``"*"`` disables every default of that point),
``plugins.multiPoint``, ``profiles[].pluginConfig[].args``, ``percentageOfNodesToScore``
(top level and per profile). Everything else kube accepts (leader election, client
connection, extenders) is refused with a one-line error rather than silently ignored.

Default plugins are the installed scheduler plugins that declare
``SCHEDULER_DEFAULT_ENABLED = True`` (kube's built-ins here, in kube's order), each with its
``SCHEDULER_DEFAULT_WEIGHT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import yaml
from kybern.components import ConfigurationError

API_VERSION = "kubescheduler.config.k8s.io/v1"
KIND = "KubeSchedulerConfiguration"
DEFAULT_SCHEDULER_NAME = "default-scheduler"

#: configuration key of each extension point -> the hook implementing it
EXTENSION_POINTS: dict[str, str] = {
    "queueSort": "kybern_sched_queue_sort_key",
    "preFilter": "kybern_sched_pre_filter",
    "filter": "kybern_sched_filter",
    "postFilter": "kybern_sched_post_filter",
    "preScore": "kybern_sched_pre_score",
    "score": "kybern_sched_score",
    "reserve": "kybern_sched_reserve",
    "permit": "kybern_sched_permit",
    "preBind": "kybern_sched_pre_bind",
    "bind": "kybern_sched_bind",
    "postBind": "kybern_sched_post_bind",
}
#: hooks that follow another point's plugin list (normalize with score, unreserve with reserve)
COMPANION_HOOKS = {"kybern_sched_normalize_score": "score", "kybern_sched_unreserve": "reserve"}

#: kube's default order, so filters fail in the same order and messages read the same
KUBE_ORDER = (
    "PrioritySort",
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodeResourcesFit",
    "PodTopologySpread",
    "InterPodAffinity",
    "DefaultPreemption",
    "DefaultBinder",
)

_TOP_LEVEL_KEYS = {"apiVersion", "kind", "profiles", "percentageOfNodesToScore", "parallelism"}
_PROFILE_KEYS = {"schedulerName", "plugins", "pluginConfig", "percentageOfNodesToScore"}


@dataclass(frozen=True)
class SchedulerPlugin:
    """An installed plugin that implements scheduling hooks."""

    name: str
    #: pluggy's registration name (the entry point name)
    registered_as: str
    hooks: frozenset[str]
    default_enabled: bool
    default_weight: int


@dataclass
class ProfileConfig:
    scheduler_name: str
    #: extension point key -> enabled plugin names in call order
    enabled: dict[str, list[str]]
    weights: dict[str, int]
    args: dict[str, dict[str, Any]]
    percentage_of_nodes_to_score: int | None = None


@dataclass
class SchedulerConfig:
    profiles: list[ProfileConfig] = field(default_factory=list)
    percentage_of_nodes_to_score: int | None = None

    def profile(self, name: str) -> ProfileConfig | None:
        for p in self.profiles:
            if p.scheduler_name == name:
                return p
        return None


def discover_plugins(pm: pluggy.PluginManager) -> dict[str, SchedulerPlugin]:
    """Scheduler plugins among the registered ones, by scheduler name, in kube's order."""
    hook_names = set(EXTENSION_POINTS.values()) | set(COMPANION_HOOKS)
    found: dict[str, SchedulerPlugin] = {}
    for registered, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = frozenset(c.name for c in pm.get_hookcallers(plugin) or [] if c.name in hook_names)
        if not hooks:
            continue
        name = getattr(plugin, "SCHEDULER_PLUGIN_NAME", None) or registered
        if name in found:
            raise ConfigurationError(
                f"two plugins call themselves scheduler plugin {name!r}: "
                f"{found[name].registered_as}, {registered}"
            )
        found[name] = SchedulerPlugin(
            name=name,
            registered_as=registered,
            hooks=hooks,
            default_enabled=bool(getattr(plugin, "SCHEDULER_DEFAULT_ENABLED", False)),
            default_weight=int(getattr(plugin, "SCHEDULER_DEFAULT_WEIGHT", 1)),
        )
    order = {n: i for i, n in enumerate(KUBE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"scheduler config {where}: {message}")


def _plugin_set(raw: Any, where: str) -> tuple[list[tuple[str, int | None]], list[str]]:
    if raw is None:
        return [], []
    if not isinstance(raw, dict):
        raise _fail(where, "must be a mapping with enabled/disabled lists")
    unknown = set(raw) - {"enabled", "disabled"}
    if unknown:
        raise _fail(where, f"unknown field {sorted(unknown)[0]!r}")
    enabled: list[tuple[str, int | None]] = []
    for i, item in enumerate(raw.get("enabled") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise _fail(f"{where}.enabled[{i}]", "name: Required value")
        weight = item.get("weight")
        if weight is not None and (not isinstance(weight, int) or not 0 <= weight <= 100):
            raise _fail(
                f"{where}.enabled[{i}].weight", f"Invalid value: {weight!r}: must be in the range [0, 100]"
            )
        enabled.append((item["name"], weight or None))
    disabled: list[str] = []
    for i, item in enumerate(raw.get("disabled") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise _fail(f"{where}.disabled[{i}]", "name: Required value")
        disabled.append(item["name"])
    return enabled, disabled


def _percentage(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or not 0 <= raw <= 100:
        raise _fail(where, f"Invalid value: {raw!r}: not in valid range [0-100]")
    return raw or None


def build_profile(raw: dict[str, Any], where: str, available: dict[str, SchedulerPlugin]) -> ProfileConfig:
    unknown = set(raw) - _PROFILE_KEYS
    if unknown:
        raise _fail(where, f"unknown field {sorted(unknown)[0]!r}")
    name = raw.get("schedulerName") or DEFAULT_SCHEDULER_NAME
    plugins = raw.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise _fail(f"{where}.plugins", "must be a mapping of extension points")
    bad_point = sorted(set(plugins) - set(EXTENSION_POINTS) - {"multiPoint", "normalizeScore"})
    if bad_point:
        raise _fail(
            f"{where}.plugins",
            f"unknown extension point {bad_point[0]!r} (known: multiPoint, {', '.join(EXTENSION_POINTS)})",
        )

    def check_known(names: list[str], at: str) -> None:
        for i, n in enumerate(names):
            if n != "*" and n not in available:
                raise _fail(
                    f"{at}[{i}]", f"unknown plugin {n!r} (installed: {', '.join(available) or 'none'})"
                )

    multi_on, multi_off = _plugin_set(plugins.get("multiPoint"), f"{where}.plugins.multiPoint")
    check_known([n for n, _ in multi_on], f"{where}.plugins.multiPoint.enabled")
    check_known(multi_off, f"{where}.plugins.multiPoint.disabled")
    weights: dict[str, int] = {n: p.default_weight for n, p in available.items()}
    for n, w in multi_on:
        if w is not None:
            weights[n] = w
    enabled: dict[str, list[str]] = {}
    for point, hook in EXTENSION_POINTS.items():
        names = [n for n, p in available.items() if p.default_enabled and hook in p.hooks]
        if "*" in multi_off:
            names = []
        names = [n for n in names if n not in multi_off]
        for n, _ in multi_on:
            if hook in available[n].hooks and n not in names:
                names.append(n)
        on, off = _plugin_set(plugins.get(point), f"{where}.plugins.{point}")
        check_known([n for n, _ in on], f"{where}.plugins.{point}.enabled")
        check_known(off, f"{where}.plugins.{point}.disabled")
        if "*" in off:
            names = []
        names = [n for n in names if n not in off]
        for i, (n, w) in enumerate(on):
            if hook not in available[n].hooks:
                raise _fail(
                    f"{where}.plugins.{point}.enabled[{i}]",
                    f"plugin {n!r} does not implement the {point} extension point",
                )
            if n in names:
                names.remove(n)
            names.append(n)
            if w is not None and point == "score":
                weights[n] = w
        enabled[point] = names
    if not enabled["bind"]:
        raise _fail(f"{where}.plugins.bind", "at least one bind plugin is needed")
    if len(enabled["queueSort"]) > 1:
        raise _fail(f"{where}.plugins.queueSort", "only one queue sort plugin can be enabled")
    args: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(raw.get("pluginConfig") or []):
        at = f"{where}.pluginConfig[{i}]"
        if not isinstance(entry, dict) or not entry.get("name"):
            raise _fail(at, "name: Required value")
        pname = entry["name"]
        if pname not in available:
            raise _fail(f"{at}.name", f"unknown plugin {pname!r}")
        if pname in args:
            raise _fail(f"{at}.name", f"Duplicate value: {pname!r}")
        plugin_args = entry.get("args") or {}
        if not isinstance(plugin_args, dict):
            raise _fail(f"{at}.args", "must be a mapping")
        plugin_args = {k: v for k, v in plugin_args.items() if k not in ("apiVersion", "kind")}
        if pname == "NodeResourcesFit":
            from kybern.plugins.scheduler.defaults.noderesourcesfit import validate_args

            problems = validate_args(plugin_args)
            if problems:
                raise _fail(f"{at}.args", problems[0])
        args[pname] = plugin_args
    return ProfileConfig(
        scheduler_name=name,
        enabled=enabled,
        weights=weights,
        args=args,
        percentage_of_nodes_to_score=_percentage(
            raw.get("percentageOfNodesToScore"), f"{where}.percentageOfNodesToScore"
        ),
    )


def parse_config(doc: Any, available: dict[str, SchedulerPlugin], where: str = "") -> SchedulerConfig:
    """Validate and resolve a configuration document (None means kube's defaults)."""
    where = where or "<defaults>"
    if doc is None:
        doc = {"apiVersion": API_VERSION, "kind": KIND}
    if not isinstance(doc, dict):
        raise _fail(where, f"must be a {KIND} mapping")
    if doc.get("apiVersion") != API_VERSION:
        raise _fail(where, f"apiVersion must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise _fail(where, f"kind must be {KIND!r}, got {doc.get('kind')!r}")
    unknown = set(doc) - _TOP_LEVEL_KEYS
    if unknown:
        raise _fail(where, f"unsupported field {sorted(unknown)[0]!r}")
    raw_profiles = doc.get("profiles") or [{}]
    if not isinstance(raw_profiles, list):
        raise _fail(f"{where}: profiles", "must be a list")
    config = SchedulerConfig(
        percentage_of_nodes_to_score=_percentage(
            doc.get("percentageOfNodesToScore"), f"{where}: percentageOfNodesToScore"
        )
    )
    for i, raw in enumerate(raw_profiles):
        if not isinstance(raw, dict):
            raise _fail(f"{where}: profiles[{i}]", "must be a mapping")
        profile = build_profile(raw, f"{where}: profiles[{i}]", available)
        if config.profile(profile.scheduler_name) is not None:
            raise _fail(
                f"{where}: profiles[{i}].schedulerName", f"Duplicate value: {profile.scheduler_name!r}"
            )
        if config.profiles and profile.enabled["queueSort"] != config.profiles[0].enabled["queueSort"]:
            raise _fail(f"{where}: profiles[{i}].plugins.queueSort", "must be the same for all profiles")
        config.profiles.append(profile)
    return config


def load_config(path: Path | str | None, available: dict[str, SchedulerPlugin]) -> SchedulerConfig:
    """Read ``--scheduler-config`` (or kube's defaults without one); one-line errors."""
    if path is None:
        return parse_config(None, available)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"scheduler config {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigurationError(f"scheduler config {path}: not valid YAML{line}") from None
    return parse_config(doc, available, str(path))
