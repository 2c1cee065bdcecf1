"""Long-lived streams (logs, exec, attach) straight over the Podman socket with asyncio.

podman-py is synchronous and cannot send stdin to an exec session; following a stream in a
thread also cannot be cancelled cleanly. These streams are plain asyncio connections to the
REST socket instead: a request, then either a close-delimited body (logs) or, for exec, the
connection upgraded to a raw bidirectional stream (Podman's hijacking, as ``podman exec -i``
does). Non-tty output is multiplexed in frames: one byte stream id (1 stdout, 2 stderr),
three zero bytes, a big-endian length, the payload.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from kybern.runtime import ContainerNotFoundError, ContainerRuntimeError

API_PREFIX = "/v4.0.0/libpod"
Stream = Literal["stdout", "stderr"]
_STREAMS: dict[int, Stream] = {0: "stdout", 1: "stdout", 2: "stderr"}


class ServiceGoneError(ContainerRuntimeError):
    """Nothing listens on the socket any more (the service stopped); worth one reconnect."""


class HttpResponse:
    def __init__(self, status: int, headers: dict[str, str], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.status = status
        self.headers = headers
        self.reader = reader
        self.writer = writer

    async def body(self) -> bytes:
        length = self.headers.get("content-length")
        if length is not None:
            return await self.reader.readexactly(int(length))
        return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


async def request(
    sock: Path,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    body: Any = None,
    upgrade: bool = False,
) -> HttpResponse:
    """One HTTP request on a fresh connection. Without ``upgrade`` it speaks HTTP/1.0 so a
    streamed body simply ends when the service closes the connection (no chunk decoding)."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
    except OSError as exc:
        raise ServiceGoneError(f"Podman service at unix://{sock} does not answer: {exc}") from None
    query = ("?" + urlencode({k: v for k, v in params.items() if v is not None})) if params else ""
    data = json.dumps(body).encode() if body is not None else b""
    lines = [
        f"{method} {API_PREFIX}{path}{query} HTTP/{'1.1' if upgrade else '1.0'}",
        "Host: podman",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
    ]
    if upgrade:
        lines += ["Connection: Upgrade", "Upgrade: tcp"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    await writer.drain()
    status_line = await reader.readline()
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        writer.close()
        raise ContainerRuntimeError(f"bad reply from Podman: {status_line[:80]!r}") from None
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    return HttpResponse(status, headers, reader, writer)


async def check(response: HttpResponse, what: str) -> None:
    """Raise the runtime's error for a failed request (404 -> ContainerNotFoundError)."""
    if response.status < 300 or response.status == 101:
        return
    raw = await response.body()
    response.close()
    try:
        message = json.loads(raw).get("message") or raw.decode(errors="replace")
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")
    if response.status == 404:
        raise ContainerNotFoundError(f"{what}: {message.strip()}")
    raise ContainerRuntimeError(f"{what}: {message.strip()}")


async def frames(reader: asyncio.StreamReader, multiplexed: bool) -> AsyncIterator[tuple[Stream, bytes]]:
    """Demultiplex a stream until EOF."""
    while True:
        if not multiplexed:
            chunk = await reader.read(65536)
            if not chunk:
                return
            yield "stdout", chunk
            continue
        try:
            header = await reader.readexactly(8)
            size = struct.unpack(">I", header[4:])[0]
            payload = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return
        yield _STREAMS.get(header[0], "stdout"), payload


class _UpgradedStdio:
    """A process' stdio on a connection Podman upgraded (exec or attach): output frames in,
    stdin out, a half-close as stdin EOF."""

    def __init__(self, sock: Path, response: HttpResponse, tty: bool) -> None:
        self.sock = sock
        self._response = response
        self._tty = tty
        self._closed = False

    async def output(self) -> AsyncIterator[tuple[Stream, bytes]]:
        async for item in frames(self._response.reader, multiplexed=not self._tty):
            yield item

    async def write(self, data: bytes) -> None:
        self._response.writer.write(data)
        await self._response.writer.drain()

    async def close_stdin(self) -> None:
        # a half-close: Podman passes the EOF on to the process' stdin
        if self._response.writer.can_write_eof():
            self._response.writer.write_eof()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()


class PodmanExecSession(_UpgradedStdio):
    """An exec session on an upgraded connection (see the module docstring)."""

    def __init__(self, sock: Path, exec_id: str, response: HttpResponse, tty: bool) -> None:
        super().__init__(sock, response, tty)
        self.exec_id = exec_id

    @classmethod
    async def start(
        cls, sock: Path, container: str, cmd: list[str], stdin: bool, tty: bool
    ) -> PodmanExecSession:
        create = await request(
            sock, "POST", f"/containers/{container}/exec",
            body={"AttachStdin": stdin, "AttachStdout": True, "AttachStderr": True, "Cmd": cmd, "Tty": tty},
        )  # fmt: skip
        await check(create, f"exec in {container}")
        exec_id = json.loads(await create.body())["Id"]
        create.close()
        started = await request(
            sock, "POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty}, upgrade=True
        )
        await check(started, f"exec in {container}")
        return cls(sock, exec_id, started, tty)

    async def resize(self, width: int, height: int) -> None:
        response = await request(self.sock, "POST", f"/exec/{self.exec_id}/resize", {"h": height, "w": width})
        await check(response, "resize")
        response.close()

    async def inspect(self) -> dict[str, Any]:
        response = await request(self.sock, "GET", f"/exec/{self.exec_id}/json")
        await check(response, "exec inspect")
        data: dict[str, Any] = json.loads(await response.body())
        response.close()
        return data

    async def wait(self) -> int:
        # the output ends a moment before Podman records the exit code
        delay = 0.01
        while True:
            info = await self.inspect()
            if not info.get("Running"):
                return int(info.get("ExitCode") or 0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)


class PodmanAttachSession(_UpgradedStdio):
    """The main process' stdio on an upgraded connection (``podman attach``). A half-close
    of the connection reaches the process as stdin EOF; closing it detaches, the container
    goes on."""

    def __init__(self, sock: Path, container: str, response: HttpResponse, tty: bool) -> None:
        super().__init__(sock, response, tty)
        self.container = container

    @classmethod
    async def start(cls, sock: Path, container: str, stdin: bool, tty: bool) -> PodmanAttachSession:
        params = {"stream": True, "logs": False, "stdin": stdin, "stdout": True, "stderr": True}
        response = await request(sock, "POST", f"/containers/{container}/attach", params, upgrade=True)
        await check(response, f"attach to {container}")
        return cls(sock, container, response, tty)

    @property
    def tty(self) -> bool:
        return self._tty

    async def resize(self, width: int, height: int) -> None:
        response = await request(
            self.sock, "POST", f"/containers/{self.container}/resize", {"h": height, "w": width}
        )
        await check(response, "resize")
        response.close()


async def logs(
    sock: Path, container: str, params: dict[str, Any], multiplexed: bool
) -> AsyncGenerator[bytes, None]:
    """Open a log stream; errors raise here, before any output."""
    response = await request(sock, "GET", f"/containers/{container}/logs", params)
    await check(response, f"logs of {container}")
    return _log_chunks(response, multiplexed)


async def _log_chunks(response: HttpResponse, multiplexed: bool) -> AsyncGenerator[bytes, None]:
    """Raw log output; closing the generator closes the connection (ends a follow)."""
    try:
        async for _, chunk in frames(response.reader, multiplexed):
            yield chunk
    finally:
        response.close()
