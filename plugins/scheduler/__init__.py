"""The scheduler component plugin (``scheduler`` entry point).

It offers the ``scheduler`` component and the ``--scheduler-config FILE`` option of
``kybern server``; the extension points it drives are the ``kybern_sched_*`` hooks, and the
default plugins (``kybern.plugins.scheduler.defaults.*``) are separate entry points so a
third-party plugin is registered exactly like them.

Where it differs from kube-scheduler (1.32):

- scheduling.k8s.io PriorityClass objects are not served yet: the pod's ``spec.priority`` is
  used, which admission fills for the two system classes only (others get 0);
- plugins not written yet: NodePorts, NodeResourcesBalancedAllocation, ImageLocality, volume
  plugins, extenders (pods with schedulingGates are simply not queued until the gates go);
- no default (system) topology spreading, no PodDisruptionBudget check in preemption, no
  queueing hints (a node change or a pod deletion retries every unschedulable pod, after
  back-off; a newly assigned pod retries only pods with pod affinity or spread constraints);
- InterPodAffinity treats a non-empty namespaceSelector as "all namespaces" and does not
  score by existing pods' preferred terms;
- events are core/v1 Events written in the background by a bounded broadcaster (client-go's
  1000-event queue, dropping when full, its per-object spam filter, and a count update for an
  identical repeat), not events.k8s.io series.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from kybern import hookimpl
from kybern.components import ComponentSpec

if TYPE_CHECKING:
    from kybern.components import Component, RunContext


def create_scheduler(ctx: RunContext) -> Component:
    from kybern.plugins.scheduler.scheduler import Scheduler

    return Scheduler(ctx)


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "scheduler",
            create_scheduler,
            requires=("apiserver",),
            order=30,
            description="assigns pending pods to nodes (kube-scheduler's framework and plugins)",
        )
    ]


def _check_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a bad file before anything starts (ConfigurationError: one line from the CLI)."""
    if value:
        from kybern.pluginmanager import load_plugins
        from kybern.plugins.scheduler.config import discover_plugins, load_config

        load_config(value, discover_plugins(load_plugins().manager))
    return value


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    if command != "server":
        return []
    return [
        click.Option(
            ["--scheduler-config"],
            type=click.Path(dir_okay=False),
            default=None,
            metavar="FILE",
            callback=_check_config,
            help="KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) YAML: profiles, plugins, args",
        )
    ]
