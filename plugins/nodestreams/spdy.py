"""``kubectl port-forward``: SPDY/3.1 tunnelled in a WebSocket (``SPDY/3.1+portforward.k8s.io``).

kubectl 1.31+ opens a WebSocket and runs an ordinary SPDY client session inside it: the SPDY
byte stream is cut into binary messages at arbitrary points. For every local connection it
opens two streams (SYN_STREAM with headers ``streamType`` error|data, ``port``, ``requestID``)
and waits for a SYN_REPLY to each; once both of a request are there the server connects to the
pod's port and copies bytes (DATA frames on the data stream, FIN for end of stream). A failure
is written as text on the error stream. Only what that client uses is implemented: no server
pushes, no flow control windows (SPDY's defaults are not enforced by kubectl's spdystream).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from kybern.plugins.nodestreams.spdydict import DICTIONARY
from loguru import logger

log = logger.bind(component="kubelet-streams")

PROTOCOL = "SPDY/3.1+portforward.k8s.io"
VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY = 1, 2, 3, 4, 6, 7
FLAG_FIN = 0x01
STREAM_MASK = 0x7FFFFFFF
CHUNK = 32 * 1024


def parse_headers(block: bytes) -> dict[str, str]:
    """A decompressed SPDY/3 header block: a count, then length-prefixed names and values."""
    headers: dict[str, str] = {}
    count = int.from_bytes(block[0:4], "big")
    pos = 4
    for _ in range(count):
        size = int.from_bytes(block[pos : pos + 4], "big")
        name = block[pos + 4 : pos + 4 + size].decode("latin-1").lower()
        pos += 4 + size
        size = int.from_bytes(block[pos : pos + 4], "big")
        headers[name] = block[pos + 4 : pos + 4 + size].decode("latin-1").split("\x00")[0]
        pos += 4 + size
    return headers


def control_frame(kind: int, payload: bytes, flags: int = 0) -> bytes:
    return (
        bytes([0x80, VERSION])
        + kind.to_bytes(2, "big")
        + bytes([flags])
        + len(payload).to_bytes(3, "big")
        + payload
    )


def data_frame(stream: int, data: bytes, fin: bool = False) -> bytes:
    return (
        (stream & STREAM_MASK).to_bytes(4, "big")
        + bytes([FLAG_FIN if fin else 0])
        + len(data).to_bytes(3, "big")
        + data
    )


@dataclass
class Request:
    """One forwarded connection: its two streams, paired by requestID."""

    id: str = ""
    port: int = 0
    error: int | None = None
    data: int | None = None
    writer: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: what the client sent before the connection to the pod was made (and whether it ended)
    pending: list[bytes] = field(default_factory=list)
    ended: bool = False
    failed: bool = False


class SpdyPortForward:
    def __init__(self, ws: web.WebSocketResponse, ip: str, pod: str) -> None:
        self.ws = ws
        self.ip = ip
        self.pod = pod
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self._buf = bytearray()
        self._requests: dict[str, Request] = {}
        self._by_data: dict[int, Request] = {}
        self._send_lock = asyncio.Lock()

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(frame)

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    if msg.type == WSMsgType.TEXT:
                        continue
                    break
                self._buf += msg.data
                while len(self._buf) >= 8:
                    length = int.from_bytes(self._buf[5:8], "big")
                    if len(self._buf) < 8 + length:
                        break
                    head, body = bytes(self._buf[:8]), bytes(self._buf[8 : 8 + length])
                    del self._buf[: 8 + length]
                    if not await self._frame(head, body):
                        return
        finally:
            for request in self._requests.values():
                for task in request.tasks:
                    task.cancel()
                if request.writer is not None:
                    request.writer.close()

    async def _frame(self, head: bytes, body: bytes) -> bool:
        """Handle one frame; False ends the session (GOAWAY)."""
        if not head[0] & 0x80:
            await self._data(int.from_bytes(head[0:4], "big") & STREAM_MASK, head[4], body)
            return True
        kind = int.from_bytes(head[2:4], "big")
        if kind == SYN_STREAM:
            await self._syn_stream(body)
        elif kind == RST_STREAM:
            request = self._by_data.get(int.from_bytes(body[0:4], "big") & STREAM_MASK)
            if request is not None and request.writer is not None:
                request.writer.close()
        elif kind == PING:
            await self._send(head + body)
        elif kind == GOAWAY:
            return False
        return True  # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do

    async def _syn_stream(self, body: bytes) -> None:
        stream = int.from_bytes(body[0:4], "big") & STREAM_MASK
        headers = parse_headers(self._inflate.decompress(body[10:]))
        empty = self._deflate.compress(b"\x00\x00\x00\x00") + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        await self._send(control_frame(SYN_REPLY, stream.to_bytes(4, "big") + empty))
        rid = headers.get("requestid", "")
        request = self._requests.setdefault(rid, Request(id=rid))
        try:
            request.port = int(headers.get("port", "0"))
        except ValueError:
            request.port = 0
        if headers.get("streamtype") == "error":
            request.error = stream
        elif headers.get("streamtype") == "data":
            request.data = stream
            self._by_data[stream] = request
        if request.error is not None and request.data is not None and not request.tasks:
            request.tasks.append(asyncio.create_task(self._forward(request)))

    async def _data(self, stream: int, flags: int, body: bytes) -> None:
        request = self._by_data.get(stream)
        if request is None or request.failed:
            return
        writer = request.writer
        if writer is None:  # still connecting to the pod: keep it for then
            request.pending.append(body)
            request.ended = request.ended or bool(flags & FLAG_FIN)
            return
        if writer.is_closing():
            return
        if body:
            writer.write(body)
            await writer.drain()
        if flags & FLAG_FIN and writer.can_write_eof():
            writer.write_eof()

    async def _forward(self, request: Request) -> None:
        assert request.data is not None and request.error is not None
        try:
            reader, writer = await asyncio.open_connection(self.ip, request.port)
        except OSError as exc:
            request.failed = True
            message = (
                f"error forwarding port {request.port} to pod {self.pod}: "
                f"failed to connect to {self.ip}:{request.port}: {exc.strerror or exc}"
            )
            await self._send(data_frame(request.error, message.encode(), fin=True))
            await self._send(data_frame(request.data, b"", fin=True))
            self._requests.pop(request.id, None)
            self._by_data.pop(request.data, None)
            return
        writer.write(b"".join(request.pending))
        request.pending.clear()
        if request.ended and writer.can_write_eof():
            writer.write_eof()
        request.writer = writer
        try:
            while chunk := await reader.read(CHUNK):
                await self._send(data_frame(request.data, chunk))
        except (ConnectionError, OSError) as exc:
            log.debug("port-forward connection to {}:{} ended: {}", self.ip, request.port, exc)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(data_frame(request.data, b"", fin=True))
            await self._send(data_frame(request.error, b"", fin=True))
        writer.close()
        self._requests.pop(request.id, None)  # one session serves every connection: forget it
        self._by_data.pop(request.data, None)
