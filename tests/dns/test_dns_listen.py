"""Where cluster DNS listens by default, and how pods find it: through the kube-dns
Endpoints, which name the address and port the server really got."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import dns.rcode
from dnshelp import query, values
from support.cluster import running_server


def test_busy_default_port_moves_and_endpoints_follow(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):  # busy already (another server): just as good
        holder.bind(("0.0.0.0", 1053))
    try:
        with running_server(tmp_path, "--disable", "kubelet", "--dns-upstream", "127.0.0.1:9") as server:
            out = server.kubectl(
                "get",
                "endpoints",
                "kube-dns",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.subsets[0].addresses[0].ip} {.subsets[0].ports[0].port}",
            ).stdout
            ip, port = out.split()
            assert int(port) != 1053
            assert ip != "0.0.0.0"  # a concrete address of the host: what pods are routed to
            answer = query(int(port), "kubernetes.default.svc.cluster.local")
            assert values(answer) == ["10.43.0.1"]
            # an upstream that does not answer gives SERVFAIL, not a hang
            assert query(int(port), "example.org").rcode() == dns.rcode.SERVFAIL
            assert "is busy" in server.log()
    finally:
        holder.close()
