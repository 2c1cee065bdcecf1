"""core/v1 ReplicationController: kube's defaults, validation messages and table rows."""

from __future__ import annotations

import copy
from typing import Any

from kybern.plugins.resources.core_v1 import REPLICATION_CONTROLLERS as RC

from .helpers import defaulted, errors, row, valid_defaulted

TEMPLATE = {
    "metadata": {"labels": {"app": "web", "tier": "front"}},
    "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
}


def rc(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"template": copy.deepcopy(TEMPLATE)}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": body,
    }


def test_defaults_come_from_the_template() -> None:
    out = valid_defaulted(RC, rc())
    assert out["spec"]["replicas"] == 1
    assert out["spec"]["selector"] == {"app": "web", "tier": "front"}
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert out["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert out["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_given_selector_labels_and_replicas_are_kept() -> None:
    body = rc(selector={"app": "web"}, replicas=0)
    body["metadata"]["labels"] = {"owner": "me"}
    out = valid_defaulted(RC, body)
    assert out["spec"]["selector"] == {"app": "web"}
    assert out["spec"]["replicas"] == 0
    assert out["metadata"]["labels"] == {"owner": "me"}


def test_validation_messages() -> None:
    no_labels = rc()
    no_labels["spec"]["template"]["metadata"] = {}
    assert errors(RC, defaulted(RC, no_labels)) == ["spec.selector: Required value"]
    mismatch = defaulted(RC, rc(selector={"app": "db"}))
    assert errors(RC, mismatch) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web", "tier":"front"}: '
        "`selector` does not match template `labels`"
    ]
    bad = defaulted(RC, rc(replicas=-1, minReadySeconds=-2))
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    bad["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
    assert errors(RC, bad) == [
        "spec.minReadySeconds: Invalid value: -2: must be greater than or equal to 0",
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        "spec.template.spec.activeDeadlineSeconds: Forbidden: "
        "activeDeadlineSeconds in ReplicationController is not Supported",
    ]
    no_template = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "x"}, "spec": {}}
    assert errors(RC, defaulted(RC, no_template)) == [
        "spec.selector: Required value",
        "spec.template: Required value",
    ]


def test_selector_may_change() -> None:
    old = defaulted(RC, rc())
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"app": "web"}
    assert errors(RC, new, old) == []


def test_row() -> None:
    out = defaulted(RC, rc(replicas=3))
    out["status"] = {"replicas": 2, "readyReplicas": 1}
    cells = row(RC, out)
    assert cells[:4] == ["web", 3, 2, 1]
    assert cells[5:] == ["app", "nginx:1.25", "app=web,tier=front"]
    assert [c.name for c in RC.table_columns] == [
        "Name",
        "Desired",
        "Current",
        "Ready",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert [c.priority for c in RC.table_columns] == [0, 0, 0, 0, 0, 1, 1, 1]


def test_status_rules_on_update() -> None:
    old = defaulted(RC, rc())
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 2, "readyReplicas": 3, "availableReplicas": 1, "fullyLabeledReplicas": -1}
    assert errors(RC, new, old) == [
        "status.fullyLabeledReplicas: Invalid value: -1: must be greater than or equal to 0",
        "status.readyReplicas: Invalid value: 3: cannot be greater than status.replicas",
    ]
    new["status"] = {"replicas": 3, "readyReplicas": 1, "availableReplicas": 2}
    assert errors(RC, new, old) == [
        "status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"
    ]
    new["status"] = {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2, "fullyLabeledReplicas": 3}
    assert errors(RC, new, old) == []
