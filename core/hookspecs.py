"""Every hook kybern offers, in one place (like pytest's ``hookspec.py``).

A plugin is any module or object registered under the ``kybern.plugins`` entry point group
that implements some of these with ``@kybern.hookimpl``. The built-in components use the very
same hooks, so anything they do, a third-party package can do or replace.

Hooks returning lists are called on every plugin and their results are concatenated by the
caller; ``firstresult`` hooks stop at the first non-None answer. Later issues add hooks here,
never elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from kybern.components import ComponentSpec, RunContext
    from kybern.config import Config
    from kybern.controllers import ControllerSpec
    from kybern.hooktypes import (
        AdmissionRequest,
        DnsRecord,
        LogSink,
        MetricsSource,
        RuntimeSpec,
    )
    from kybern.resources import FieldError, ResourceType
    from kybern.scheduling import CycleState, NodeInfo, PodInfo, PostFilterResult
    from kybern.store import Store

PROJECT = "kybern"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- storage


@hookspec(firstresult=True)
def kybern_open_store(url: str, data_dir: Path) -> Store | None:
    """Open the store for a datastore URL (``sqlite:///...``, ``postgresql://...``).

    Return None when the URL's scheme is not yours. The store must be migrated and ready
    when returned; raise ``kybern.store.StoreUnavailableError`` with a message that says
    what to fix when the database cannot be reached.
    """


# --------------------------------------------------------------------------- components


@hookspec
def kybern_components() -> list[ComponentSpec]:
    """Long-running components a process may start (API server, scheduler, controllers,
    kubelet, proxy, DNS, add-ons). Names are what ``--disable`` takes."""


@hookspec
def kybern_server_options(command: str) -> list[click.Option]:
    """Extra options for ``kybern server`` or ``kybern agent`` (``command`` says which).

    Their values reach components as ``Config.extra[option.name]``.
    """


@hookspec
def kybern_cli_commands() -> list[click.Command]:
    """Extra ``kybern`` sub-commands."""


# --------------------------------------------------------------------------- API


@hookspec
def kybern_api_resources() -> list[ResourceType]:
    """API kinds to serve: discovery data, model, defaulting, validation, table columns."""


@hookspec
def kybern_admission_mutate(request: AdmissionRequest) -> None:
    """Change ``request.object`` in place before validation (mutating admission)."""


@hookspec
def kybern_admission_validate(request: AdmissionRequest) -> list[FieldError] | None:
    """Refuse a write: return causes (they become a 422 Invalid), or None to allow it."""


# --------------------------------------------------------------------------- scheduling
# Extension points of the scheduling framework (kube-scheduler's names). Each hook
# implementation belongs to a scheduler plugin, named by the module attribute
# ``SCHEDULER_PLUGIN_NAME`` (kube's name, e.g. "NodeResourcesFit"; default: the entry point
# name). A profile of the scheduler configuration enables, disables and weighs plugins by that
# name; the scheduler calls only the implementations its profile enables, one plugin at a
# time. ``SCHEDULER_DEFAULT_ENABLED = True`` puts a plugin in the default profile (built-ins,
# or a third-party plugin that wants to work once installed); ``SCHEDULER_DEFAULT_WEIGHT``
# is its score weight there (default 1).
#
# Types come from :mod:`kybern.scheduling`: ``state`` is the CycleState of one attempt,
# ``pod`` a PodInfo, ``nodes`` NodeInfos. Node-level hooks take a list of nodes and answer
# for all of them in one call. A reason is the one line kube-scheduler would print
# ("Insufficient cpu"); a ``kybern.scheduling.Unresolvable`` reason tells preemption not to
# bother with that node. Hooks marked "may return an awaitable" do API work: the scheduler
# awaits what they return.


@hookspec(firstresult=True)
def kybern_sched_queue_sort_key(pod: PodInfo) -> Any:
    """Sort key for the active queue (lower first); PrioritySort's is (-priority, creation)."""


@hookspec
def kybern_sched_pre_filter(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    """Compute per-pod state once. None to go on, ``kybern.scheduling.SKIP`` when this
    plugin's filter has nothing to check for the pod, or a reason that rejects the pod on
    every node."""


@hookspec
def kybern_sched_filter(
    state: CycleState, pod: PodInfo, nodes: list[NodeInfo]
) -> dict[str, list[str]] | None:
    """The nodes (by name) where ``pod`` cannot run, with the reasons; nodes not named pass."""


@hookspec
def kybern_sched_post_filter(
    state: CycleState, pod: PodInfo, reasons: dict[str, list[str]]
) -> PostFilterResult | Awaitable[PostFilterResult | None] | None:
    """Runs when no node fits (preemption); ``reasons`` are the filter failures per node.
    May return an awaitable."""


@hookspec
def kybern_sched_pre_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> str | None:
    """Prepare scoring state for the feasible nodes; ``SKIP`` when this plugin's score has no
    opinion about the pod."""


@hookspec
def kybern_sched_score(state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float] | None:
    """Score each feasible node (by name), higher is better; None for no opinion."""


@hookspec
def kybern_sched_normalize_score(state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
    """Rescale this plugin's own scores to 0..100 in place (called with that plugin's scores)."""


@hookspec
def kybern_sched_reserve(state: CycleState, pod: PodInfo, node_name: str) -> str | None:
    """Claim plugin-side resources on the chosen node before binding; a reason refuses."""


@hookspec
def kybern_sched_unreserve(state: CycleState, pod: PodInfo, node_name: str) -> None:
    """Undo ``reserve`` after a later extension point failed."""


@hookspec
def kybern_sched_permit(state: CycleState, pod: PodInfo, node_name: str) -> str | None:
    """Allow (None) or deny (a reason) binding."""


@hookspec
def kybern_sched_pre_bind(
    state: CycleState, pod: PodInfo, node_name: str
) -> str | Awaitable[str | None] | None:
    """Work before binding (e.g. provisioning volumes); a reason fails the attempt. May
    return an awaitable."""


@hookspec(firstresult=True)
def kybern_sched_bind(state: CycleState, pod: PodInfo, node_name: str) -> Awaitable[str | None] | None:
    """Bind the pod: return None to let another binder do it, or an awaitable that binds
    and gives None on success or the error (DefaultBinder posts pods/binding)."""


@hookspec
def kybern_sched_post_bind(state: CycleState, pod: PodInfo, node_name: str) -> None:
    """Informational, after a successful bind."""


# --------------------------------------------------------------------------- nodes


@hookspec
def kybern_container_runtimes() -> list[RuntimeSpec]:
    """Container runtimes a node agent can use (podman, simulated, ...)."""


@hookspec
def kybern_dns_records(qname: str, qtype: str) -> list[DnsRecord] | None:
    """Extra answers for cluster DNS; None when the name is not yours."""


# --------------------------------------------------------------------------- add-ons


@hookspec
def kybern_log_sinks(config: Config) -> list[LogSink]:
    """Destinations for cluster-level logging of container output."""


@hookspec
def kybern_metrics_sources(context: RunContext) -> list[MetricsSource]:
    """Where resource usage readings come from, for ``kubectl top`` and the dashboard."""


# --------------------------------------------------------------------------- controllers


@hookspec
def kybern_controllers() -> list[ControllerSpec]:
    """Controllers the controller manager runs (under its leader election, with shared
    informers). Names are what ``--disable`` takes for a single controller."""
