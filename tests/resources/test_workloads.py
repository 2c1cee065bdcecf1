"""apps/v1 kinds: defaults, validation with kube's messages, table rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kybern.plugins.resources.apps_v1 import (
    CONTROLLER_REVISIONS,
    DAEMON_SETS,
    DEPLOYMENTS,
    REPLICA_SETS,
    STATEFUL_SETS,
)
from kybern.resources import ResourceType

from .helpers import decode, defaulted, errors, row, valid_defaulted

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
}


def workload(kind: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}, "template": copy.deepcopy(TEMPLATE)}
    body.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": "default"},
        "spec": body,
    }


def test_deployment_defaults() -> None:
    out = valid_defaulted(DEPLOYMENTS, workload("Deployment"))
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    template_spec = spec["template"]["spec"]
    assert template_spec["restartPolicy"] == "Always"
    assert template_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    # pod-only defaults (admission, SetDefaults_Pod) stay out of templates
    for key in ("enableServiceLinks", "serviceAccountName", "tolerations", "priority"):
        assert key not in template_spec
    recreate = defaulted(DEPLOYMENTS, workload("Deployment", strategy={"type": "Recreate"}))
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_other_apps_defaults() -> None:
    assert valid_defaulted(REPLICA_SETS, workload("ReplicaSet"))["spec"]["replicas"] == 1
    ds = valid_defaulted(DAEMON_SETS, workload("DaemonSet"))["spec"]
    assert ds["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["revisionHistoryLimit"] == 10
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    sts = valid_defaulted(
        STATEFUL_SETS, workload("StatefulSet", serviceName="web", volumeClaimTemplates=[claim])
    )["spec"]
    assert sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert sts["volumeClaimTemplates"][0]["status"] == {"phase": "Pending"}


MISMATCH = (
    'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not '
    "match template `labels`"
)


@pytest.mark.parametrize(
    ("rt", "kind", "spec", "expected"),
    [
        (
            DEPLOYMENTS,
            "Deployment",
            {"replicas": -1},
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"template": {**TEMPLATE, "metadata": {"labels": {"app": "other"}}}},
            [MISMATCH],
        ),
        (
            REPLICA_SETS,
            "ReplicaSet",
            {"template": {**TEMPLATE, "metadata": {"labels": {"app": "other"}}}},
            [MISMATCH],
        ),
        (
            DAEMON_SETS,
            "DaemonSet",
            {"template": {**TEMPLATE, "metadata": {"labels": {"app": "other"}}}},
            [MISMATCH],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"selector": None},
            [
                "spec.selector: Required value",
                # a missing selector selects nothing, so kube also reports the template labels
                'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
                "`selector` does not match "
                "template `labels`",
            ],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"selector": {}},
            ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"template": {**TEMPLATE, "spec": {**TEMPLATE["spec"], "restartPolicy": "OnFailure"}}},
            ['spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"'],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}},
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when "
                "`maxSurge` is 0"
            ],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}}},
            [
                'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be '
                "greater than 100%"
            ],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
            [
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` "
                "is 'Recreate'"
            ],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"minReadySeconds": 700},
            ["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"],
        ),
        (
            DEPLOYMENTS,
            "Deployment",
            {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
            [
                "spec.selector.matchExpressions[0].values: Required value: must be specified when "
                "`operator` is "
                "'In' or 'NotIn'",
                "spec.selector: Invalid value: {'matchExpressions': [{'key': 'app', 'operator': 'In'}]}: "
                "invalid label selector",
            ],
        ),
        (
            DAEMON_SETS,
            "DaemonSet",
            {"selector": {}},
            ["spec.selector: Invalid value: {}: empty selector is invalid for daemonset"],
        ),
        (
            STATEFUL_SETS,
            "StatefulSet",
            {"podManagementPolicy": "Random"},
            ["spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"],
        ),
    ],
)
def test_validation(rt: ResourceType, kind: str, spec: dict[str, Any], expected: list[str]) -> None:
    assert errors(rt, defaulted(rt, workload(kind, **spec))) == expected


@pytest.mark.parametrize("rt", [DEPLOYMENTS, REPLICA_SETS, DAEMON_SETS])
def test_selector_is_immutable(rt: ResourceType) -> None:
    old = defaulted(rt, workload(rt.kind))
    new = copy.deepcopy(old)
    new["spec"]["selector"]["matchLabels"]["tier"] = "x"
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    assert errors(rt, new, old) == [
        "spec.selector: Invalid value: {'matchLabels': {'app': 'web', 'tier': 'x'}}: field is immutable"
    ]
    scaled = copy.deepcopy(old)
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    assert errors(rt, scaled, old) == []


def test_daemon_set_rolling_update_rules() -> None:
    both = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    assert errors(DAEMON_SETS, defaulted(DAEMON_SETS, workload("DaemonSet", updateStrategy=both))) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when "
        "maxUnavailable is non-zero"
    ]
    none = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}
    assert errors(DAEMON_SETS, defaulted(DAEMON_SETS, workload("DaemonSet", updateStrategy=none))) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
    ]
    deadline = copy.deepcopy(TEMPLATE)
    deadline["spec"]["activeDeadlineSeconds"] = 5
    assert errors(DAEMON_SETS, defaulted(DAEMON_SETS, workload("DaemonSet", template=deadline))) == [
        "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is "
        "not Supported"
    ]


def test_stateful_set_template_may_mount_claim_templates() -> None:
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    body = workload("StatefulSet", serviceName="web", template=template, volumeClaimTemplates=[claim])
    valid_defaulted(STATEFUL_SETS, body)
    dotted = defaulted(STATEFUL_SETS, body)
    dotted["metadata"]["name"] = "web.v2"
    assert errors(STATEFUL_SETS, dotted) == ['metadata.name: Invalid value: "web.v2": must not contain dots']


def test_stateful_set_update_rules() -> None:
    old = defaulted(STATEFUL_SETS, workload("StatefulSet", serviceName="web"))
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    assert errors(STATEFUL_SETS, new, old) == []
    new["spec"]["serviceName"] = "other"
    assert errors(STATEFUL_SETS, new, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
        "'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    ]


def test_rows() -> None:
    deploy = defaulted(DEPLOYMENTS, workload("Deployment", replicas=3))
    deploy["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    deploy["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    assert row(DEPLOYMENTS, deploy) == [
        "web",
        "2/3",
        3,
        2,
        "2024-01-01T00:00:00Z",
        "app",
        "nginx:1.25",
        "app=web",
    ]
    rs = defaulted(REPLICA_SETS, workload("ReplicaSet"))
    rs["status"] = {"replicas": 1}
    assert row(REPLICA_SETS, rs) == ["web", 1, 1, 0, "<unknown>", "app", "nginx:1.25", "app=web"]
    ds = defaulted(DAEMON_SETS, workload("DaemonSet"))
    ds["status"] = {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1}
    assert row(DAEMON_SETS, ds) == [
        "web",
        2,
        2,
        1,
        0,
        0,
        "<none>",
        "<unknown>",
        "app",
        "nginx:1.25",
        "app=web",
    ]
    sts = defaulted(STATEFUL_SETS, workload("StatefulSet", replicas=2))
    assert row(STATEFUL_SETS, sts) == ["web", "0/2", "<unknown>", "app", "nginx:1.25"]
    assert [c.name for c in DAEMON_SETS.table_columns] == [
        "Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age",
        "Containers", "Images", "Selector",
    ]  # fmt: skip


def test_replica_set_field_selector() -> None:
    rs = defaulted(REPLICA_SETS, workload("ReplicaSet"))
    rs["status"] = {"replicas": 2}
    assert REPLICA_SETS.field_selectors["status.replicas"](decode(REPLICA_SETS, rs)) == "2"


def test_controller_revision() -> None:
    rev = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": "web-5d8f",
            "namespace": "default",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "uid": "u1", "controller": True}
            ],
        },
        "data": {"spec": {}},
        "revision": 2,
    }
    assert errors(CONTROLLER_REVISIONS, rev) == []
    assert row(CONTROLLER_REVISIONS, rev) == ["web-5d8f", "daemonset.apps/web", 2, "<unknown>"]
    changed = copy.deepcopy(rev)
    changed["data"] = {"spec": {"x": 1}}
    assert errors(CONTROLLER_REVISIONS, changed, rev) == [
        "data: Invalid value: {'spec': {'x': 1}}: field is immutable"
    ]
    missing = {**rev, "data": None, "revision": -1}
    assert errors(CONTROLLER_REVISIONS, missing) == [
        "data: Required value: data is mandatory",
        "revision: Invalid value: -1: must be greater than or equal to 0",
    ]
