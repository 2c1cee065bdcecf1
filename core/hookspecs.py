"""Every hook kybern offers, in one place (like pytest's ``hookspec.py``).

A plugin is any module or object registered under the ``kybern.plugins`` entry point group
that implements some of these with ``@kybern.hookimpl``. The built-in components use the very
same hooks, so anything they do, a third-party package can do or replace.

Hooks returning lists are called on every plugin and their results are concatenated by the
caller; ``firstresult`` hooks stop at the first non-None answer. Later issues add hooks here,
never elsewhere.
"""

from __future__ import annotations

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
# implementation belongs to a named plugin; a profile in the scheduler configuration enables,
# disables and weighs them by that name. ``state`` is the per-pod cycle state, ``pod`` the Pod
# model, ``node``/``nodes`` the scheduler's node infos. A "status" is None for success or a
# one-line reason that kube-scheduler would print ("Insufficient cpu").


@hookspec(firstresult=True)
def kybern_sched_queue_sort_key(pod: Any) -> Any:
    """Sort key for the active queue (lower first); PrioritySort's is (-priority, time)."""


@hookspec
def kybern_sched_pre_filter(state: Any, pod: Any, nodes: list[Any]) -> str | None:
    """Compute per-pod state once, or reject the pod before looking at any node."""


@hookspec
def kybern_sched_filter(state: Any, pod: Any, node: Any) -> str | None:
    """Can ``pod`` run on ``node``? None if yes, else the reason."""


@hookspec
def kybern_sched_post_filter(state: Any, pod: Any, reasons: dict[str, str]) -> str | None:
    """Runs when no node fits (preemption): return a node name to nominate, or None."""


@hookspec
def kybern_sched_pre_score(state: Any, pod: Any, nodes: list[Any]) -> None:
    """Prepare scoring state for the feasible nodes."""


@hookspec
def kybern_sched_score(state: Any, pod: Any, nodes: list[Any]) -> dict[str, float]:
    """Score each feasible node (by name)."""


@hookspec
def kybern_sched_normalize_score(state: Any, pod: Any, scores: dict[str, float]) -> None:
    """Rescale this plugin's scores to 0..100 in place."""


@hookspec
def kybern_sched_reserve(state: Any, pod: Any, node_name: str) -> str | None:
    """Claim resources on the chosen node before binding."""


@hookspec
def kybern_sched_unreserve(state: Any, pod: Any, node_name: str) -> None:
    """Undo ``reserve`` after a later extension point failed."""


@hookspec
def kybern_sched_permit(state: Any, pod: Any, node_name: str) -> str | None:
    """Allow, deny (reason) or delay binding."""


@hookspec
def kybern_sched_pre_bind(state: Any, pod: Any, node_name: str) -> str | None:
    """Work before binding (e.g. provisioning volumes)."""


@hookspec(firstresult=True)
def kybern_sched_bind(state: Any, pod: Any, node_name: str) -> bool | None:
    """Bind the pod; return True if handled (DefaultBinder uses pods/binding)."""


@hookspec
def kybern_sched_post_bind(state: Any, pod: Any, node_name: str) -> None:
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
