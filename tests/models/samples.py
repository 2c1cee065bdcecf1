"""Sample objects for the model tests: hand-written realistic ones and schema-driven full ones."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from kybern.models import schema

TIME = "2024-05-06T07:08:09Z"
MICRO_TIME = "2024-05-06T07:08:09.123456Z"

META = {
    "name": "web",
    "namespace": "default",
    "uid": "6f1c1e6e-6a0b-4c8e-9a39-0d4b1f0c2a11",
    "resourceVersion": "1234",
    "generation": 3,
    "creationTimestamp": TIME,
    "labels": {"app": "web", "tier": "frontend"},
    "annotations": {"deployment.kubernetes.io/revision": "2"},
    "managedFields": [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": TIME,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
        }
    ],
}

POD_SPEC: dict[str, Any] = {
    "initContainers": [
        {
            "name": "migrate",
            "image": "registry.example.com/web:2.1",
            "command": ["/bin/sh", "-c"],
            "args": ["./manage migrate"],
            "envFrom": [{"configMapRef": {"name": "web-config"}}],
        }
    ],
    "containers": [
        {
            "name": "web",
            "image": "registry.example.com/web:2.1",
            "imagePullPolicy": "IfNotPresent",
            "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
            ],
            "env": [
                {"name": "MODE", "value": "production"},
                {
                    "name": "POD_IP",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
                },
                {
                    "name": "DB_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": False}},
                },
                {
                    "name": "MEM_LIMIT",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
            ],
            "resources": {
                "requests": {"cpu": "250m", "memory": "128Mi", "ephemeral-storage": "1Gi"},
                "limits": {"cpu": 1, "memory": "512Mi"},
            },
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
                "timeoutSeconds": 1,
                "successThreshold": 1,
                "failureThreshold": 3,
            },
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
            "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30},
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
            "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/web"},
                {"name": "config", "mountPath": "/etc/web", "readOnly": True},
                {"name": "token", "mountPath": "/var/run/secrets/tokens"},
            ],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": True,
            },
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
    ],
    "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}},
        {
            "name": "config",
            "configMap": {"name": "web-config", "defaultMode": 420, "items": [{"key": "a", "path": "a"}]},
        },
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {
            "name": "token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600, "audience": "api"}},
                    {"secret": {"name": "db", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                        }
                    },
                ]
            },
        },
    ],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "serviceAccountName": "web",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "securityContext": {"fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["worker"]}]}
                ]
            }
        },
    },
    "tolerations": [
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
    ],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ],
    "imagePullSecrets": [{"name": "registry"}],
    "schedulerName": "default-scheduler",
}

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": META,
    "spec": {
        "replicas": 3,
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "minReadySeconds": 5,
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "frontend"}}, "spec": POD_SPEC},
    },
    "status": {
        "observedGeneration": 3,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "lastUpdateTime": TIME,
                "lastTransitionTime": TIME,
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            }
        ],
    },
}

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        **META,
        "name": "web-7d4b9c6f5-x2x9k",
        "generateName": "web-7d4b9c6f5-",
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7d4b9c6f5",
                "uid": "0a4f2c8e-0b6d-4e4e-8d0e-9f8e7d6c5b4a",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "finalizers": ["example.com/cleanup"],
    },
    "spec": {**POD_SPEC, "nodeName": "node-1"},
    "status": {
        "phase": "Running",
        "qosClass": "Burstable",
        "hostIP": "192.168.1.10",
        "hostIPs": [{"ip": "192.168.1.10"}],
        "podIP": "10.244.1.7",
        "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
        "startTime": TIME,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": TIME},
            {"type": "Ready", "status": "True", "lastTransitionTime": TIME, "lastProbeTime": None},
        ],
        "initContainerStatuses": [
            {
                "name": "migrate",
                "ready": True,
                "restartCount": 0,
                "image": "registry.example.com/web:2.1",
                "imageID": "registry.example.com/web@sha256:0123",
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": TIME,
                        "finishedAt": TIME,
                    }
                },
            }
        ],
        "containerStatuses": [
            {
                "name": "web",
                "ready": True,
                "started": True,
                "restartCount": 1,
                "image": "registry.example.com/web:2.1",
                "imageID": "registry.example.com/web@sha256:0123",
                "containerID": "containerd://abcdef",
                "state": {"running": {"startedAt": TIME}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": TIME}},
            }
        ],
    },
}

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {**META, "name": "web"},
    "spec": {
        "type": "LoadBalancer",
        "selector": {"app": "web"},
        "clusterIP": "10.96.12.34",
        "clusterIPs": ["10.96.12.34"],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080},
            {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090, "nodePort": 30090},
        ],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
        "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 31000,
        "internalTrafficPolicy": "Cluster",
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}},
}

NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "node-1",
        "uid": "c0ffee00-0000-4000-8000-000000000001",
        "resourceVersion": "99",
        "creationTimestamp": TIME,
        "labels": {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux", "node-role": "worker"},
    },
    "spec": {
        "podCIDR": "10.244.1.0/24",
        "podCIDRs": ["10.244.1.0/24"],
        "taints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
        "unschedulable": False,
    },
    "status": {
        "capacity": {"cpu": "4", "memory": "16318480Ki", "pods": "110", "ephemeral-storage": "102687672Ki"},
        "allocatable": {"cpu": "3800m", "memory": "15716080Ki", "pods": "110"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": TIME,
                "lastTransitionTime": TIME,
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            },
            {
                "type": "MemoryPressure",
                "status": "False",
                "lastHeartbeatTime": TIME,
                "lastTransitionTime": TIME,
            },
        ],
        "addresses": [
            {"type": "InternalIP", "address": "192.168.1.10"},
            {"type": "Hostname", "address": "node-1"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "m",
            "systemUUID": "s",
            "bootID": "b",
            "kernelVersion": "6.1.0",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "containerd://1.7.0",
            "kubeletVersion": "v1.32.0",
            "kubeProxyVersion": "v1.32.0",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": [{"names": ["registry.example.com/web:2.1"], "sizeBytes": 123456789}],
        "runtimeHandlers": [
            {"name": "runc", "features": {"recursiveReadOnlyMounts": True, "userNamespaces": False}}
        ],
    },
}


def _with_meta(kind: str, api_version: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": copy.deepcopy(META), **fields}


SELECTOR = {"matchLabels": {"app": "web"}}
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}

#: realistic objects of the main kinds, keyed by (group, version, kind)
REALISTIC: dict[tuple[str, str, str], dict[str, Any]] = {
    ("apps", "v1", "Deployment"): DEPLOYMENT,
    ("", "v1", "Pod"): POD,
    ("", "v1", "Service"): SERVICE,
    ("", "v1", "Node"): NODE,
    ("", "v1", "Namespace"): {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    },
    ("", "v1", "ConfigMap"): _with_meta(
        "ConfigMap", "v1", data={"app.conf": "listen 8080\n"}, binaryData={"blob": "AAEC"}, immutable=False
    ),
    ("", "v1", "Secret"): _with_meta(
        "Secret",
        "v1",
        type="kubernetes.io/tls",
        data={"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
        stringData={},
    ),
    ("", "v1", "ServiceAccount"): _with_meta(
        "ServiceAccount", "v1", secrets=[{"name": "web-token"}], imagePullSecrets=[{"name": "registry"}]
    ),
    ("", "v1", "Endpoints"): _with_meta(
        "Endpoints",
        "v1",
        subsets=[
            {
                "addresses": [
                    {
                        "ip": "10.244.1.7",
                        "nodeName": "node-1",
                        "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u"},
                    }
                ],
                "notReadyAddresses": [{"ip": "10.244.2.8"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    ),
    ("", "v1", "Event"): _with_meta(
        "Event",
        "v1",
        involvedObject={
            "kind": "Pod",
            "namespace": "default",
            "name": "web-1",
            "uid": "u",
            "apiVersion": "v1",
        },
        reason="Scheduled",
        message="Successfully assigned default/web-1 to node-1",
        source={"component": "default-scheduler"},
        firstTimestamp=TIME,
        lastTimestamp=TIME,
        count=1,
        type="Normal",
        eventTime=MICRO_TIME,
        reportingComponent="default-scheduler",
        reportingInstance="default-scheduler-node-1",
    ),
    ("", "v1", "PersistentVolume"): {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv-1"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "local",
            "hostPath": {"path": "/mnt/pv-1"},
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "web-data"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n"]}
                            ]
                        }
                    ]
                }
            },
        },
        "status": {"phase": "Bound"},
    },
    ("", "v1", "PersistentVolumeClaim"): _with_meta(
        "PersistentVolumeClaim",
        "v1",
        spec={
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": "local",
            "volumeMode": "Filesystem",
            "volumeName": "pv-1",
        },
        status={"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]},
    ),
    ("", "v1", "Binding"): {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web-1", "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    },
    ("apps", "v1", "ReplicaSet"): _with_meta(
        "ReplicaSet",
        "apps/v1",
        spec={"replicas": 2, "selector": SELECTOR, "template": TEMPLATE},
        status={"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "fullyLabeledReplicas": 2},
    ),
    ("apps", "v1", "DaemonSet"): _with_meta(
        "DaemonSet",
        "apps/v1",
        spec={
            "selector": SELECTOR,
            "template": TEMPLATE,
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
        },
        status={
            "currentNumberScheduled": 2,
            "desiredNumberScheduled": 2,
            "numberMisscheduled": 0,
            "numberReady": 2,
        },
    ),
    ("apps", "v1", "StatefulSet"): _with_meta(
        "StatefulSet",
        "apps/v1",
        spec={
            "serviceName": "web",
            "replicas": 3,
            "selector": SELECTOR,
            "template": TEMPLATE,
            "podManagementPolicy": "Parallel",
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"},
        },
        status={"replicas": 3, "readyReplicas": 3, "currentRevision": "web-1", "updateRevision": "web-1"},
    ),
    ("apps", "v1", "ControllerRevision"): _with_meta(
        "ControllerRevision", "apps/v1", revision=2, data={"spec": {"template": {"$patch": "replace"}}}
    ),
    ("batch", "v1", "Job"): _with_meta(
        "Job",
        "batch/v1",
        spec={
            "completions": 5,
            "parallelism": 2,
            "backoffLimit": 4,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 100,
            "completionMode": "Indexed",
            "template": {**TEMPLATE, "spec": {**POD_SPEC, "restartPolicy": "OnFailure"}},
            "podFailurePolicy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
            },
        },
        status={
            "active": 1,
            "succeeded": 4,
            "failed": 0,
            "startTime": TIME,
            "completedIndexes": "0-3",
            "conditions": [{"type": "Complete", "status": "False", "lastProbeTime": TIME}],
        },
    ),
    ("batch", "v1", "CronJob"): _with_meta(
        "CronJob",
        "batch/v1",
        spec={
            "schedule": "*/5 * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {"template": {**TEMPLATE, "spec": {**POD_SPEC, "restartPolicy": "Never"}}}
            },
        },
        status={
            "lastScheduleTime": TIME,
            "active": [{"kind": "Job", "name": "web-123", "namespace": "default"}],
        },
    ),
    ("coordination.k8s.io", "v1", "Lease"): _with_meta(
        "Lease",
        "coordination.k8s.io/v1",
        spec={
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 40,
            "acquireTime": MICRO_TIME,
            "renewTime": MICRO_TIME,
            "leaseTransitions": 2,
        },
    ),
    ("discovery.k8s.io", "v1", "EndpointSlice"): _with_meta(
        "EndpointSlice",
        "discovery.k8s.io/v1",
        addressType="IPv4",
        endpoints=[
            {
                "addresses": ["10.244.1.7"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "node-1",
                "zone": "z1",
                "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"},
                "hints": {"forZones": [{"name": "z1"}]},
            }
        ],
        ports=[{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
    ),
    ("autoscaling", "v1", "Scale"): _with_meta(
        "Scale", "autoscaling/v1", spec={"replicas": 5}, status={"replicas": 3, "selector": "app=web"}
    ),
    ("policy", "v1", "Eviction"): {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u", "resourceVersion": "7"}},
    },
    ("policy", "v1", "PodDisruptionBudget"): _with_meta(
        "PodDisruptionBudget",
        "policy/v1",
        spec={"minAvailable": "50%", "selector": SELECTOR, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
        status={"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3},
    ),
    ("storage.k8s.io", "v1", "StorageClass"): {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": True,
        "parameters": {"type": "ssd"},
        "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["z1"]}]}],
    },
    ("events.k8s.io", "v1", "Event"): _with_meta(
        "Event",
        "events.k8s.io/v1",
        eventTime=MICRO_TIME,
        reportingController="kybern.io/scheduler",
        reportingInstance="scheduler-1",
        action="Binding",
        reason="Scheduled",
        regarding={"kind": "Pod", "namespace": "default", "name": "web-1"},
        note="assigned",
        type="Normal",
        series={"count": 2, "lastObservedTime": MICRO_TIME},
    ),
}


def realistic_lists() -> dict[tuple[str, str, str], dict[str, Any]]:
    """A List of two items for every realistic kind that has a List type."""
    out = {}
    names = schema.definitions()
    for (group, version, kind), obj in REALISTIC.items():
        list_kind = kind + "List"
        if (group, version, list_kind) == ("", "v1", "EventList") or schema.definition_name(
            group, version, list_kind
        ) in names:
            second = copy.deepcopy(obj)
            second["metadata"] = {**second["metadata"], "name": "other"}
            out[(group, version, list_kind)] = {
                "apiVersion": obj["apiVersion"],
                "kind": list_kind,
                "metadata": {"resourceVersion": "1234", "continue": "eyJ2IjoxfQ", "remainingItemCount": 3},
                "items": [obj, second],
            }
    return out


# --- schema-driven full samples ----------------------------------------------------------------

_REF = "#/$defs/"
_counter = itertools.count()


def full_sample(name: str, defs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An object of definition ``name`` with every property set, recursively (one list item each)."""
    defs = defs if defs is not None else schema.definitions()
    return _value({"$ref": _REF + name}, defs, "x", 0)


def _value(prop: dict[str, Any], defs: dict[str, dict[str, Any]], field: str, depth: int) -> Any:
    ref = prop.get("$ref")
    if ref:
        target = ref[len(_REF) :]
        if target.endswith("intstr.IntOrString"):
            return 8080 if next(_counter) % 2 else "25%"
        if target.endswith("resource.Quantity"):
            return "250m" if next(_counter) % 2 else "1Gi"
        if target.endswith("meta.v1.MicroTime"):
            return MICRO_TIME
        if target.endswith("meta.v1.Time"):
            return TIME
        if target.endswith("meta.v1.FieldsV1"):
            return {"f:metadata": {"f:labels": {".": {}}}}
        if target.endswith("runtime.RawExtension"):
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
        definition = defs[target]
        if depth > 60:
            return {}
        return {
            key: _value(sub, defs, key, depth + 1) for key, sub in definition.get("properties", {}).items()
        }
    if "enum" in prop:
        return next(value for value in prop["enum"] if value is not None)
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "array" in types:
        return [_value(prop.get("items", {}), defs, field, depth + 1)]
    if "object" in types:
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return {"example.com/key": _value(extra, defs, field, depth + 1)}
        return {"free": {"form": [1, "two"]}}
    if "string" in types:
        return "aGVsbG8=" if prop.get("format") == "byte" else f"{field}-value"
    if "integer" in types:
        return 7
    if "number" in types:
        return 0.5
    if "boolean" in types:
        return True
    return {"any": ["json", 1]}
