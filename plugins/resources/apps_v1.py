"""apps/v1: Deployment, ReplicaSet, DaemonSet, StatefulSet and ControllerRevision."""

from __future__ import annotations

from kybern import hookimpl
from kybern.models import apps_v1 as m
from kybern.plugins.resources import workloads as w
from kybern.plugins.resources.common import dig, json_defaulter, json_row, json_validator
from kybern.resources import GroupVersionKind, ResourceType, Subresource

STATUS = Subresource("status")
SCALE = Subresource("scale", kind=GroupVersionKind("autoscaling", "v1", "Scale"))

DEPLOYMENTS = ResourceType(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    singular="deployment",
    namespaced=True,
    model=m.Deployment,
    short_names=("deploy",),
    categories=("all",),
    subresources=(STATUS, SCALE),
    status_subresource=True,
    default=json_defaulter(w.default_deployment),
    validate=json_validator(w.validate_deployment),
    table_columns=w.DEPLOYMENT_COLUMNS,
    table_row=json_row(w.deployment_row),
)

REPLICA_SETS = ResourceType(
    group="apps",
    version="v1",
    kind="ReplicaSet",
    plural="replicasets",
    singular="replicaset",
    namespaced=True,
    model=m.ReplicaSet,
    short_names=("rs",),
    categories=("all",),
    subresources=(STATUS, SCALE),
    status_subresource=True,
    default=json_defaulter(w.default_replica_set),
    validate=json_validator(w.validate_replica_set),
    table_columns=w.REPLICA_SET_COLUMNS,
    table_row=json_row(w.replica_set_row),
    field_selectors={"status.replicas": lambda rs: str(dig(rs, "status", "replicas", default=0))},
)

DAEMON_SETS = ResourceType(
    group="apps",
    version="v1",
    kind="DaemonSet",
    plural="daemonsets",
    singular="daemonset",
    namespaced=True,
    model=m.DaemonSet,
    short_names=("ds",),
    categories=("all",),
    subresources=(STATUS,),
    status_subresource=True,
    default=json_defaulter(w.default_daemon_set),
    validate=json_validator(w.validate_daemon_set),
    table_columns=w.DAEMON_SET_COLUMNS,
    table_row=json_row(w.daemon_set_row),
)

STATEFUL_SETS = ResourceType(
    group="apps",
    version="v1",
    kind="StatefulSet",
    plural="statefulsets",
    singular="statefulset",
    namespaced=True,
    model=m.StatefulSet,
    short_names=("sts",),
    categories=("all",),
    subresources=(STATUS, SCALE),
    status_subresource=True,
    default=json_defaulter(w.default_stateful_set),
    validate=json_validator(w.validate_stateful_set),
    table_columns=w.STATEFUL_SET_COLUMNS,
    table_row=json_row(w.stateful_set_row),
)

CONTROLLER_REVISIONS = ResourceType(
    group="apps",
    version="v1",
    kind="ControllerRevision",
    plural="controllerrevisions",
    singular="controllerrevision",
    namespaced=True,
    model=m.ControllerRevision,
    generation_fields=(),
    validate=json_validator(w.validate_controller_revision),
    table_columns=w.CONTROLLER_REVISION_COLUMNS,
    table_row=json_row(w.controller_revision_row),
)

RESOURCES = [DEPLOYMENTS, REPLICA_SETS, DAEMON_SETS, STATEFUL_SETS, CONTROLLER_REVISIONS]


@hookimpl
def kybern_api_resources() -> list[ResourceType]:
    return list(RESOURCES)
