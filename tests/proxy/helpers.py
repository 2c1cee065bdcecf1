"""Service and EndpointSlice helpers for the proxy tests (selector-less services: the test
writes their endpoints, like a user bringing their own)."""

from __future__ import annotations

from typing import Any

from kybern.client import HttpApiClient
from support.cluster import Server


def client_for(server: Server) -> HttpApiClient:
    return HttpApiClient.from_kubeconfig(server.kubeconfig, user_agent="proxy-test")


async def make_service(
    api: HttpApiClient,
    name: str,
    port: int = 80,
    kind: str = "ClusterIP",
    protocol: str = "TCP",
    port_name: str = "http",
    **spec: Any,
) -> dict[str, Any]:
    """A selector-less Service (no controller writes its endpoints: the test does)."""
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": kind, "ports": [{"name": port_name, "port": port, "protocol": protocol}], **spec},
    }
    return await api.create("services", body, namespace="default")


async def set_endpoints(
    api: HttpApiClient,
    service: str,
    ips: list[str],
    port: int = 8080,
    not_ready: tuple[str, ...] = (),
    protocol: str = "TCP",
    port_name: str = "http",
) -> None:
    """Create or replace the service's single EndpointSlice."""
    name = f"{service}-test"
    body: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "test",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ip not in not_ready}} for ip in ips],
    }
    res = "endpointslices.discovery.k8s.io"
    try:
        current = await api.get(res, name, namespace="default")
    except Exception:
        await api.create(res, body, namespace="default")
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await api.update(res, body, namespace="default")
