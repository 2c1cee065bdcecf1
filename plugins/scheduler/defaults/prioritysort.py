"""PrioritySort: higher spec.priority first, then older pods first.

The priority is the pod's ``spec.priority``, which admission fills from priorityClassName.
The API server does not serve scheduling.k8s.io PriorityClass objects yet: the resources
plugin resolves the two system classes (system-cluster-critical, system-node-critical) and
gives every other pod 0, so custom classes need spec.priority set directly for now.
"""

from __future__ import annotations

from typing import Any

from kybern import hookimpl
from kybern.scheduling import PodInfo

SCHEDULER_PLUGIN_NAME = "PrioritySort"
SCHEDULER_DEFAULT_ENABLED = True


@hookimpl
def kybern_sched_queue_sort_key(pod: PodInfo) -> Any:
    return (-pod.priority, pod.creation)
