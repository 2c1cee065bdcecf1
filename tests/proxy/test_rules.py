"""The rule diff alone (no nft): a sync touches only what changed, in a valid order."""

from __future__ import annotations

from kybern.plugins.proxy import nftables
from kybern.plugins.proxy.model import Endpoint, ServicePort, ServiceState, desired_state, service_ports

T = "kybern-proxy-t"


def state(name: str, ips: list[str], node_port: int | None = None) -> ServiceState:
    port = ServicePort("default", name, "http", "tcp", 80, ("10.43.0.9",), node_port)
    return ServiceState(port, tuple(Endpoint(ip, 8080) for ip in ips))


def as_dict(*states: ServiceState) -> dict[str, ServiceState]:
    return {s.port.key: s for s in states}


def test_endpoint_change_touches_only_its_service() -> None:
    a, b = state("a", ["10.42.0.2", "10.42.0.3"]), state("b", ["10.42.0.4"])
    a2 = state("a", ["10.42.0.2"])
    script = nftables.diff(T, as_dict(a, b), as_dict(a2, b), "10.42.0.0/16").script()
    assert nftables.svc_chain(a) in script
    assert nftables.svc_chain(b) not in script
    assert "flush table" not in script and "delete table" not in script
    # the removed endpoint's chain is flushed and deleted after the service chain stopped using it
    gone = nftables.sep_chain(a, Endpoint("10.42.0.3", 8080))
    lines = script.splitlines()
    assert lines.index(f"delete chain ip {T} {gone}") > max(
        i for i, line in enumerate(lines) if line.startswith(f"add rule ip {T} {nftables.svc_chain(a)}")
    )
    # the kept endpoint's chain is not rewritten
    kept = nftables.sep_chain(a, Endpoint("10.42.0.2", 8080))
    assert f"add chain ip {T} {kept}" not in script


def test_unchanged_state_is_an_empty_transaction() -> None:
    s = as_dict(state("a", ["10.42.0.2"], node_port=30001))
    assert not nftables.diff(T, s, s, "10.42.0.0/16")


def test_no_endpoints_moves_the_service_to_the_reject_map() -> None:
    a, empty = state("a", ["10.42.0.2"], node_port=30001), state("a", [], node_port=30001)
    script = nftables.diff(T, as_dict(a), as_dict(empty), None).script()
    assert f"add element ip {T} no-endpoint-services {{ 10.43.0.9 . tcp . 80 : goto reject-chain }}" in script
    assert f"add element ip {T} no-endpoint-nodeports {{ tcp . 30001 : goto reject-chain }}" in script
    assert f"delete element ip {T} service-ips {{ 10.43.0.9 . tcp . 80 }}" in script


def test_model_reads_slices_ready_endpoints_and_falls_back_to_endpoints() -> None:
    svc = {
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.43.1.1",
            "clusterIPs": ["10.43.1.1"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
        },
    }
    slices = [
        {
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "conditions": {"ready": True}},
                {"addresses": ["10.42.0.6"], "conditions": {"ready": False}},
                {"addresses": ["10.42.0.7"]},
            ],
        }
    ]
    endpoints = {"subsets": [{"addresses": [{"ip": "10.42.0.9"}], "ports": [{"name": "http", "port": 9090}]}]}
    [port] = service_ports(svc)
    assert port.node_port == 30080
    with_slices = desired_state([svc], {"ns/web": slices}, {"ns/web": endpoints})
    assert [str(e) for e in with_slices[port.key].endpoints] == ["10.42.0.5:8080", "10.42.0.7:8080"]
    fallback = desired_state([svc], {}, {"ns/web": endpoints})
    assert [str(e) for e in fallback[port.key].endpoints] == ["10.42.0.9:9090"]
    headless = {
        "metadata": {"name": "h", "namespace": "ns"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
    }
    assert service_ports(headless) == []
