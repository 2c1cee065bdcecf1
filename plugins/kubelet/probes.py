"""Liveness, readiness and startup probes (exec, httpGet, tcpSocket), one asyncio task per
probe of a running container, like the kubelet's prober workers.

A worker reports a result only when it flips (after ``successThreshold`` successes or
``failureThreshold`` failures in a row); the pod worker then re-syncs: readiness drives the
Ready condition, a failed liveness or startup probe gets the container killed and restarted.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Literal

import aiohttp
from kybern.runtime import ContainerRuntime

ProbeKind = Literal["liveness", "readiness", "startup"]


async def run_handler(
    runtime: ContainerRuntime, container_id: str, handler: dict[str, Any], pod_ip: str | None, timeout: float
) -> tuple[bool, str]:
    """One probe or lifecycle hook action: (succeeded, message)."""
    if "exec" in handler:
        cmd = (handler.get("exec") or {}).get("command") or []
        try:
            code, output = await runtime.exec_sync(container_id, list(cmd), timeout=timeout)
        except TimeoutError:
            return False, f"command timed out after {timeout:g}s"
        except Exception as exc:
            return False, str(exc)
        text = output.decode("utf-8", "replace").strip()
        if code != 0:
            return False, f"command {cmd!r} exited with {code}: {text}".strip()
        return True, text
    if "httpGet" in handler:
        http = handler.get("httpGet") or {}
        host = http.get("host") or pod_ip or "127.0.0.1"
        port = _port(http.get("port"))
        scheme = (http.get("scheme") or "HTTP").lower()
        path = http.get("path") or "/"
        url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"
        headers = {h.get("name", ""): h.get("value", "") for h in http.get("httpHeaders") or []}
        headers.setdefault("User-Agent", "kube-probe/1.32")
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url, headers=headers, ssl=False, allow_redirects=True) as resp,
            ):
                await resp.read()
                if 200 <= resp.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {resp.status}"
        except TimeoutError:
            return (
                False,
                f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
            )
        except aiohttp.ClientError as exc:
            return False, f'Get "{url}": {exc}'
    if "tcpSocket" in handler:
        tcp = handler.get("tcpSocket") or {}
        host = tcp.get("host") or pod_ip or "127.0.0.1"
        port = _port(tcp.get("port"))
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()
            return True, ""
        except (OSError, TimeoutError) as exc:
            return False, f"dial tcp {host}:{port}: {exc or 'i/o timeout'}"
    if "sleep" in handler:
        await asyncio.sleep(int((handler.get("sleep") or {}).get("seconds") or 0))
        return True, ""
    return False, "unsupported probe handler"


def _port(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0  # named ports are resolved by the caller before probing


def resolve_named_port(handler: dict[str, Any], ctr: dict[str, Any]) -> dict[str, Any]:
    for key in ("httpGet", "tcpSocket"):
        action = handler.get(key)
        if action and isinstance(action.get("port"), str) and not action["port"].isdigit():
            for p in ctr.get("ports") or []:
                if p.get("name") == action["port"]:
                    return {**handler, key: {**action, "port": p.get("containerPort")}}
    return handler


class ProbeWorker:
    """Probes one container with one probe until cancelled. ``on_change(kind, ok, message,
    flipped)`` hears every failure (for Unhealthy events) and every flip of the result."""

    def __init__(
        self,
        kind: ProbeKind,
        probe: dict[str, Any],
        runtime: ContainerRuntime,
        container_id: str,
        pod_ip: Callable[[], str | None],
        on_change: Callable[[ProbeKind, bool, str, bool], None],
    ) -> None:
        self.kind = kind
        self.probe = probe
        self.runtime = runtime
        self.container_id = container_id
        self.pod_ip = pod_ip
        self.on_change = on_change
        #: readiness starts failed, liveness and startup start "not failed"
        self.result: bool | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"probe-{self.kind}-{self.container_id[:12]}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        p = self.probe
        period = max(int(p.get("periodSeconds") or 10), 1)
        timeout = max(int(p.get("timeoutSeconds") or 1), 1)
        success_needed = max(int(p.get("successThreshold") or 1), 1)
        failure_needed = max(int(p.get("failureThreshold") or 3), 1)
        # spread the first probes of many containers, as kubelet's workers do
        await asyncio.sleep(int(p.get("initialDelaySeconds") or 0) + random.uniform(0, min(period, 1)))
        successes = failures = 0
        while True:
            ok, message = await run_handler(self.runtime, self.container_id, p, self.pod_ip(), timeout)
            if ok:
                successes, failures = successes + 1, 0
                if self.result is not True and successes >= success_needed:
                    self.result = True
                    self.on_change(self.kind, True, message, True)
            else:
                failures, successes = failures + 1, 0
                flipped = self.result is not False and failures >= failure_needed
                if flipped:
                    self.result = False
                    if self.kind != "readiness":
                        failures = 0  # the container gets restarted; count afresh
                self.on_change(self.kind, False, message, flipped)
            if self.kind == "startup" and self.result is True:
                return  # a startup probe stops once it succeeded
            await asyncio.sleep(period)
