"""Listeners that relay TCP connections and UDP datagrams to a service port's endpoints.

Each connection (each UDP client address) picks an endpoint at random; a TCP endpoint that
refuses is skipped for the next one, so a just-removed pod costs a retry, not an error.
Every byte crosses user space twice, which is why this is the fallback, not the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time

from kybern.plugins.proxy.model import Endpoint
from loguru import logger

log = logger.bind(component="userspace-proxy")

CONNECT_TIMEOUT = 5.0
UDP_IDLE_TIMEOUT = 30.0
BUFFER = 65536


class Backends:
    """The endpoints of one service port, swapped in place when they change."""

    def __init__(self, endpoints: tuple[Endpoint, ...] = ()) -> None:
        self.endpoints = endpoints

    def order(self) -> list[Endpoint]:
        eps = list(self.endpoints)
        random.shuffle(eps)
        return eps


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class TcpListener:
    def __init__(self, host: str, port: int, backends: Backends) -> None:
        self.host, self.port, self.backends = host, port, backends
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, backlog=512
        )

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = None
        for ep in self.backends.order():
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(ep.ip, ep.port), CONNECT_TIMEOUT)
                break
            except (OSError, TimeoutError) as exc:
                log.debug("{}:{} -> {} failed: {}", self.host, self.port, ep, exc)
        if upstream is None:
            client_w.transport.abort()  # RST, like the nftables proxy's reject
            return
        up_r, up_w = upstream
        with contextlib.suppress(OSError):
            client_w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(_pump(client_r, up_w), _pump(up_r, client_w))
        finally:
            for w in (up_w, client_w):
                w.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)


class _UdpUpstream(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener, client: tuple[str, int]) -> None:
        self.listener, self.client = listener, client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.last = time.monotonic()
        if self.listener.transport is not None:
            self.listener.transport.sendto(data, self.client)


class UdpListener(asyncio.DatagramProtocol):
    """One upstream socket per client address, so replies find their way back."""

    def __init__(self, host: str, port: int, backends: Backends) -> None:
        self.host, self.port, self.backends = host, port, backends
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple[str, int], _UdpUpstream] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port), reuse_port=False)
        self._reaper = asyncio.create_task(self._reap())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        session = self.sessions.get(addr)
        if session is not None and session.transport is not None:
            session.last = time.monotonic()
            session.transport.sendto(data)
            return
        asyncio.get_running_loop().create_task(self._open(data, addr))

    async def _open(self, data: bytes, addr: tuple[str, int]) -> None:
        eps = self.backends.order()
        if not eps:
            return
        ep = eps[0]
        loop = asyncio.get_running_loop()
        _, session = await loop.create_datagram_endpoint(
            lambda: _UdpUpstream(self, addr), remote_addr=(ep.ip, ep.port)
        )
        self.sessions[addr] = session
        assert session.transport is not None
        session.transport.sendto(data)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE_TIMEOUT / 3)
            now = time.monotonic()
            for addr, s in list(self.sessions.items()):
                if now - s.last > UDP_IDLE_TIMEOUT and s.transport is not None:
                    s.transport.close()
                    del self.sessions[addr]

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for s in self.sessions.values():
            if s.transport is not None:
                s.transport.close()
        self.sessions.clear()
        if self.transport is not None:
            self.transport.close()
