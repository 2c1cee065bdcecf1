"""The Podman runtime: a Kubernetes pod is a Podman pod.

The pod's infra container owns the network namespace (hostname, DNS, published hostPorts,
the pod IP on the node's bridge network); app containers are created with ``pod=`` and join
it. Everything carries the ``io.kybern.*`` labels plus ``io.kybern.node``, so the state of a
node is rebuilt from Podman alone when the agent restarts.

Requests go through podman-py, which is synchronous: each call runs in a thread pool.
Streams (logs, exec) use asyncio connections to the same socket (see ``streams``).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
from kybern.runtime import (
    LABEL_CONTAINER_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerNotFoundError,
    ContainerRuntimeError,
    ContainerSpec,
    ContainerStartError,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    ImagePullError,
    ImageRef,
    PullPolicy,
    RuntimeStatus,
    RuntimeUnavailableError,
    RuntimeVersion,
    SandboxSpec,
    SandboxStatus,
)
from kybern.runtimes.podman import diagnose, streams
from kybern.runtimes.podman.config import PodmanConfig
from kybern.runtimes.podman.oom import KernelOomLog
from kybern.runtimes.podman.service import PodmanService
from loguru import logger
from podman import PodmanClient, api
from podman.errors import APIError, NotFound

log = logger.bind(component="podman")
T = TypeVar("T")

LABEL_NODE = "io.kybern.node"
LABEL_SANDBOX_ATTEMPT = "io.kybern.sandbox.attempt"
LABEL_PROBE = "io.kybern.probe"
#: set on sandboxes in the host's network (and UTS) namespace: hostNetwork pods
LABEL_HOST_NETWORK = "io.kybern.sandbox.host-network"
#: SandboxSpec.network value meaning the host's network namespace (spec.hostNetwork)
HOST_NETWORK = "host"
CPU_PERIOD_US = 100_000
#: a hung service must not hang the kubelet; stop calls add their grace period to it
REQUEST_TIMEOUT_S = 60.0
#: the node-wide listing (the kubelet's relist, every 2 s) is answered from the previous one
#: while nothing changed, but at least this often from Podman (which costs it ~1.3 ms of CPU
#: per container: with 20 pods, more than the rest of an idle node together)
LISTING_REUSE_S = 10.0
_ZERO_TIME = "0001-01-01"

_STATES: dict[str, ContainerState] = {
    "running": "running",
    "paused": "running",
    "stopping": "running",
    "created": "created",
    "configured": "created",
    "initialized": "created",
    "exited": "exited",
    "stopped": "exited",
}


def _time(value: Any) -> datetime | None:
    """Podman mixes RFC3339 strings (with nanoseconds) and unix seconds; zero means unset."""
    if value in (None, "", 0) or (isinstance(value, int) and value < 0):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value)
    if text.startswith(_ZERO_TIME):
        return None
    head, _, frac = text.partition(".")
    if frac:  # trim nanoseconds to microseconds, keep the zone
        digits = "".join(c for c in frac if c.isdigit())
        text = f"{head}.{digits[:6]}{frac[len(digits) :]}"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _error_text(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return diagnose.first_line(str(explanation or exc) or type(exc).__name__)


def _registry_host(image: str) -> str:
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return ""


class PodmanRuntime:
    """:class:`kybern.runtime.ContainerRuntime` on Podman's REST API."""

    def __init__(self, config: PodmanConfig) -> None:
        self.config = config
        self.service = PodmanService(config)
        self._client: PodmanClient | None = None
        self._connect_lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="podman")
        #: exited containers never change: their inspect details are kept
        self._exited: dict[str, dict[str, Any]] = {}
        self._probe_error: str | None = None
        self._kernel_oom = KernelOomLog()
        #: running infra container id -> (pod IP, network)
        self._addresses: dict[str, tuple[str | None, str | None]] = {}
        self._probed = False
        #: (client it was read through, OCI runtime name, cgroup version) from /info
        self._host: tuple[PodmanClient | None, str, str] | None = None
        #: moves before and after every call that may change containers (all but GETs)
        self._generation = 0
        #: (generation, exits directory mtime, monotonic time, result) of the last listing
        self._listing: tuple[int, int, float, list[ContainerStatus]] | None = None

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> PodmanClient:
        with self._connect_lock:
            if self._closed:
                # a call still in flight when the agent stopped must not start a new service
                # (it would outlive the agent, orphaned)
                raise RuntimeUnavailableError("the Podman runtime is closed")
            if self._client is None:
                sock = self.service.ensure()
                self._client = PodmanClient(base_url=f"unix://{sock}", timeout=None)
            return self._client

    def _reconnect(self, broken: PodmanClient | None) -> PodmanClient:
        """The service went away (stopped, crashed, host restarted it): find or start one
        again. Containers outlive the service, so nothing is lost."""
        with self._connect_lock:
            if self._client is broken and broken is not None:
                self._client = None
                broken.close()
        log.warning("Podman service at {} stopped answering; reconnecting", self.service.url)
        return self._connect()

    @property
    def socket(self) -> Path:
        if self.service.socket is None:
            raise RuntimeUnavailableError("not connected to Podman yet")
        return self.service.socket

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeUnavailableError("the Podman runtime is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    async def _api(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        ok_missing: bool = False,
        timeout: float = REQUEST_TIMEOUT_S,
        text: bool = False,
    ) -> Any:
        """One REST call; JSON answer (None when empty, or when missing and ``ok_missing``),
        or with ``text`` the answer as it came."""

        def send(client: PodmanClient) -> Any:
            data = json.dumps(body) if body is not None else None
            return getattr(client.api, method)(
                path, params=params, timeout=timeout, **({"data": data} if data else {})
            )

        def call() -> Any:
            client = self._connect()
            try:
                try:
                    response = send(client)
                except APIError as exc:
                    # podman-py wraps connection errors; a read timeout is a slow service, not a
                    # gone one, and must not send the request twice
                    if not isinstance(exc.__cause__, requests.ConnectionError):
                        raise
                    response = send(self._reconnect(client))
            except APIError as exc:
                raise ContainerRuntimeError(f"{method.upper()} {path}: {_error_text(exc)}") from None
            if response.status_code == 404 and ok_missing:
                return None
            try:
                response.raise_for_status()
            except NotFound as exc:
                raise ContainerNotFoundError(f"{path}: {_error_text(exc)}") from None
            except APIError as exc:
                raise ContainerRuntimeError(f"{method.upper()} {path}: {_error_text(exc)}") from None
            if text:
                return response.text
            return response.json() if response.content.strip() else None

        if method == "get":
            return await self._call(call)
        self._generation += 1
        try:
            return await self._call(call)
        finally:
            self._generation += 1

    def _filters(self, *labels: str) -> dict[str, str]:
        return {"filters": json.dumps({"label": [f"{LABEL_NODE}={self.config.node_name}", *labels]})}

    async def connect(self) -> None:
        """Reach (or start) the Podman service now rather than on first use."""
        await self._call(self._connect)

    async def close(self) -> None:
        def shut() -> None:
            with self._connect_lock:  # after a connect in progress, so its service stops too
                self._closed = True
                client, self._client = self._client, None
            if client is not None:
                client.close()
            self.service.stop()

        await asyncio.get_running_loop().run_in_executor(None, shut)
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ runtime identity

    async def version(self) -> RuntimeVersion:
        data = await self._api("get", "/version")
        return RuntimeVersion("podman", data.get("Version", "unknown"), data.get("ApiVersion", ""))

    async def status(self) -> RuntimeStatus:
        """Ready only once a probe pod actually started here (that is when crun on hybrid
        cgroups or ulimits over the hard limit show up); the probe is redone until it passes.
        The service's /info is read once per connection (it costs the service 0.3-0.5 s of
        CPU; the node status asks every 10 s); later checks only see that the service answers."""
        try:
            await self.connect()
            if self._host is None or self._host[0] is not self._client:
                client = self._client
                host = (await self._api("get", "/info")).get("host") or {}
                oci_name = (host.get("ociRuntime") or {}).get("name", "")
                self._host = (client, oci_name, host.get("cgroupVersion", ""))
            else:
                # /_ping: /version costs the service as much as /info (it reads the same)
                await self._api("get", "/_ping", text=True)
        except RuntimeUnavailableError as exc:
            return RuntimeStatus(False, str(exc))
        except (ContainerRuntimeError, OSError) as exc:
            sock = self.service.socket or self.config.socket or "podman socket"
            return RuntimeStatus(False, diagnose.not_answering(str(sock), str(exc)))
        _, oci, cgroups = self._host
        if oci == "crun" and cgroups == "v1" and Path("/sys/fs/cgroup/unified").is_dir():
            return RuntimeStatus(False, diagnose.explain("crun: cgroups in hybrid mode not supported") or "")
        if not self._probed or self._probe_error:
            self._probe_error = await self._probe()
            self._probed = True
        if self._probe_error:
            return RuntimeStatus(False, self._probe_error)
        return RuntimeStatus(True)

    async def _probe(self) -> str | None:
        name = f"kybern-probe-{self.config.node_name}"
        await self._api("delete", f"/pods/{name}", {"force": True}, ok_missing=True)
        try:
            await self._api(
                "post", "/pods/create",
                body={"name": name, "labels": {LABEL_PROBE: "1", LABEL_NODE: self.config.node_name},
                      "netns": {"nsmode": "none"}},
            )  # fmt: skip
            await self._api("post", f"/pods/{name}/start")
            return None
        except ContainerRuntimeError as exc:
            text = str(exc)
            return diagnose.explain(text) or f"Podman cannot start containers: {text}"
        finally:
            await self._api("delete", f"/pods/{name}", {"force": True}, ok_missing=True)

    # ------------------------------------------------------------------ images

    async def image_present(self, image: str) -> ImageRef | None:
        data = await self._api("get", f"/images/{image}/json", ok_missing=True)
        if not data:
            return None
        digest = data.get("Digest") or ""
        return ImageRef(image=image, id=data.get("Id", ""), digest=digest, size=int(data.get("Size") or 0))

    async def pull_image(
        self, image: str, auth: dict[str, str] | None = None, policy: PullPolicy = "IfNotPresent"
    ) -> ImageRef:
        repo = image.split("/")[-1].split(":")[0]
        if not image or image != image.strip() or any(c.isupper() for c in repo):
            raise ImagePullError("InvalidImageName", f"invalid image name {image!r}")
        if policy != "Always":
            present = await self.image_present(image)
            if present:
                return present
            if policy == "Never":
                raise ImagePullError(
                    "ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never'
                )
        host, _, port = _registry_host(image).rpartition(":")
        host = host if port.isdigit() else _registry_host(image)  # "[::1]" has colons too
        params: dict[str, Any] = {"reference": image, "policy": "always", "compatMode": False}
        if host and host in self.config.insecure_registries:
            # loopback registries speak plain HTTP, as Docker allows them to; for the others an
            # explicit tlsVerify would override registries.conf's `insecure`, so none is sent
            params["tlsVerify"] = False

        def pull() -> str:
            try:
                return read_pull()
            except (APIError, requests.RequestException) as exc:
                # a registry that accepts and then says nothing would hold Podman's pull (and
                # this pod) forever: no progress line for this long gives up, and it is retried
                timed_out = isinstance(exc, requests.Timeout) or isinstance(exc.__cause__, requests.Timeout)
                if timed_out or "timed out" in str(exc):  # iter_lines: ConnectionError(ReadTimeout)
                    stall = self.config.pull_stall_timeout_s
                    raise ImagePullError(
                        "ErrImagePull", f"pulling {image} made no progress for {stall:g}s"
                    ) from None
                raise ImagePullError("ErrImagePull", _error_text(exc)) from None

        def read_pull() -> str:
            client = self._connect()
            headers = {"X-Registry-Auth": api.encode_auth_header(auth)} if auth else {}
            response = client.api.post(
                "/images/pull", params=params, headers=headers, stream=True,
                timeout=self.config.pull_stall_timeout_s,
            )  # fmt: skip
            try:
                if not response.ok:
                    try:
                        message = response.json().get("message", response.text)
                    except ValueError:
                        message = response.text
                    raise ImagePullError("ErrImagePull", diagnose.first_line(message))
                image_id = ""
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item.get("error"):
                        raise ImagePullError("ErrImagePull", diagnose.first_line(item["error"]))
                    image_id = item.get("id") or image_id
            finally:
                response.close()
            if not image_id:
                raise ImagePullError("ErrImagePull", f"pulling {image} reported no image")
            return image_id

        log.info("pulling image {}", image)
        await self._call(pull)
        present = await self.image_present(image)
        if present is None:
            raise ImagePullError("ErrImagePull", f"{image} pulled but not found afterwards")
        return present

    # ------------------------------------------------------------------ networks

    def _interface_name(self, name: str) -> str:
        """Bridge names are host-wide (15 chars max), network names only per agent."""
        key = f"{self.config.podman_dir}/{self.config.node_name}/{name}"
        return "kyb" + hashlib.sha256(key.encode()).hexdigest()[:12]

    async def ensure_network(self, name: str, subnet: str, gateway: str | None = None) -> None:
        net = ipaddress.ip_network(subnet)
        gateway = gateway or str(next(net.hosts()))
        existing = await self._api("get", f"/networks/{name}/json", ok_missing=True)
        if existing:
            subnets = [s.get("subnet") for s in existing.get("subnets") or []]
            if str(net) not in subnets:
                raise ContainerRuntimeError(
                    f"network {name} exists with subnets {subnets}, not {net}: remove it "
                    f"(podman network rm {name}) or choose another name"
                )
            return
        await self._api(
            "post", "/networks/create",
            body={
                "name": name, "driver": "bridge", "network_interface": self._interface_name(name),
                "subnets": [{"subnet": str(net), "gateway": gateway}],
                "labels": {LABEL_NODE: self.config.node_name},
            },
        )  # fmt: skip
        log.info("created network {} ({}, gateway {})", name, net, gateway)

    async def remove_network(self, name: str) -> None:
        """Remove a pod network (pods using it must be gone); no error if missing."""
        await self._api("delete", f"/networks/{name}", {"force": True}, ok_missing=True)

    # ------------------------------------------------------------------ sandboxes

    async def _find_pod(self, uid: str) -> dict[str, Any] | None:
        pods = await self._api("get", "/pods/json", self._filters(f"{LABEL_POD_UID}={uid}"))
        return (pods or [None])[0]

    async def _sandbox_status(self, pod: dict[str, Any]) -> SandboxStatus:
        labels: dict[str, str] = pod.get("Labels") or {}
        infra_id = pod.get("InfraId") or ""
        infra_state = ""
        for ctr in pod.get("Containers") or []:
            if ctr.get("Id") == infra_id:
                infra_state = (ctr.get("Status") or "").lower()
        ip: str | None = None
        network: str | None = None
        if labels.get(LABEL_HOST_NETWORK) == "true":
            network = HOST_NETWORK  # the pod's IP is the node's, which the kubelet knows
        elif infra_state == "running" and infra_id in self._addresses:
            ip, network = self._addresses[infra_id]
        elif infra_state == "running":
            inspect = await self._api("get", f"/containers/{infra_id}/json", ok_missing=True) or {}
            ip, network = self._address(inspect)
            # an infra container keeps its address while it runs; a restart is a new sandbox
            self._addresses[infra_id] = (ip, network)
        else:
            self._addresses.pop(infra_id, None)
        return SandboxStatus(
            id=pod["Id"],
            uid=labels.get(LABEL_POD_UID, ""),
            namespace=labels.get(LABEL_POD_NAMESPACE, ""),
            name=labels.get(LABEL_POD_NAME, ""),
            state="ready" if infra_state == "running" else "notready",
            ip=ip,
            network=network,
            created_at=_time(pod.get("Created")),
            labels=labels,
            attempt=int(labels.get(LABEL_SANDBOX_ATTEMPT, "0") or 0),
        )

    async def run_pod_sandbox(self, spec: SandboxSpec) -> SandboxStatus:
        """Create first: a new sandbox costs three calls (create, start, inspect of the infra
        container by its name, for the address). The name is the pod's, so only when it
        clashes is there a sandbox already (an agent restart): that one is adopted if it
        runs, replaced if it died."""
        body = self._sandbox_body(spec)
        try:
            created = await self._api("post", "/pods/create", body=body)
        except ContainerRuntimeError as exc:
            if "already exists" not in str(exc):  # e.g. the network does not exist
                raise ContainerStartError(
                    f"creating the sandbox of {spec.namespace}/{spec.name}: {exc}"
                ) from None
            existing = await self._find_pod(spec.uid)
            if existing is not None:
                status = await self._sandbox_status(existing)
                if status.state == "ready":
                    return status
                # a dead sandbox lost its network namespace: its containers cannot be revived
                await self._api("delete", f"/pods/{existing['Id']}", {"force": True}, ok_missing=True)
            try:
                created = await self._api("post", "/pods/create", body=body)
            except ContainerRuntimeError as again:
                raise ContainerStartError(
                    f"creating the sandbox of {spec.namespace}/{spec.name}: {again}"
                ) from None
        pod_id = created["Id"]
        try:
            await self._api("post", f"/pods/{pod_id}/start")
        except ContainerRuntimeError as exc:
            await self._api("delete", f"/pods/{pod_id}", {"force": True}, ok_missing=True)
            raise ContainerStartError(diagnose.explain(str(exc)) or str(exc)) from None
        infra = await self._api("get", f"/containers/{body['infra_name']}/json", ok_missing=True)
        if infra is None:
            raise ContainerNotFoundError(f"sandbox of pod {spec.namespace}/{spec.name} vanished")
        running = ((infra.get("State") or {}).get("Status") or "").lower() == "running"
        ip: str | None = None
        network: str | None = None
        if body["labels"].get(LABEL_HOST_NETWORK) == "true":
            network = HOST_NETWORK
        elif running:
            ip, network = self._address(infra)
            self._addresses[infra["Id"]] = (ip, network)
        return SandboxStatus(
            id=pod_id,
            uid=spec.uid,
            namespace=spec.namespace,
            name=spec.name,
            state="ready" if running else "notready",
            ip=ip,
            network=network,
            created_at=_time(infra.get("Created")),
            labels=dict(body["labels"]),
            attempt=spec.attempt,
        )

    @staticmethod
    def _address(inspect: dict[str, Any]) -> tuple[str | None, str | None]:
        """(IP, network name) of an infra container's inspect answer."""
        ip: str | None = None
        network: str | None = None
        for net_name, net in ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).items():
            network = net_name
            ip = net.get("IPAddress") or ip
            if ip:
                break
        return ip, network

    def _sandbox_body(self, spec: SandboxSpec) -> dict[str, Any]:
        name = f"k8s_{spec.namespace}_{spec.name}_{spec.uid[:8]}_{spec.attempt}"
        labels = {
            **spec.labels,
            LABEL_NODE: self.config.node_name,
            LABEL_POD_UID: spec.uid,
            LABEL_POD_NAMESPACE: spec.namespace,
            LABEL_POD_NAME: spec.name,
            LABEL_SANDBOX_ATTEMPT: str(spec.attempt),
        }
        host_network = spec.network == HOST_NETWORK
        body: dict[str, Any] = {
            "name": name,
            "infra_name": f"{name}_infra",
            "labels": labels,
            "hostname": (spec.hostname or spec.name)[:63],
            "netns": {"nsmode": "bridge"},
            "portmappings": [
                {
                    "container_port": p.container_port,
                    "host_port": p.host_port,
                    "protocol": p.protocol.lower(),
                    "host_ip": p.host_ip,
                }
                for p in spec.port_mappings
                if p.host_port
            ],
        }
        network = spec.network or self.config.network
        if host_network:
            # the host's network and hostname, as Kubernetes does for hostNetwork pods: ports
            # are the host's own, so nothing is published (Podman refuses port mappings here)
            labels[LABEL_HOST_NETWORK] = "true"
            body.update(netns={"nsmode": "host"}, utsns={"nsmode": "host"}, portmappings=None)
            body.pop("hostname")
        elif network:
            body["Networks"] = {network: {}}
        elif self.config.own_storage:
            # Podman's default network (podman0, 10.88.0.0/16) is host-wide but its address
            # pool is per storage: two isolated agents on it would hand out the same IPs
            log.warning("pod {}/{} joins Podman's default network; isolated agents need their own "
                        "(ensure_network with the node's pod CIDR)", spec.namespace, spec.name)  # fmt: skip
        if spec.dns:
            body.update(
                dns_server=spec.dns.nameservers or None,
                dns_search=spec.dns.searches or None,
                dns_option=spec.dns.options or None,
            )
        if spec.cgroup_parent:
            body["cgroup_parent"] = spec.cgroup_parent
        return {k: v for k, v in body.items() if v is not None}

    async def stop_pod_sandbox(self, uid: str, timeout_s: int = 10) -> None:
        pod = await self._find_pod(uid)
        if pod is not None:
            if timeout_s <= 0:  # Podman reads a zero timeout as "use the default" (10 s)
                await self._kill(f"/pods/{pod['Id']}/kill")
            await self._api(
                "post", f"/pods/{pod['Id']}/stop", {"timeout": max(timeout_s, 1)},
                ok_missing=True, timeout=REQUEST_TIMEOUT_S + timeout_s,
            )  # fmt: skip

    async def remove_pod_sandbox(self, uid: str) -> None:
        pod = await self._find_pod(uid)
        for ctr in await self._raw_containers(uid):
            self._exited.pop(ctr["Id"], None)
        if pod is not None:
            # SIGKILL first: removing means the grace period is over (stop_* gave it), and a
            # PID 1 ignoring SIGTERM would otherwise hold the removal for Podman's 10 s
            await self._kill(f"/pods/{pod['Id']}/kill")
            await self._api("delete", f"/pods/{pod['Id']}", {"force": True}, ok_missing=True)
        for ctr in await self._raw_containers(uid):  # created outside the pod by someone else
            await self.remove_container(ctr["Id"])

    async def list_sandboxes(self) -> list[SandboxStatus]:
        pods = await self._api("get", "/pods/json", self._filters(LABEL_POD_UID)) or []
        return list(await asyncio.gather(*(self._sandbox_status(p) for p in pods)))

    async def remove_unowned(self, keep_uids: set[str]) -> list[str]:
        """Remove sandboxes (with their containers) of pods the agent no longer runs, e.g.
        pods deleted while it was down. Returns the pod uids removed."""
        removed = [s.uid for s in await self.list_sandboxes() if s.uid not in keep_uids]
        for uid in removed:
            await self.remove_pod_sandbox(uid)
        for ctr in await self._raw_containers(None):
            if (ctr.get("Labels") or {}).get(LABEL_POD_UID) not in keep_uids:
                await self.remove_container(ctr["Id"])
        return removed

    # ------------------------------------------------------------------ containers

    async def create_container(self, sandbox: SandboxStatus, spec: ContainerSpec) -> str:
        labels = {
            **spec.labels,
            LABEL_NODE: self.config.node_name,
            LABEL_POD_UID: sandbox.uid,
            LABEL_POD_NAMESPACE: sandbox.namespace,
            LABEL_POD_NAME: sandbox.name,
            LABEL_CONTAINER_NAME: spec.name,
            LABEL_CONTAINER_ATTEMPT: str(spec.attempt),
        }
        body: dict[str, Any] = {
            "name": f"k8s_{spec.name}_{sandbox.namespace}_{sandbox.name}_{sandbox.uid[:8]}_{spec.attempt}",
            "pod": sandbox.id,
            "image": spec.image,
            "labels": labels,
            "env": dict(spec.env),
            "terminal": spec.tty,
            "stdin": spec.stdin,
            "log_configuration": {"driver": "k8s-file"},
        }
        if sandbox.network == HOST_NETWORK:
            body.update(await self._pod_dns(sandbox.id))
        if spec.command:
            body["entrypoint"] = spec.command
        if spec.args:
            body["command"] = spec.args
        if spec.working_dir:
            body["work_dir"] = spec.working_dir
        if spec.run_as_user is not None or spec.run_as_group is not None:
            user = str(spec.run_as_user if spec.run_as_user is not None else 0)
            body["user"] = user if spec.run_as_group is None else f"{user}:{spec.run_as_group}"
        if spec.stop_timeout_s is not None:
            body["stop_timeout"] = spec.stop_timeout_s
        mounts = []
        for m in spec.mounts:
            if m.tmpfs:
                options = [f"size={m.tmpfs_size}"] if m.tmpfs_size else []
                mounts.append({"destination": m.container_path, "type": "tmpfs", "source": "tmpfs",
                               "options": options + (["ro"] if m.read_only else [])})  # fmt: skip
            elif m.host_path:
                mounts.append({"destination": m.container_path, "type": "bind", "source": m.host_path,
                               "options": ["rbind", "ro" if m.read_only else "rw"]})  # fmt: skip
        if mounts:
            body["mounts"] = mounts
        limits: dict[str, Any] = {}
        res = spec.resources
        if res.memory_limit_bytes:
            # swap equal to the limit: no swap, as the kubelet runs containers
            limits["memory"] = {"limit": res.memory_limit_bytes, "swap": res.memory_limit_bytes}
        if res.cpu_limit_millis:
            limits["cpu"] = {"quota": res.cpu_limit_millis * CPU_PERIOD_US // 1000, "period": CPU_PERIOD_US}
        if limits:
            body["resource_limits"] = limits
        try:
            created = await self._api("post", "/containers/create", body=body)
        except ContainerNotFoundError as exc:
            raise ContainerStartError(f"creating {spec.name}: {exc}") from None
        except ContainerRuntimeError as exc:
            raise ContainerStartError(diagnose.explain(str(exc)) or f"creating {spec.name}: {exc}") from None
        return str(created["Id"])

    async def _pod_dns(self, pod_id: str) -> dict[str, Any]:
        """A container in a host-network pod gets the host's resolv.conf unless told again
        what the pod's is (Podman 4.3 does not hand it down from the infra container)."""
        pod = await self._api("get", f"/pods/{pod_id}/json", ok_missing=True) or {}
        infra = pod.get("InfraConfig") or {}
        dns = {
            "dns_server": infra.get("DNSServer"),
            "dns_search": infra.get("DNSSearch"),
            "dns_option": infra.get("DNSOption"),
        }
        return {k: v for k, v in dns.items() if v}

    async def start_container(self, id: str) -> None:
        try:
            await self._api("post", f"/containers/{id}/start")
        except ContainerNotFoundError:
            raise
        except ContainerRuntimeError as exc:
            raise ContainerStartError(diagnose.explain(str(exc)) or str(exc)) from None

    async def stop_container(self, id: str, timeout_s: int = 30) -> None:
        if timeout_s <= 0:
            await self._kill(f"/containers/{id}/kill")
        await self._api(
            "post", f"/containers/{id}/stop", {"timeout": max(timeout_s, 1)},
            ok_missing=True, timeout=REQUEST_TIMEOUT_S + timeout_s,
        )  # fmt: skip

    async def _kill(self, path: str) -> None:
        """SIGKILL, ignoring "not running" and "gone"."""
        try:
            await self._api("post", path, {"signal": "SIGKILL"}, ok_missing=True)
        except ContainerRuntimeError as exc:
            log.debug("kill {}: {}", path, exc)

    async def remove_container(self, id: str) -> None:
        self._exited.pop(id, None)
        await self._kill(f"/containers/{id}/kill")
        await self._api("delete", f"/containers/{id}", {"force": True}, ok_missing=True)

    async def _raw_containers(self, sandbox_uid: str | None) -> list[dict[str, Any]]:
        labels = [LABEL_CONTAINER_NAME] + ([f"{LABEL_POD_UID}={sandbox_uid}"] if sandbox_uid else [])
        params = {"all": True, **self._filters(*labels)}
        return [c for c in await self._api("get", "/containers/json", params) or [] if not c.get("IsInfra")]

    async def _exit_details(self, id: str) -> dict[str, Any]:
        if id not in self._exited:
            inspect = await self._api("get", f"/containers/{id}/json", ok_missing=True) or {}
            self._exited[id] = inspect.get("State") or {}
        return self._exited[id]

    async def _status(self, ctr: dict[str, Any]) -> ContainerStatus:
        labels: dict[str, str] = ctr.get("Labels") or {}
        state = _STATES.get((ctr.get("State") or "").lower(), "unknown")
        status = ContainerStatus(
            id=ctr["Id"],
            name=labels.get(LABEL_CONTAINER_NAME, ""),
            sandbox_id=ctr.get("Pod") or "",
            pod_uid=labels.get(LABEL_POD_UID, ""),
            namespace=labels.get(LABEL_POD_NAMESPACE, ""),
            pod_name=labels.get(LABEL_POD_NAME, ""),
            state=state,
            image=ctr.get("Image") or "",
            image_id=ctr.get("ImageID") or "",
            created_at=_time(ctr.get("Created")),
            started_at=_time(ctr.get("StartedAt")),
            attempt=int(labels.get(LABEL_CONTAINER_ATTEMPT, "0") or 0),
            labels=labels,
        )
        if state == "exited":
            details = await self._exit_details(status.id)
            status.exit_code = int(details.get("ExitCode", ctr.get("ExitCode") or 0))
            status.started_at = _time(details.get("StartedAt")) or status.started_at
            status.finished_at = _time(details.get("FinishedAt")) or _time(ctr.get("ExitedAt"))
            if status.started_at and status.finished_at and status.finished_at < status.started_at:
                # Podman stamps StartedAt after runc returns; a quick process may be done by then
                status.finished_at = status.started_at
            if details.get("OOMKilled") or (
                status.exit_code == 137 and await self._kernel_oom_killed(status.id)
            ):
                status.reason = "OOMKilled"
            else:
                status.reason = "Completed" if status.exit_code == 0 else "Error"
            status.message = details.get("Error") or ""
        return status

    async def _kernel_oom_killed(self, id: str) -> bool:
        """Killed by SIGKILL: was it the memory cgroup? (see ``oom``)."""
        if "oom" not in self._exited.get(id, {}):
            victims = await self._call(self._kernel_oom.victims)
            self._exited.setdefault(id, {})["oom"] = id in victims
        return bool(self._exited[id]["oom"])

    async def list_containers(self, sandbox_uid: str | None = None) -> list[ContainerStatus]:
        if sandbox_uid is not None:
            return await self._list(sandbox_uid)
        # node-wide: the last listing still holds when this runtime changed nothing since and
        # no container exited (conmon writes an exit file into the exits directory of the
        # service's tmpdir and Podman removes it once read: either moves its mtime); what
        # others do by hand (podman rm, start) shows within LISTING_REUSE_S
        exits = self._exits_mtime()
        generation, last = self._generation, self._listing
        if (
            exits is not None
            and last is not None
            and last[:2] == (generation, exits)
            and time.monotonic() - last[2] < LISTING_REUSE_S
        ):
            return list(last[3])
        began = time.monotonic()
        result = await self._list(None)
        self._listing = (generation, exits, began, result) if exits is not None else None
        return list(result)

    async def _list(self, sandbox_uid: str | None) -> list[ContainerStatus]:
        return list(await asyncio.gather(*(self._status(c) for c in await self._raw_containers(sandbox_uid))))

    def _exits_mtime(self) -> int | None:
        """The exits directory is only known for the agent's own service (``--tmpdir``)."""
        if not self.config.own_storage:
            return None
        try:
            return (self.config.podman_dir / "tmp" / "exits").stat().st_mtime_ns
        except OSError:
            return None

    async def _inspect(self, id: str) -> dict[str, Any]:
        data = await self._api("get", f"/containers/{id}/json", ok_missing=True)
        if data is None:
            raise ContainerNotFoundError(f"container {id} not found")
        return dict(data)

    async def container_logs(
        self,
        id: str,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        inspect = await self._inspect(id)
        tty = bool((inspect.get("Config") or {}).get("Tty"))
        params = {
            "stdout": True,
            "stderr": True,
            "follow": follow,
            "tail": tail if tail is not None and tail >= 0 else None,
            "since": since.isoformat() if since else None,
            "timestamps": timestamps,
        }
        try:
            stream = await streams.logs(self.socket, id, params, multiplexed=not tty)
        except streams.ServiceGoneError:
            await self._call(self._reconnect, self._client)
            stream = await streams.logs(self.socket, id, params, multiplexed=not tty)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # closes the connection now, not when collected

    async def exec(
        self, id: str, cmd: list[str], stdin: bool = False, tty: bool = False
    ) -> streams.PodmanExecSession:
        await self.connect()
        try:
            return await streams.PodmanExecSession.start(self.socket, id, cmd, stdin, tty)
        except streams.ServiceGoneError:
            await self._call(self._reconnect, self._client)
            return await streams.PodmanExecSession.start(self.socket, id, cmd, stdin, tty)

    async def attach(self, id: str, stdin: bool = False) -> streams.PodmanAttachSession:
        """``kubectl attach``: the main process' stdin/stdout/stderr (raw when it has a tty)."""
        inspect = await self._inspect(id)
        tty = bool((inspect.get("Config") or {}).get("Tty"))
        try:
            return await streams.PodmanAttachSession.start(self.socket, id, stdin, tty)
        except streams.ServiceGoneError:
            await self._call(self._reconnect, self._client)
            return await streams.PodmanAttachSession.start(self.socket, id, stdin, tty)

    async def exec_sync(self, id: str, cmd: list[str], timeout: float | None = None) -> tuple[int, bytes]:
        session = await self.exec(id, cmd)

        async def run() -> tuple[int, bytes]:
            output = bytearray()
            async for _, chunk in session.output():
                output += chunk
            return await session.wait(), bytes(output)

        try:
            return await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            await self._kill_exec(session)
            raise
        finally:
            await session.close()

    async def _kill_exec(self, session: streams.PodmanExecSession) -> None:
        """A timed-out probe must not leave its process behind (Podman 4.3 has no API to
        stop an exec session): its host PID is in the session, and the service is local."""
        try:
            pid = int((await session.inspect()).get("Pid") or 0)
            if pid > 0:
                os.kill(pid, signal.SIGKILL)
        except (ContainerRuntimeError, OSError) as exc:
            log.debug("could not kill timed-out exec {}: {}", session.exec_id, exc)

    async def stats(self, id: str) -> ContainerStats:
        data = await self._api("get", "/containers/stats", {"containers": id, "stream": False})
        if data and data.get("Error"):
            raise ContainerRuntimeError(f"stats of {id}: {data['Error']}")
        items = (data or {}).get("Stats") or []
        if not items:
            raise ContainerNotFoundError(f"no stats for container {id} (not running?)")
        item = items[0]
        return ContainerStats(
            id=item.get("ContainerID", id),
            timestamp=datetime.now(UTC),
            cpu_usage_nanos=int(item.get("CPUNano") or 0),
            memory_usage_bytes=int(item.get("MemUsage") or 0),
            memory_limit_bytes=int(item.get("MemLimit") or 0),
        )
