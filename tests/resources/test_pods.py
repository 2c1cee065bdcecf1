"""Pods: defaulting as kube-apiserver applies it, validation messages, table rows, selectors."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kybern.plugins.resources.core_v1 import PODS

from .helpers import decode, defaulted, errors, row, valid_defaulted


def pod(**spec: Any) -> dict[str, Any]:
    body = {"containers": [{"name": "app", "image": "nginx"}]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": body,
    }


def test_defaults_match_kube_apiserver() -> None:
    out = valid_defaulted(PODS, pod())
    spec = out["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "Always"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert out["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:2", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy_from_tag(image: str, policy: str) -> None:
    out = defaulted(PODS, pod(containers=[{"name": "app", "image": image}]))
    assert out["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_nested_defaults_and_canonical_quantities() -> None:
    spec = {
        "containers": [
            {
                "name": "app",
                "image": "nginx:1.25",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}},
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "scratch", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch"},
            {"name": "h", "hostPath": {"path": "/x"}},
        ],
    }
    out = valid_defaulted(PODS, pod(**spec))
    container = out["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "1", "memory": "1Gi"},
    }
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    volumes = out["spec"]["volumes"]
    assert volumes[0]["configMap"] == {"name": "cfg", "defaultMode": 420}
    assert volumes[1] == {"name": "scratch", "emptyDir": {}}
    assert volumes[2]["hostPath"] == {"path": "/x", "type": ""}
    assert out["status"]["qosClass"] == "Guaranteed"


def test_defaulting_is_idempotent_and_keeps_user_values() -> None:
    once = defaulted(PODS, pod(restartPolicy="Never", tolerations=[{"operator": "Exists"}]))
    assert once["spec"]["restartPolicy"] == "Never"
    assert once["spec"]["tolerations"] == [{"operator": "Exists"}]  # already tolerates everything
    assert defaulted(PODS, copy.deepcopy(once)) == once


def test_burstable_qos() -> None:
    out = defaulted(
        PODS, pod(containers=[{"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m"}}}])
    )
    assert out["status"]["qosClass"] == "Burstable"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": []}, ["spec.containers: Required value"]),
        (
            {"containers": [{"name": "a"}]},
            ["spec.containers[0].image: Required value"],
        ),
        (
            {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]},
            ['spec.containers[1].name: Duplicate value: "a"'],
        ),
        (
            {"containers": [{"name": "A_b", "image": "x"}]},
            [
                'spec.containers[0].name: Invalid value: "A_b": a lowercase RFC 1123 label must '
                "consist of lower "
                "case alphanumeric characters or '-', and must start and end with an alphanumeric character "
                "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ],
        ),
        (
            {"restartPolicy": "Sometimes"},
            [
                'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
                '"OnFailure", "Never"'
            ],
        ),
        (
            {
                "containers": [
                    {"name": "a", "image": "x", "ports": [{"containerPort": 70000, "protocol": "ICMP"}]}
                ]
            },
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 "
                "and 65535, inclusive",
                'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: '
                '"SCTP", "TCP", "UDP"',
            ],
        ),
        (
            {
                "containers": [
                    {"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
                ]
            },
            ['spec.containers[0].volumeMounts[0].name: Not found: "data"'],
        ),
        (
            {
                "containers": [
                    {
                        "name": "a",
                        "image": "x",
                        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                    }
                ]
            },
            [
                'spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than '
                "or equal to cpu limit of 1"
            ],
        ),
        (
            {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"memory": "5ki"}}}]},
            [
                'spec.containers[0].resources.limits[memory]: Invalid value: "5ki": unable to parse '
                "quantity's suffix",
                # requests are defaulted from limits before validation, so the bad value shows twice
                'spec.containers[0].resources.requests[memory]: Invalid value: "5ki": unable to '
                "parse quantity's suffix",
            ],
        ),
        (
            {"containers": [{"name": "a", "image": "x", "env": [{"name": "A=B"}, {"name": ""}]}]},
            [
                'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable '
                "name must "
                "consist only of printable ASCII characters other than '='",
                "spec.containers[0].env[1].name: Required value",
            ],
        ),
        (
            {
                "volumes": [
                    {"name": "v", "emptyDir": {}},
                    {"name": "v", "hostPath": {"path": "/x"}, "emptyDir": {}},
                ]
            },
            [
                'spec.volumes[1].name: Duplicate value: "v"',
                "spec.volumes[1].emptyDir: Forbidden: may not specify more than 1 volume type",
            ],
        ),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            [
                'spec.tolerations[0].operator: Invalid value: "v": value must be empty when '
                "`operator` is 'Exists'"
            ],
        ),
        (
            {
                "containers": [
                    {
                        "name": "a",
                        "image": "x",
                        "livenessProbe": {"successThreshold": 2, "exec": {"command": ["true"]}},
                    }
                ]
            },
            ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"],
        ),
        (
            {"dnsPolicy": "Bogus"},
            [
                'spec.dnsPolicy: Unsupported value: "Bogus": supported values: "ClusterFirstWithHostNet", '
                '"ClusterFirst", "Default", "None"'
            ],
        ),
    ],
)
def test_validation_messages(spec: dict[str, Any], expected: list[str]) -> None:
    assert errors(PODS, defaulted(PODS, pod(**spec))) == expected


def test_create_only_rules() -> None:
    gated = defaulted(PODS, pod(schedulingGates=[{"name": "example.com/wait"}], nodeName="n1"))
    assert errors(PODS, gated) == [
        "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared"
    ]
    ephemeral = defaulted(PODS, pod(ephemeralContainers=[{"name": "debug", "image": "busybox"}]))
    assert errors(PODS, ephemeral) == ["spec.ephemeralContainers: Forbidden: cannot be set on create"]


def test_update_only_images_and_additions() -> None:
    old = defaulted(PODS, pod())
    old["metadata"]["resourceVersion"] = "5"
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.27"
    new["spec"]["tolerations"].append({"key": "x", "operator": "Exists"})
    new["spec"]["activeDeadlineSeconds"] = 60
    new["metadata"]["labels"] = {"changed": "yes"}
    assert errors(PODS, new, old) == []
    bad = copy.deepcopy(old)
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "protocol": "TCP"}]
    out = errors(PODS, bad, old)
    assert out == [
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
        "previously negative)"
    ]
    removed = copy.deepcopy(old)
    removed["spec"]["tolerations"] = []
    assert errors(PODS, removed, old) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    ]


def _ts(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_pod(status: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = defaulted(PODS, pod(**extra))
    body["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    body["status"] = status
    return body


def running(name: str = "app", ready: bool = True, restarts: int = 0, **state: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
    }


def test_pod_rows() -> None:
    cells = row(
        PODS,
        status_pod(
            {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [running()]},
            nodeName="n1",
        ),
    )
    assert cells == [
        "web",
        "1/1",
        "Running",
        "0",
        "2024-01-01T00:00:00Z",
        "10.0.0.5",
        "n1",
        "<none>",
        "<none>",
    ]
    waiting = running(ready=False, waiting={"reason": "CrashLoopBackOff"}, restarts=2)
    waiting["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": _ts(timedelta(minutes=5, seconds=2))}}
    cells = row(PODS, status_pod({"phase": "Running", "containerStatuses": [waiting]}))
    assert cells[1:4] == ["0/1", "CrashLoopBackOff", "2 (5m2s ago)"]
    done = running(ready=False, terminated={"exitCode": 0, "reason": "Completed"})
    assert row(PODS, status_pod({"phase": "Succeeded", "containerStatuses": [done]}))[2] == "Completed"
    killed = running(ready=False, terminated={"exitCode": 137, "signal": 9})
    assert row(PODS, status_pod({"phase": "Failed", "containerStatuses": [killed]}))[2] == "Signal:9"


def test_pod_row_init_and_terminating() -> None:
    init = {"initContainers": [{"name": "init", "image": "busybox"}]}
    init_status = {"name": "init", "ready": False, "restartCount": 0, "state": {"running": {}}}
    cells = row(PODS, status_pod({"phase": "Pending", "initContainerStatuses": [init_status]}, **init))
    assert cells[1:3] == ["0/1", "Init:0/1"]
    init_status["state"] = {"waiting": {"reason": "ErrImagePull"}}
    assert (
        row(PODS, status_pod({"phase": "Pending", "initContainerStatuses": [init_status]}, **init))[2]
        == "Init:ErrImagePull"
    )
    gone = status_pod({"phase": "Running", "containerStatuses": [running()]})
    gone["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    assert row(PODS, gone)[2] == "Terminating"
    gated = status_pod(
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        }
    )
    assert row(PODS, gated)[2] == "SchedulingGated"
    gates = status_pod(
        {"phase": "Running", "conditions": [{"type": "x/ok", "status": "True"}]},
        readinessGates=[{"conditionType": "x/ok"}, {"conditionType": "x/no"}],
    )
    assert row(PODS, gates)[-1] == "1/2"


def test_pod_columns() -> None:
    names = [(c.name, c.priority) for c in PODS.table_columns]
    assert names == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
        ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1),
    ]  # fmt: skip
    assert PODS.table_columns[0].format == "name"


def test_pod_field_selectors() -> None:
    body = status_pod({"phase": "Running", "podIPs": [{"ip": "10.1.2.3"}]}, nodeName="n1")
    obj = decode(PODS, body)
    got = {key: getter(obj) for key, getter in PODS.field_selectors.items()}
    assert got == {
        "spec.nodeName": "n1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default",
        "spec.hostNetwork": "false",
        "status.phase": "Running",
        "status.podIP": "10.1.2.3",
        "status.nominatedNodeName": "",
    }
