"""Service and Endpoints: defaults, validation messages and rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kybern.plugins.resources.core_v1 import ENDPOINTS, SERVICES

from .helpers import defaulted, errors, row, valid_defaulted


def svc(name: str = "web", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def test_service_defaults() -> None:
    out = valid_defaulted(SERVICES, svc(clusterIP="10.96.0.10"))
    spec = out["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["clusterIPs"] == ["10.96.0.10"]
    assert "externalTrafficPolicy" not in spec
    assert out["status"] == {"loadBalancer": {}}
    node_port = defaulted(SERVICES, svc(type="NodePort", sessionAffinity="ClientIP"))["spec"]
    assert node_port["externalTrafficPolicy"] == "Cluster"
    assert node_port["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    lb = defaulted(SERVICES, svc(type="LoadBalancer"))["spec"]
    assert lb["allocateLoadBalancerNodePorts"] is True
    headless = defaulted(SERVICES, svc(clusterIP="None", selector=None))["spec"]
    assert headless["ipFamilyPolicy"] == "RequireDualStack"
    external = valid_defaulted(
        SERVICES, svc(type="ExternalName", externalName="example.com", ports=None, selector=None)
    )
    assert "ipFamilies" not in external["spec"]
    assert "internalTrafficPolicy" not in external["spec"]


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("web", {"ports": []}, ["spec.ports: Required value"]),
        (
            "web",
            {"ports": [{"port": 80}, {"port": 443}]},
            ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"],
        ),
        (
            "web",
            {"ports": [{"port": 0}]},
            [
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                # targetPort defaults to port, so it is reported too (as kube-apiserver does)
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            "web",
            {"type": "Magic"},
            [
                'spec.type: Unsupported value: "Magic": supported values: "ClusterIP", '
                '"ExternalName", "LoadBalancer", "NodePort"'
            ],
        ),
        (
            "web",
            {"ports": [{"port": 80, "nodePort": 30080}]},
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            "web",
            {"clusterIP": "10.0.0.300"},
            [
                'spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, '
                "(e.g. 10.9.8.7 or 2001:db8::ffff)"
            ],
        ),
        (
            "web",
            {"ports": [{"port": 80, "targetPort": "HTTP_PORT"}]},
            [
                'spec.ports[0].targetPort: Invalid value: "HTTP_PORT": must contain only '
                "alpha-numeric characters "
                "(a-z, 0-9), and hyphens (-)",
                'spec.ports[0].targetPort: Invalid value: "HTTP_PORT": must contain at least one '
                "letter (a-z)",
            ],
        ),
        ("web", {"type": "ExternalName", "ports": None}, ["spec.externalName: Required value"]),
        (
            "web",
            {"type": "ExternalName", "ports": None, "externalName": "db"},
            [
                'spec.externalName: Invalid value: "db": should be a domain with at least two '
                "segments separated by dots"
            ],
        ),
        (
            "web",
            {"type": "NodePort", "clusterIP": "None"},
            ["spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"],
        ),
        (
            "web",
            {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]},
            ["spec.ports[1]: Duplicate value: {'port': 80, 'protocol': 'TCP'}"],
        ),
        (
            "web",
            {"externalTrafficPolicy": "Local"},
            [
                'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
                "externally-accessible services"
            ],
        ),
    ],
)
def test_service_validation(name: str, spec: dict[str, Any], expected: list[str]) -> None:
    assert errors(SERVICES, defaulted(SERVICES, svc(name, **spec))) == expected


def test_cluster_ip_is_immutable() -> None:
    old = defaulted(SERVICES, svc(clusterIP="10.96.0.10"))
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.11"
    new["spec"]["clusterIPs"] = ["10.96.0.11"]
    assert errors(SERVICES, new, old) == ['spec.clusterIP: Invalid value: "10.96.0.11": field is immutable']
    kept = copy.deepcopy(old)
    kept["spec"]["ports"][0]["port"] = 8080
    assert errors(SERVICES, kept, old) == []


def test_service_rows() -> None:
    body = defaulted(SERVICES, svc(clusterIP="10.96.0.10"))
    assert row(SERVICES, body) == [
        "web",
        "ClusterIP",
        "10.96.0.10",
        "<none>",
        "80/TCP",
        "<unknown>",
        "app=web",
    ]
    lb = defaulted(
        SERVICES, svc(type="LoadBalancer", clusterIP="10.96.0.11", ports=[{"port": 443, "nodePort": 31443}])
    )
    assert row(SERVICES, lb)[1:5] == ["LoadBalancer", "10.96.0.11", "<pending>", "443:31443/TCP"]
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    assert row(SERVICES, lb)[3] == "192.0.2.7"
    ext = defaulted(
        SERVICES, svc(type="ExternalName", externalName="db.example.com", ports=None, selector=None)
    )
    assert row(SERVICES, ext) == [
        "web",
        "ExternalName",
        "<none>",
        "db.example.com",
        "<none>",
        "<unknown>",
        "<none>",
    ]


def endpoints(subsets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": subsets,
    }


def test_endpoints() -> None:
    subset = {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 5)], "ports": [{"port": 8080}]}
    out = valid_defaulted(ENDPOINTS, endpoints([subset]))
    assert out["subsets"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert row(ENDPOINTS, out) == [
        "web",
        "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 1 more...",
        "<unknown>",
    ]
    assert row(ENDPOINTS, endpoints([])) == ["web", "<none>", "<unknown>"]
    bad = defaulted(
        ENDPOINTS, endpoints([{"addresses": [{"ip": "nope"}], "ports": [{"port": 1}, {"port": 2}]}, {}])
    )
    assert errors(ENDPOINTS, bad) == [
        'subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address, (e.g. '
        "10.9.8.7 or 2001:db8::ffff)",
        "subsets[0].ports[0].name: Required value",
        "subsets[0].ports[1].name: Required value",
        "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
    ]
