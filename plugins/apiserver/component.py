"""The ``apiserver`` component: TLS listener, PKI, tokens, kubeconfig, built-in namespaces.

Start order 10: it owns the store and must serve before any component that talks to the API.
What others need from it is published in ``RunContext.shared``: ``api_url``, ``ca_file``,
``admin_token``, ``api_socket`` (a Unix socket serving the same API without TLS, for
components in this process) and ``apiserver.pod_connect_handlers`` (see :mod:`handlers_sub`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from kybern.components import ConfigurationError, RunContext
from kybern.plugins.apiserver import errors
from kybern.plugins.apiserver.allocators import (
    DEFAULT_NODE_PORT_RANGE,
    DEFAULT_SERVICE_CIDR,
    ServiceAllocator,
)
from kybern.plugins.apiserver.app import ApiServer
from kybern.plugins.apiserver.registry import collect_resource_types
from loguru import logger

log = logger.bind(component="apiserver")

#: the local listener's socket file in the data dir (published as RunContext.shared["api_socket"])
LOCAL_SOCKET = "apiserver.sock"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _node_ips() -> list[str]:
    ips: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    except OSError:
        pass
    try:  # the address used for the default route, without sending anything
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ips.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(ips)


def _advertise_ip() -> str:
    """The address pods reach this machine by: the default-route one, else loopback."""
    for ip in _node_ips():
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if addr.version == 4 and not addr.is_loopback:
            return ip
    return "127.0.0.1"


def _is_specific(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not ip.is_unspecified


class ApiServerComponent:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.server: ApiServer | None = None
        self.runner: web.ServerRunner | None = None
        self.socket_path: Path | None = None

    async def start(self) -> None:
        from kybern.plugins.apiserver.auth import ensure_tokens, write_kubeconfig
        from kybern.plugins.apiserver.pki import ensure_pki

        config = self.ctx.config
        if self.ctx.store is None:
            raise ConfigurationError("the apiserver needs the store (it runs only in `kybern server`)")
        data_dir = Path(config.data_dir)
        hosts = [config.bind_address, socket.gethostname(), config.node_name, *_node_ips()]
        hosts = [h for h in dict.fromkeys(hosts) if h and h not in ("0.0.0.0", "::")]
        pki = await asyncio.to_thread(ensure_pki, data_dir, hosts)
        tokens = await asyncio.to_thread(ensure_tokens, data_dir)
        types = collect_resource_types(self.ctx.plugins)
        host = config.bind_address if _is_specific(config.bind_address) else "127.0.0.1"
        url_host = f"[{host}]" if ":" in host else host
        api_url = f"https://{url_host}:{config.https_port}"
        self.server = srv = ApiServer(
            self.ctx.store,
            types,
            self.ctx.plugins,
            tokens,
            self.ctx.shared,
            server_address=f"{url_host}:{config.https_port}",
        )
        try:
            srv.storage.allocator = ServiceAllocator(
                config.extra.get("service_cidr") or DEFAULT_SERVICE_CIDR,
                config.extra.get("service_node_port_range") or DEFAULT_NODE_PORT_RANGE,
            )
        except ValueError as exc:
            raise ConfigurationError(f"--service-cidr/--service-node-port-range: {exc}") from None
        await srv.cache.start()
        await self._ensure_namespaces(srv)
        await self._ensure_kubernetes_service(
            srv, host if host != "127.0.0.1" else _advertise_ip(), config.https_port
        )
        srv.ca_pem = pki.ca_pem()
        from kybern.plugins.apiserver.satokens import TokenSigner, ensure_signing_key

        srv.token_signer = TokenSigner(await asyncio.to_thread(ensure_signing_key, data_dir))
        self.runner = web.ServerRunner(srv.make_server(), handle_signals=False, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            config.bind_address,
            config.https_port,
            ssl_context=pki.server_ssl_context(),
            backlog=1024,
        )
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            srv.cache.stop()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {config.https_port} is in use: another program listens on "
                    f"{config.bind_address}:{config.https_port} (choose another with --https-listen-port)"
                ) from None
            raise ConfigurationError(
                f"cannot listen on {config.bind_address}:{config.https_port}: {exc.strerror or exc}"
            ) from None
        await asyncio.to_thread(write_kubeconfig, config.kubeconfig, api_url, pki.ca_pem(), tokens.admin)
        local = await self._serve_local(data_dir / LOCAL_SOCKET)
        if local is not None:
            self.ctx.shared["api_socket"] = local
        self.ctx.shared["api_url"] = api_url
        self.ctx.shared["ca_file"] = str(pki.ca_cert)
        self.ctx.shared["admin_token"] = tokens.admin
        srv.ready = True
        log.info("serving the Kubernetes API on {} ({} kinds)", api_url, len(types))

    async def _serve_local(self, path: Path) -> str | None:
        """The same app on a Unix socket, plain HTTP: components in this process (scheduler,
        controllers, kubelet) skip TCP and TLS. Only root (the socket's owner) may connect;
        requests still carry the bearer token and pass the same auth, admission and validation."""
        assert self.runner is not None
        if len(str(path).encode()) >= 104:  # sun_path limit: the TCP listener serves them instead
            log.debug("no local API socket: {} is too long a path", path)
            return None
        try:
            path.unlink(missing_ok=True)
            old_umask = os.umask(0o077)
            try:
                site = web.UnixSite(self.runner, str(path))
                await site.start()
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
        except OSError as exc:
            log.warning("no local API socket at {}: {}", path, exc)
            return None
        self.socket_path = path
        return str(path)

    async def _ensure_namespaces(self, srv: ApiServer) -> None:
        rt = srv.registry.namespace_type()
        if rt is None:
            return
        from kybern.plugins.apiserver.storage import WriteOptions

        for name in SYSTEM_NAMESPACES:
            if await srv.storage.get_or_none(rt, None, name) is not None:
                continue
            obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            try:
                await srv.storage.create(rt, None, obj, WriteOptions(manager="kybern", user="system"))
            except errors.ApiStatusError as exc:
                if exc.code != 409:
                    raise

    async def _ensure_kubernetes_service(self, srv: ApiServer, ip: str, port: int) -> None:
        """``default/kubernetes`` and its Endpoints: how pods find the API server (kube's bootstrap)."""
        svc_rt = srv.registry.lookup("", "v1", "services")
        ep_rt = srv.registry.lookup("", "v1", "endpoints")
        allocator = srv.storage.allocator
        if svc_rt is None or allocator is None:
            return
        from kybern.plugins.apiserver.storage import WriteOptions

        opts = WriteOptions(manager="kube-apiserver", user="system")
        labels = {"component": "apiserver", "provider": "kubernetes"}
        if await srv.storage.get_or_none(svc_rt, "default", "kubernetes") is None:
            svc = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": allocator.kubernetes_ip,
                    "sessionAffinity": "None",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                },
            }
            try:
                await srv.storage.create(svc_rt, "default", svc, opts)
            except errors.ApiStatusError as exc:
                log.warning("cannot create the kubernetes Service: {}", exc.message)
        if ep_rt is None:
            return
        subsets = [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        current = await srv.storage.get_or_none(ep_rt, "default", "kubernetes")
        try:
            if current is None:
                ep = {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
                    "subsets": subsets,
                }
                await srv.storage.create(ep_rt, "default", ep, opts)
            elif current.get("subsets") != subsets:

                def put(obj: dict[str, Any]) -> dict[str, Any]:
                    obj["subsets"] = subsets
                    return obj

                await srv.storage.update(ep_rt, "default", "kubernetes", put, opts)
        except errors.ApiStatusError as exc:
            log.warning("cannot write the kubernetes Endpoints: {}", exc.message)

    async def stop(self) -> None:
        srv = self.server
        if srv is not None:
            srv.ready = False
            srv.stopping.set()
            srv.cache.stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.socket_path is not None:
            self.ctx.shared.pop("api_socket", None)
            self.socket_path.unlink(missing_ok=True)
            self.socket_path = None
        if srv is not None:
            srv.executor.shutdown(wait=False, cancel_futures=True)
