"""The DNS wire side: UDP and TCP listeners, the cluster zone, plugin answers, forwarding.

A question goes, in order, to plugins (hook ``kybern_dns_records``), to the cluster zone
(authoritative: NXDOMAIN/NODATA carry the zone's SOA so resolvers cache the miss for the TTL),
and otherwise to the host's resolvers. Cluster answers are built synchronously in the datagram
callback; only forwarding needs a task. An ExternalName Service's CNAME is followed, as
CoreDNS does, in the zone or through the upstreams, so that stub resolvers which do not chase
CNAMEs themselves (musl, busybox) still get the addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from kybern.hooktypes import DnsRecord
from kybern.plugins.dns.records import TTL, ClusterZone
from loguru import logger

log = logger.bind(component="dns")

Upstream = tuple[str, int]
#: how long a forwarded question may take per upstream
FORWARD_TIMEOUT = 2.0
#: rendered cluster answers kept (the whole cache is dropped on any change anyway)
MAX_CACHED = 20000


def host_resolvers(
    paths: tuple[str, ...] = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"),
) -> list[Upstream]:
    """The host's nameservers, loopback stubs skipped (a stub on the host may be us, or may
    forward to us: either loops). systemd-resolved's real upstreams are in the second file."""
    found: list[Upstream] = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    addr = ipaddress.ip_address(parts[1].split("%")[0])
                except ValueError:
                    continue
                if not addr.is_loopback and (str(addr), 53) not in found:
                    found.append((str(addr), 53))
        if found:
            break
    return found


def parse_upstreams(text: str) -> list[Upstream]:
    """``1.1.1.1,127.0.0.1:5353,[::1]:53`` -> [(host, port), ...]."""
    out: list[Upstream] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, _, p = item.partition(":")
            port = int(p)
        else:
            host, port = item, 53
        ipaddress.ip_address(host)
        out.append((host, port))
    return out


def _rrset(rec: DnsRecord) -> dns.rrset.RRset:
    name = dns.name.from_text(rec.name.rstrip(".") + ".")
    if rec.type == "SRV":
        text = f"{rec.priority} {rec.weight} {rec.port} {rec.data}"
    elif rec.type == "TXT":
        text = '"' + rec.data.replace('"', '\\"') + '"'
    else:
        text = rec.data
    return dns.rrset.from_text(name, rec.ttl, "IN", rec.type, text)


def _add(section: list[dns.rrset.RRset], records: list[DnsRecord]) -> None:
    """Group records of one name and type into one RRset each."""
    by_key: dict[tuple[str, str], dns.rrset.RRset] = {}
    for rec in records:
        key = (rec.name.rstrip(".").lower(), rec.type)
        rrset = _rrset(rec)
        if key in by_key:
            by_key[key].union_update(rrset)
        else:
            by_key[key] = rrset
            section.append(rrset)


class DnsServer:
    """Serves the cluster zone on one address and port, UDP and TCP."""

    def __init__(
        self,
        zone: ClusterZone,
        upstreams: list[Upstream],
        plugin_records: Callable[[str, str], list[DnsRecord]] | None = None,
    ) -> None:
        self.zone = zone
        self.upstreams = upstreams
        self.plugin_records = plugin_records
        origin = dns.name.from_text(zone.domain + ".")
        self.origin = origin
        self.soa = dns.rrset.from_text(
            origin,
            TTL,
            "IN",
            "SOA",
            f"ns.dns.{zone.domain}. hostmaster.{zone.domain}. 1 7200 1800 86400 {TTL}",
        )
        self.ns = dns.rrset.from_text(origin, TTL, "IN", "NS", f"ns.dns.{zone.domain}.")
        #: rendered local answers by query wire minus the ID; cleared whenever a cache the
        #: zone reads from changes (``invalidate``), so answers are never staler than the API.
        #: Only used without plugin answers (those may change without any event here).
        self._answers: dict[bytes, bytes] = {}
        self._udp: _PktinfoUdp | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- answering ----------------------------------------------------------------------------

    def answer_local(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response for a question the cluster (or a plugin) answers; None: forward it."""
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response
        q = query.question[0]
        qname = q.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(q.rdtype)
        extra = self.plugin_records(qname, qtype) if self.plugin_records is not None else []
        if extra:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA | dns.flags.RA
            _add(response.answer, extra)
            return response
        if not self.zone.is_ours(qname):
            return None
        answer = self.zone.lookup(qname, qtype)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if qname == self.zone.domain and qtype in ("SOA", "NS"):
            response.answer.append(self.soa if qtype == "SOA" else self.ns)
            return response
        _add(response.answer, answer.records)
        self._follow_in_zone(response, qtype)
        _add(response.additional, answer.additional)
        if answer.rcode == "NXDOMAIN":
            response.set_rcode(dns.rcode.NXDOMAIN)
        if not answer.records:
            if q.name.is_subdomain(self.origin):
                response.authority.append(self.soa)
        return response

    def _follow_in_zone(self, response: dns.message.Message, qtype: str) -> None:
        """A CNAME to another cluster name (an ExternalName naming a Service) comes with that
        name's records, as CoreDNS answers it. One step only: ExternalNames naming each other
        cannot loop."""
        if qtype in ("CNAME", "ANY") or not response.answer:
            return
        last = response.answer[-1]
        if last.rdtype != dns.rdatatype.CNAME:
            return
        target: dns.name.Name = last[0].target
        if target.is_subdomain(self.origin):
            name = target.to_text(omit_final_dot=True).lower()
            _add(response.answer, self.zone.lookup(name, qtype).records)

    async def forward(self, query: dns.message.Message, tcp: bool) -> dns.message.Message:
        for host, port in self.upstreams:
            try:
                if tcp:
                    response = await dns.asyncquery.tcp(query, host, timeout=FORWARD_TIMEOUT, port=port)
                else:
                    response = await dns.asyncquery.udp(
                        query, host, timeout=FORWARD_TIMEOUT, port=port, raise_on_truncation=False
                    )
                return response
            except (dns.exception.DNSException, OSError) as exc:
                log.debug("upstream {}:{} failed for {}: {}", host, port, query.question, exc)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.set_rcode(dns.rcode.SERVFAIL)
        return response

    def external_target(
        self, query: dns.message.Message, response: dns.message.Message
    ) -> dns.name.Name | None:
        """The out-of-zone name a local CNAME answer points at, if the question wants its data."""
        if response.rcode() != dns.rcode.NOERROR or not response.answer:
            return None
        if query.question[0].rdtype in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
            return None
        last = response.answer[-1]
        if last.rdtype != dns.rdatatype.CNAME:
            return None
        target: dns.name.Name = last[0].target
        return None if target.is_subdomain(self.origin) else target

    async def chase(
        self, query: dns.message.Message, response: dns.message.Message, target: dns.name.Name, tcp: bool
    ) -> dns.message.Message:
        """Add the upstream's answer for the CNAME target; a failed lookup leaves the CNAME alone."""
        sub = dns.message.make_query(target, query.question[0].rdtype)
        upstream = await self.forward(sub, tcp)
        if upstream.rcode() == dns.rcode.NOERROR:
            response.answer.extend(upstream.answer)
        return response

    async def resolve(self, wire: bytes, tcp: bool) -> bytes | None:
        """The reply to one query as received over TCP (or UDP when ``tcp`` is False)."""
        hit = self.cached(wire, tcp)
        if hit is not None:
            return hit
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = self.answer_local(query)
        if response is None:
            return self.encode(await self.forward(query, tcp), query, tcp)
        target = self.external_target(query, response)
        if target is not None:  # not cached: the upstream's answer has TTLs of its own
            return self.encode(await self.chase(query, response, target, tcp), query, tcp)
        reply = self.encode(response, query, tcp)
        if response.rcode() != dns.rcode.SERVFAIL and self.plugin_records is None:
            self.remember(wire, reply, tcp)
        return reply

    @staticmethod
    def encode(response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        if tcp:
            return response.to_wire(max_size=65535)
        limit = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.additional.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    def invalidate(self, *_: object) -> None:
        self._answers.clear()

    def cached(self, wire: bytes, tcp: bool = False) -> bytes | None:
        """A stored answer for the same question (same transport), with this query's ID."""
        if len(wire) < 12:
            return None
        reply = self._answers.get((b"T" if tcp else b"U") + wire[2:])
        return wire[:2] + reply[2:] if reply is not None else None

    def remember(self, wire: bytes, reply: bytes, tcp: bool = False) -> None:
        if len(self._answers) >= MAX_CACHED:
            self._answers.clear()
        self._answers[(b"T" if tcp else b"U") + wire[2:]] = reply

    # --- transport ----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        # a wildcard UDP socket answers from the address the route picks, which on a node is
        # the pod bridge's (10.42.N.1), not the address a pod asked (the node IP behind the
        # kube-dns ClusterIP): the pod's resolver and the proxy's conntrack then drop the
        # reply. IP_PKTINFO lets each reply leave from the address its query came to.
        transport = _PktinfoUdp(loop, host, port, self._datagram)
        try:
            self._tcp = await asyncio.start_server(self._stream, host, port)
        except OSError:
            transport.close()
            raise
        self._udp = transport

    def _datagram(self, transport: _Replier, data: bytes, addr: tuple[str, int]) -> None:
        hit = self.cached(data)
        if hit is not None:
            transport.sendto(hit, addr)
            return
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        try:
            response = self.answer_local(query)
        except Exception:
            log.exception("answering {} failed", query.question)
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        target = self.external_target(query, response) if response is not None else None
        if response is not None and target is None:
            reply = self.encode(response, query, tcp=False)
            if response.rcode() != dns.rcode.SERVFAIL and self.plugin_records is None:
                self.remember(data, reply)
            transport.sendto(reply, addr)
            return

        async def forward() -> None:
            if response is not None and target is not None:
                reply = await self.chase(query, response, target, tcp=False)
            else:
                reply = await self.forward(query, tcp=False)
            if not transport.is_closing():
                transport.sendto(self.encode(reply, query, tcp=False), addr)

        task = asyncio.get_running_loop().create_task(forward())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), timeout=10)
                (length,) = struct.unpack("!H", header)
                wire = await reader.readexactly(length)
                reply = await self.resolve(wire, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's value; Python names it only on some builds
_PKTINFO = struct.Struct("@i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr


class _Replier:
    """Sends answers to one query from the address the query was sent to."""

    __slots__ = ("_local", "_sock")

    def __init__(self, sock: socket.socket, local: bytes | None) -> None:
        self._sock = sock
        self._local = local

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        ancillary = []
        if self._local is not None:
            ancillary.append((socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, self._local, bytes(4))))
        with contextlib.suppress(OSError):  # a client that went away is not our problem
            self._sock.sendmsg([data], ancillary, 0, addr)

    def is_closing(self) -> bool:
        return self._sock.fileno() < 0


class _PktinfoUdp:
    """A non-blocking UDP socket read by the event loop, replying through :class:`_Replier`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        handler: Callable[[_Replier, bytes, tuple[str, int]], None],
    ) -> None:
        self._loop = loop
        self._handler = handler
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            self._sock.setblocking(False)
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        loop.add_reader(self._sock.fileno(), self._read)

    def _read(self) -> None:
        for _ in range(64):  # drain a burst, then let other work run
            try:
                data, ancillary, _flags, addr = self._sock.recvmsg(65535, socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            local = None
            for level, kind, payload in ancillary:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(payload) >= _PKTINFO.size:
                    _ifindex, _spec_dst, local = _PKTINFO.unpack(payload[: _PKTINFO.size])
            self._handler(_Replier(self._sock, local), data, addr)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
