"""core/v1 (the legacy ``/api/v1`` group): the kinds every cluster has.

Discovery data (plural, short names, categories, verbs, subresources) is kube-apiserver 1.32's;
kinds without a status subresource or a generation in Kubernetes have none here either.
"""

from __future__ import annotations

from kybern import hookimpl
from kybern.models import core_v1 as m
from kybern.plugins.resources import cluster, config, pods, replication, services, storage
from kybern.plugins.resources.common import dig, json_defaulter, json_row, json_validator
from kybern.plugins.resources.pod_defaults import default_pod
from kybern.resources import GroupVersionKind, ResourceType, Subresource

STATUS = Subresource("status")
WRITE_ONLY = ("create",)

PODS = ResourceType(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    singular="pod",
    namespaced=True,
    model=m.Pod,
    short_names=("po",),
    categories=("all",),
    subresources=(
        STATUS,
        Subresource("binding", WRITE_ONLY, GroupVersionKind("", "v1", "Binding")),
        Subresource("eviction", WRITE_ONLY, GroupVersionKind("policy", "v1", "Eviction")),
        Subresource("exec", ("create", "get"), GroupVersionKind("", "v1", "PodExecOptions")),
        Subresource("log", ("get",)),
    ),
    status_subresource=True,
    # Kubernetes 1.32 does not track metadata.generation for pods
    generation_fields=(),
    default=json_defaulter(default_pod),
    validate=json_validator(pods.validate_pod),
    table_columns=pods.POD_COLUMNS,
    table_row=json_row(pods.pod_row),
    field_selectors=pods.POD_FIELD_SELECTORS,
)

NODES = ResourceType(
    group="",
    version="v1",
    kind="Node",
    plural="nodes",
    singular="node",
    namespaced=False,
    model=m.Node,
    short_names=("no",),
    subresources=(STATUS,),
    status_subresource=True,
    generation_fields=(),
    default=json_defaulter(cluster.default_node),
    validate=json_validator(cluster.validate_node),
    table_columns=cluster.NODE_COLUMNS,
    table_row=json_row(cluster.node_row),
    field_selectors={"spec.unschedulable": lambda n: "true" if dig(n, "spec", "unschedulable") else "false"},
)

NAMESPACES = ResourceType(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    singular="namespace",
    namespaced=False,
    model=m.Namespace,
    short_names=("ns",),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    subresources=(STATUS, Subresource("finalize", ("update",))),
    status_subresource=True,
    generation_fields=(),
    default=json_defaulter(cluster.default_namespace),
    validate=json_validator(cluster.validate_namespace),
    table_columns=cluster.NAMESPACE_COLUMNS,
    table_row=json_row(cluster.namespace_row),
    field_selectors={"status.phase": lambda ns: dig(ns, "status", "phase", default="")},
)

SERVICES = ResourceType(
    group="",
    version="v1",
    kind="Service",
    plural="services",
    singular="service",
    namespaced=True,
    model=m.Service,
    short_names=("svc",),
    categories=("all",),
    subresources=(STATUS,),
    status_subresource=True,
    generation_fields=(),
    default=json_defaulter(services.default_service),
    validate=json_validator(services.validate_service),
    table_columns=services.SERVICE_COLUMNS,
    table_row=json_row(services.service_row),
)

ENDPOINTS = ResourceType(
    group="",
    version="v1",
    kind="Endpoints",
    plural="endpoints",
    singular="endpoints",
    namespaced=True,
    model=m.Endpoints,
    short_names=("ep",),
    generation_fields=(),
    default=json_defaulter(services.default_endpoints),
    validate=json_validator(services.validate_endpoints),
    table_columns=services.ENDPOINTS_COLUMNS,
    table_row=json_row(services.endpoints_row),
)

CONFIG_MAPS = ResourceType(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    singular="configmap",
    namespaced=True,
    model=m.ConfigMap,
    short_names=("cm",),
    generation_fields=(),
    validate=json_validator(config.validate_config_map),
    table_columns=config.CONFIG_MAP_COLUMNS,
    table_row=json_row(config.config_map_row),
)

SECRETS = ResourceType(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    singular="secret",
    namespaced=True,
    model=m.Secret,
    generation_fields=(),
    default=json_defaulter(config.default_secret),
    validate=json_validator(config.validate_secret),
    table_columns=config.SECRET_COLUMNS,
    table_row=json_row(config.secret_row),
    field_selectors={"type": lambda s: dig(s, "type", default="")},
)

SERVICE_ACCOUNTS = ResourceType(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    singular="serviceaccount",
    namespaced=True,
    model=m.ServiceAccount,
    short_names=("sa",),
    subresources=(
        Subresource("token", WRITE_ONLY, GroupVersionKind("authentication.k8s.io", "v1", "TokenRequest")),
    ),
    generation_fields=(),
    table_columns=config.SERVICE_ACCOUNT_COLUMNS,
    table_row=json_row(config.service_account_row),
)

EVENTS = ResourceType(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    singular="event",
    namespaced=True,
    model=m.Event,
    short_names=("ev",),
    generation_fields=(),
    validate=json_validator(cluster.validate_event),
    table_columns=cluster.EVENT_COLUMNS,
    table_row=json_row(cluster.event_row),
    field_selectors=cluster.EVENT_FIELD_SELECTORS,
)

PERSISTENT_VOLUMES = ResourceType(
    group="",
    version="v1",
    kind="PersistentVolume",
    plural="persistentvolumes",
    singular="persistentvolume",
    namespaced=False,
    model=m.PersistentVolume,
    short_names=("pv",),
    subresources=(STATUS,),
    status_subresource=True,
    generation_fields=(),
    default=json_defaulter(storage.default_pv),
    validate=json_validator(storage.validate_pv),
    table_columns=storage.PV_COLUMNS,
    table_row=json_row(storage.pv_row),
)

PERSISTENT_VOLUME_CLAIMS = ResourceType(
    group="",
    version="v1",
    kind="PersistentVolumeClaim",
    plural="persistentvolumeclaims",
    singular="persistentvolumeclaim",
    namespaced=True,
    model=m.PersistentVolumeClaim,
    short_names=("pvc",),
    subresources=(STATUS,),
    status_subresource=True,
    generation_fields=(),
    default=json_defaulter(storage.default_pvc),
    validate=json_validator(storage.validate_pvc),
    table_columns=storage.PVC_COLUMNS,
    table_row=json_row(storage.pvc_row),
)

REPLICATION_CONTROLLERS = ResourceType(
    group="",
    version="v1",
    kind="ReplicationController",
    plural="replicationcontrollers",
    singular="replicationcontroller",
    namespaced=True,
    model=m.ReplicationController,
    short_names=("rc",),
    categories=("all",),
    subresources=(STATUS, Subresource("scale", kind=GroupVersionKind("autoscaling", "v1", "Scale"))),
    status_subresource=True,
    default=json_defaulter(replication.default_replication_controller),
    validate=json_validator(replication.validate_replication_controller),
    table_columns=replication.REPLICATION_CONTROLLER_COLUMNS,
    table_row=json_row(replication.replication_controller_row),
    field_selectors={"status.replicas": lambda rc: str(dig(rc, "status", "replicas", default=0))},
)

RESOURCES = [
    PODS,
    NODES,
    NAMESPACES,
    SERVICES,
    ENDPOINTS,
    CONFIG_MAPS,
    SECRETS,
    SERVICE_ACCOUNTS,
    EVENTS,
    PERSISTENT_VOLUMES,
    PERSISTENT_VOLUME_CLAIMS,
    REPLICATION_CONTROLLERS,
]


@hookimpl
def kybern_api_resources() -> list[ResourceType]:
    return list(RESOURCES)
