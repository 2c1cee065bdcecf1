"""A lean keep-alive HTTP/1.1 client for the benchmarks' load generators.

The benchmarks measure the server; a load generator that spends more CPU per request than
the server does (aiohttp's client costs ~0.3 ms per request here) takes a large share of a
2-core machine away from what is measured. This speaks just enough HTTP/1.1 over one
keep-alive TLS connection: fixed headers, Content-Length or chunked bodies.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator


class LeanClient:
    """One keep-alive HTTPS connection speaking just enough HTTP/1.1 for the benchmark."""

    def __init__(
        self, host: str, port: int, ctx: ssl.SSLContext, token: str, user_agent: str = "bench"
    ) -> None:
        self.host, self.port, self.ctx = host, port, ctx
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"User-Agent: {user_agent}/v1.32.0\r\nAccept: application/json\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @classmethod
    def for_url(cls, url: str, ctx: ssl.SSLContext, token: str) -> LeanClient:
        host, port = url.removeprefix("https://").rsplit(":", 1)
        return cls(host, int(port), ctx, token)

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx)
        assert self.reader is not None
        head = self.head
        if content_type != "application/json":
            head = head.replace("application/json", content_type, 1)
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        pairs = (line.partition(":") for line in lines[1:] if line)
        headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        chunks = []
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])

    async def stream(self, path: str) -> AsyncIterator[bytes]:
        """GET ``path`` (a watch) on a connection of its own: its chunked body, line by line."""
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\n{self.head}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}")
            pending = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    return
                *lines, pending = (pending + chunk[:-2]).split(b"\n")
                for line in lines:
                    if line:
                        yield line
        finally:
            writer.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
