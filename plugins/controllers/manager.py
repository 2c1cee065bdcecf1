"""The ``controller-manager`` component: leader election, shared informers, the controllers.

Like kube-controller-manager, one Lease (``kube-system/kube-controller-manager``) elects the
process that runs all controllers; the others wait as hot standbys. Losing the Lease stops the
controllers and drops their caches (they are rebuilt on the next win), which is what keeps two
managers from ever acting on the same object with different views.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import click
from kybern import hookimpl
from kybern.components import ComponentSpec, ConfigurationError, RunContext
from kybern.controllers import Controller, ControllerContext, ControllerSpec
from kybern.events import EventRecorder
from kybern.informers import SharedInformer, SharedInformerFactory
from kybern.leaderelection import LeaderElector, unique_identity
from loguru import logger

log = logger.bind(component="controller-manager")

LEASE_NAME = "kube-controller-manager"
LEASE_NAMESPACE = "kube-system"
USER_AGENT = "kube-controller-manager"
#: informers deliver every object again this often, so controllers retry what events missed
RESYNC_PERIOD = 30.0


def collect_controllers(ctx: RunContext) -> list[ControllerSpec]:
    specs: dict[str, ControllerSpec] = {}
    for batch in ctx.plugins.hook.kybern_controllers():
        for spec in batch or []:
            if spec.name in specs:
                raise ConfigurationError(f"two plugins provide controller {spec.name!r}")
            specs[spec.name] = spec
    return sorted(specs.values(), key=lambda s: s.name)


def _seconds(option: str, value: Any, default: float) -> float:
    """kube's duration flags ("15s", "1m") or plain seconds."""
    if value is None:
        return default
    text = str(value).strip()
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif text.endswith("s"):
        text = text[:-1]
    elif text.endswith("m"):
        text, scale = text[:-1], 60.0
    try:
        seconds = float(text) * scale
    except ValueError:
        raise ConfigurationError(f"--{option}: {value!r} is not a duration (like 15s)") from None
    if seconds <= 0:
        raise ConfigurationError(f"--{option}: must be positive, not {value!r}")
    return seconds


class ControllerManager:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        extra = ctx.config.extra
        self.lease_duration = _seconds(
            "leader-elect-lease-duration", extra.get("leader_elect_lease_duration"), 15
        )
        self.renew_deadline = _seconds(
            "leader-elect-renew-deadline", extra.get("leader_elect_renew_deadline"), 10
        )
        self.retry_period = _seconds("leader-elect-retry-period", extra.get("leader_elect_retry_period"), 2)
        if not self.lease_duration > self.renew_deadline > self.retry_period:
            raise ConfigurationError(
                "leader election needs --leader-elect-lease-duration > --leader-elect-renew-deadline"
                " > --leader-elect-retry-period"
            )
        disabled = set(ctx.config.disabled)
        self.specs = [s for s in collect_controllers(ctx) if s.name not in disabled]
        self.client: Any = None
        self.elector: LeaderElector | None = None
        self._task: asyncio.Task[None] | None = None
        #: names of the controllers running right now (while leading)
        self.running: list[str] = []

    async def start(self) -> None:
        if self.ctx.api is None:
            raise ConfigurationError("the controller manager needs an API server")
        self.client = self.ctx.api(USER_AGENT)
        self.elector = LeaderElector(
            self.client,
            LEASE_NAME,
            LEASE_NAMESPACE,
            identity=unique_identity(socket.gethostname()),
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
            on_started_leading=self._lead,
        )
        log.info("controllers: {}", ", ".join(s.name for s in self.specs) or "none")
        self._task = asyncio.create_task(self.elector.run(), name="controller-manager")

    async def _lead(self) -> None:
        informers = SharedInformerFactory(self.client, resync_period=RESYNC_PERIOD)
        recorders: dict[str, EventRecorder] = {}

        def recorder(component: str) -> EventRecorder:
            if component not in recorders:
                recorders[component] = EventRecorder(self.client, component, socket.gethostname())
            return recorders[component]

        cctx = ControllerContext(
            client=self.client,
            informers=informers,
            recorder=recorder,
            config=self.ctx.config,
            shared=self.ctx.shared,
        )
        controllers: list[tuple[ControllerSpec, Controller, list[SharedInformer]]] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for spec in self.specs:
                try:
                    with informers.track() as used:
                        controller = spec.factory(cctx)
                    controllers.append((spec, controller, used))
                except Exception:
                    log.exception("controller {} failed to start", spec.name)
            informers.start()
            for spec, controller, used in controllers:
                tasks.append(
                    asyncio.create_task(self._run_one(spec, controller, used), name=f"controller {spec.name}")
                )
            self.running = [spec.name for spec, _, _ in controllers]
            if not tasks:  # everything disabled: keep the lease quietly
                await asyncio.Event().wait()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for (spec, _, _), result in zip(controllers, results, strict=False):
                if isinstance(result, Exception):
                    log.opt(exception=result).error("controller {} failed", spec.name)
        finally:
            self.running = []
            for _, controller, _ in controllers:
                with contextlib.suppress(Exception):
                    await controller.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await informers.stop()
            for rec in recorders.values():
                await rec.close()

    @staticmethod
    async def _run_one(spec: ControllerSpec, controller: Controller, used: list[SharedInformer]) -> None:
        """Run one controller once its own informers have synced: acting on a half-filled
        cache (no pods seen yet) would create pods that exist. A resource that never syncs
        (not served) holds back only the controllers that use it."""
        while not all(await asyncio.gather(*(i.wait_for_sync(30) for i in used))):
            waiting = ", ".join(i.resource for i in used if not i.has_synced)
            log.warning("controller {} still waits for its caches: {}", spec.name, waiting)
        log.info("started controller {}", spec.name)
        await controller.run(spec.workers)

    async def stop(self) -> None:
        if self.elector is not None:
            self.elector.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception as exc:
                log.warning("controller manager ended with {!r}", exc)
        if self.client is not None:
            await self.client.close()


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="controller-manager",
            factory=ControllerManager,  # type: ignore[arg-type]
            roles=frozenset({"server"}),
            order=40,
            description="runs the controllers (ReplicaSet, Deployment, ...) under leader election",
        )
    ]


@hookimpl
def kybern_server_options(command: str) -> list[click.Option]:
    if command != "server":
        return []
    return [
        click.Option(
            ["--leader-elect-lease-duration"],
            default="15s",
            show_default=True,
            help="How long a controller-manager Lease holds without renewal",
        ),
        click.Option(
            ["--leader-elect-renew-deadline"],
            default="10s",
            show_default=True,
            help="The leader gives up when it could not renew for this long",
        ),
        click.Option(
            ["--leader-elect-retry-period"],
            default="2s",
            show_default=True,
            help="How often candidates try to take, and the leader to renew, the Lease",
        ),
    ]
