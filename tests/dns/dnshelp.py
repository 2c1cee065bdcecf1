"""A stand-in for the host's resolver (a tiny authoritative server on loopback) and query
helpers, so forwarding is tested without any outside network."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

#: what the fake upstream knows
UPSTREAM_RECORDS = {"example.org.": "192.0.2.7"}


def _answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    q = query.question[0]
    name = q.name.to_text().lower()
    if name in UPSTREAM_RECORDS:
        if q.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", UPSTREAM_RECORDS[name]))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


class _Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(_answer(data), self.client_address)


class _Tcp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        header = self.request.recv(2)
        (n,) = struct.unpack("!H", header)
        data = b""
        while len(data) < n:
            data += self.request.recv(n - len(data))
        reply = _answer(data)
        self.request.sendall(struct.pack("!H", len(reply)) + reply)


@contextmanager
def fake_upstream() -> Iterator[int]:
    """Serve UPSTREAM_RECORDS on 127.0.0.1, UDP and TCP on one port; yields the port."""
    port = free_udp_tcp_port()
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", port), _Udp)
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), _Tcp)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (udp, tcp)]
    for t in threads:
        t.start()
    try:
        yield port
    finally:
        for s in (udp, tcp):
            s.shutdown()
            s.server_close()


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def query(port: int, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=5)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=5)


def values(response: dns.message.Message, rdtype: str | None = None) -> list[str]:
    """Answer data as text (``10.43.0.5``, ``0 100 80 web.ns.svc.cluster.local.``), sorted."""
    out = []
    for rrset in response.answer:
        if rdtype is None or dns.rdatatype.to_text(rrset.rdtype) == rdtype:
            out.extend(rd.to_text() for rd in rrset)
    return sorted(out)
