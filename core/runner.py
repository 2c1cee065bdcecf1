"""Runs the components of one process (``kybern server`` or ``kybern agent``) until a signal.

Start order comes from each ComponentSpec's ``order``; stop is the reverse. A component
that fails to start stops the ones already running and ends the process with its message.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Collection, Sequence
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from kybern.client import ApiClient, HttpApiClient
from kybern.components import (
    Component,
    ComponentSpec,
    ConfigurationError,
    RunContext,
    select_components,
    select_named,
)
from kybern.store import Store, StoreUnavailableError
from kybern.subprocesses import ComponentProcess
from loguru import logger

if TYPE_CHECKING:
    import pluggy
    from kybern.config import Config

log = logger.bind(component="runner")


def collect_components(pm: pluggy.PluginManager) -> list[ComponentSpec]:
    specs: list[ComponentSpec] = []
    seen: dict[str, ComponentSpec] = {}
    for batch in pm.hook.kybern_components():
        for spec in batch or []:
            if spec.name in seen:
                raise ConfigurationError(f"two plugins provide component {spec.name!r}")
            seen[spec.name] = spec
            specs.append(spec)
    return specs


def collect_controller_names(pm: pluggy.PluginManager) -> list[str]:
    """Names of the single controllers plugins offer (valid ``--disable`` values)."""
    return [spec.name for batch in pm.hook.kybern_controllers() for spec in batch or []]


def open_store(pm: pluggy.PluginManager, config: Config) -> Store:
    url = config.datastore_url()
    if url.startswith("sqlite:///"):
        (config.data_dir / "db").mkdir(parents=True, exist_ok=True)
    store = pm.hook.kybern_open_store(url=url, data_dir=config.data_dir)
    if store is None:
        scheme = url.split(":", 1)[0]
        raise StoreUnavailableError(
            f"no storage plugin handles {scheme!r} URLs (is kybern's sqlstore plugin installed?)"
        )
    return store


async def _wait_for_signal(ctx: RunContext) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, ctx.stopping.set)
    await ctx.stopping.wait()


def api_factory(ctx: RunContext) -> Callable[[], ApiClient]:
    """How components reach the API: the in-process API server's address once it published
    it (server, through its local Unix socket when it has one), or the joined server's
    (agent). Each call makes a new client."""

    def make(user_agent: str = "kybern") -> ApiClient:
        shared, config = ctx.shared, ctx.config
        url = shared.get("api_url") or config.server_url
        if not url:
            raise ConfigurationError("no API server to talk to: the apiserver component is disabled")
        token = shared.get("admin_token") or config.token
        ca_file = shared.get("ca_file")
        if ca_file is None and config.role == "agent":
            # the server's CA an agent fetched and checked against its K10 join token
            joined = config.data_dir / "tls" / "server-ca.crt"
            ca_file = str(joined) if joined.exists() else None
        # the in-process API server's Unix socket: same API and auth, no TCP/TLS on this loop
        local = shared.get("api_socket") if shared.get("api_url") else None
        return HttpApiClient(url, token, ca_file, user_agent=user_agent, unix_socket=local)

    return make


def in_child_processes(
    specs: list[ComponentSpec], all_specs: list[ComponentSpec], names: Collection[str], args: Sequence[str]
) -> list[ComponentSpec]:
    """``specs`` with each of ``names`` run by a ComponentProcess (same start order, so the
    child starts once the API server serves). A name that is disabled here is skipped; one
    that cannot run in a child (unknown, apiserver, node component) is an error."""
    select_named(all_specs, names)
    names = set(names)
    return [
        replace(s, factory=partial(ComponentProcess, name=s.name, args=args)) if s.name in names else s
        for s in specs
    ]


async def run(
    config: Config,
    pm: pluggy.PluginManager,
    ctx: RunContext | None = None,
    *,
    specs: list[ComponentSpec] | None = None,
    component_processes: Collection[str] = (),
    component_args: Sequence[str] = (),
) -> None:
    """Start the chosen components, wait for SIGINT/SIGTERM (or ``ctx.stopping``), stop them.

    ``specs`` (``kybern component``) replaces the choice by role and ``--disable``, and no
    store is opened; ``component_processes`` run as ``kybern component NAME ...
    component_args`` children of this process instead of in it.
    """
    by_role = specs is None
    if specs is None:
        available = collect_components(pm)
        specs = select_components(
            available,
            config.role,
            config.disabled,
            config.run_agent,
            controllers=collect_controller_names(pm),
        )
        if component_processes:
            specs = in_child_processes(specs, available, component_processes, component_args)
    if ctx is None:
        ctx = RunContext(config=config, plugins=pm)
    if ctx.api is None:
        ctx.api = api_factory(ctx)
    if config.role == "server" and by_role and ctx.store is None:
        ctx.store = await asyncio.to_thread(open_store, pm, config)
    started: list[tuple[ComponentSpec, Component]] = []
    try:
        for spec in specs:
            log.info("starting {}", spec.name)
            component = spec.factory(ctx)
            started.append((spec, component))
            await component.start()
            # who runs here, for health reports (the API server's componentstatuses); a
            # ComponentProcess reports its child itself
            if not getattr(component, "reports_running", False):
                ctx.shared.setdefault("running_components", set()).add(spec.name)
        log.info("running: {}", ", ".join(s.name for s in specs) or "nothing")
        await _wait_for_signal(ctx)
    finally:
        ctx.stopping.set()
        for spec, component in reversed(started):
            ctx.shared.get("running_components", set()).discard(spec.name)
            try:
                await component.stop()
            except Exception as exc:
                log.warning("stopping {} failed: {}", spec.name, exc)
        if ctx.store is not None:
            ctx.store.close()
