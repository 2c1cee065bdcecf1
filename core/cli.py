"""The ``kybern`` command line.

Errors a user can cause end in one line on stderr and a non-zero exit, never a traceback:
every expected failure is raised as one of ``USER_ERRORS`` and turned into a message here.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kybern import KUBERNETES_VERSION, __version__, logs
from kybern.components import KNOWN_COMPONENTS, ConfigurationError
from kybern.config import Config, default_data_dir, default_node_name
from kybern.pluginmanager import LoadedPlugins, PluginLoadError, load_plugins
from kybern.store import StoreUnavailableError
from loguru import logger

USER_ERRORS: tuple[type[Exception], ...] = (ConfigurationError, StoreUnavailableError, PluginLoadError)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"kybern: error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Adds plugin sub-commands lazily and turns user errors into one-line messages."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        obj = ctx.ensure_object(dict)
        if "plugin_commands" not in obj:
            cmds: dict[str, click.Command] = {}
            for batch in _loaded(ctx).manager.hook.kybern_cli_commands():
                for cmd in batch or []:
                    cmds.setdefault(cmd.name or "", cmd)
            obj["plugin_commands"] = cmds
        return obj["plugin_commands"]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugin_commands(ctx).get(name)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Usage errors end in one line too (click would print usage, a hint and the error)."""
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "kybern"
            fail(f"{exc.format_message()} (see `{where} --help`)", 2)
        except click.Abort:
            sys.exit(130)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            sys.exit(130)


def _loaded(ctx: click.Context) -> LoadedPlugins:
    obj = ctx.ensure_object(dict)
    if "loaded" not in obj:
        obj["loaded"] = load_plugins()
    return obj["loaded"]


def _plugin_options(command: str) -> list[click.Option]:
    """Options plugins add to `server`/`agent` (hook kybern_server_options)."""
    try:
        loaded = load_plugins()
    except Exception:  # never break --help because of a plugin
        return []
    options: list[click.Option] = []
    for batch in loaded.manager.hook.kybern_server_options(command=command):
        options.extend(batch or [])
    return options


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]))
@click.version_option(__version__, prog_name="kybern")
@click.pass_context
def main(ctx: click.Context, log_level: str, log_format: str) -> None:
    """kybern: a Kubernetes-style orchestrator you can read and extend."""
    logs.setup(log_level, log_format)
    ctx.ensure_object(dict).update(log_level=log_level, log_format=log_format)


def _common_config(ctx: click.Context, **kw: Any) -> Config:
    obj = ctx.ensure_object(dict)
    return Config(log_level=obj.get("log_level", "INFO"), log_format=obj.get("log_format", "text"), **kw)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop by default: the server's request path is mostly event-loop and TLS work, and
    uvloop spends 10-20% less CPU on it. ``KYBERN_EVENT_LOOP=asyncio`` keeps the stdlib loop
    (to rule the loop out when chasing a bug)."""
    choice = os.environ.get("KYBERN_EVENT_LOOP", "uvloop")
    if choice == "asyncio":
        return None
    if choice != "uvloop":
        fail(f"KYBERN_EVENT_LOOP must be uvloop or asyncio, not {choice!r}")
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(config: Config, loaded: LoadedPlugins, ctx: Any = None, **run_options: Any) -> None:
    """``run_options`` go to :func:`kybern.runner.run` (specs, component processes)."""
    from kybern import runner

    # A server holds tens of thousands of long-lived objects (watch caches, informers); with
    # the default generation-0 threshold (700) the collector rescans them every few hundred
    # requests, ~12% of the CPU in the scheduler benchmark's profile.
    gc.set_threshold(50_000, 50, 100)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as loop_runner:
            loop_runner.run(runner.run(config, loaded.manager, ctx, **run_options))
    except USER_ERRORS as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.strerror or exc} (is another kybern already running?)")


class _PluginOptionsCommand(click.Command):
    """A command whose option list includes options contributed by plugins."""

    def __init__(self, *args: Any, plugin_command: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_command = plugin_command
        self._extended = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._extended:
            self._extended = True
            known = {p.name for p in self.params}
            self.params.extend(o for o in _plugin_options(self._plugin_command) if o.name not in known)
        return super().get_params(ctx)


def _extra(kwargs: dict[str, Any], own: set[str]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in own}


def _given_options(ctx: click.Context, own: set[str]) -> list[str]:
    """The plugin options of this command line, to give a component process too (it takes
    the same plugin options as ``server``)."""
    args: list[str] = []
    for param in ctx.command.get_params(ctx):
        name = param.name
        if not isinstance(param, click.Option) or name is None or name in own or name == "help":
            continue
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        value = ctx.params[name]
        if param.is_flag:
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
            continue
        for item in value if param.multiple else (value,):
            args += [flag, str(item)]
    return args


#: components `kybern server` runs as child processes unless --component-process says otherwise
#: (each then has its own interpreter lock instead of sharing the API server's): the scheduler,
#: as kube-scheduler is its own process, since a burst of pods otherwise has it and the API
#: server take turns on one core (the scheduler benchmark's server CPU per pod fell by a
#: quarter, its create-to-bound p50 from 28-39 s to 1-3 s)
DEFAULT_COMPONENT_PROCESSES: tuple[str, ...] = ("scheduler",)


SERVER_OWN = {
    "data_dir",
    "bind_address",
    "https_listen_port",
    "write_kubeconfig",
    "datastore_endpoint",
    "disable",
    "disable_agent",
    "node_name",
    "component_process",
}


@main.command(cls=_PluginOptionsCommand, plugin_command="server")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="State directory [default: /var/lib/kybern as root, else ~/.local/share/kybern]",
)
@click.option(
    "--bind-address",
    default="0.0.0.0",
    show_default=True,
    help="Address the API server listens on (as k3s: every interface)",
)
@click.option("--https-listen-port", type=click.IntRange(1, 65535), default=6443, show_default=True)
@click.option(
    "--write-kubeconfig",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the admin kubeconfig here [default: DATA_DIR/kubeconfig.yaml]",
)
@click.option(
    "--datastore-endpoint",
    default=None,
    metavar="URL",
    help="postgresql://user:pass@host/db (default: SQLite in DATA_DIR/db)",
)
@click.option(
    "--disable",
    multiple=True,
    metavar="NAME",
    help=f"Do not run a component: {', '.join(KNOWN_COMPONENTS)}, or a single controller",
)
@click.option("--disable-agent", is_flag=True, help="Run only the control plane, no node agent")
@click.option("--node-name", default=None, help="Name of this machine's node [default: hostname]")
@click.option(
    "--component-process",
    multiple=True,
    metavar="NAME",
    default=DEFAULT_COMPONENT_PROCESSES,
    help="Run this component (scheduler, controller-manager) as a `kybern component` child process, "
    "restarted when it dies; `none`: all in this process [default: scheduler]",
)
@click.pass_context
def server(ctx: click.Context, **kwargs: Any) -> None:
    """Run the control plane (and this machine's node agent) in one process (and its children)."""
    config = _common_config(
        ctx,
        data_dir=kwargs["data_dir"] or default_data_dir(),
        bind_address=kwargs["bind_address"],
        https_port=kwargs["https_listen_port"],
        kubeconfig_path=kwargs["write_kubeconfig"],
        datastore_endpoint=kwargs["datastore_endpoint"],
        disabled=frozenset(kwargs["disable"]),
        run_agent=not kwargs["disable_agent"],
        node_name=kwargs["node_name"] or default_node_name(),
        role="server",
        extra=_extra(kwargs, SERVER_OWN),
    )
    _prepare_data_dir(config.data_dir)
    processes = [n for n in kwargs["component_process"] if n != "none"]
    if "none" in kwargs["component_process"]:
        processes = []
    if ctx.get_parameter_source("component_process") is click.core.ParameterSource.DEFAULT:
        from kybern.runner import collect_components

        # the defaults apply to the components installed (a build without the scheduler plugin)
        offered = {spec.name for spec in collect_components(_loaded(ctx).manager)}
        processes = [n for n in processes if n in offered]
    child_args = [a for name in sorted(config.disabled) for a in ("--disable", name)]
    child_args += _given_options(ctx, SERVER_OWN)
    _run(config, _loaded(ctx), component_processes=processes, component_args=child_args)


COMPONENT_OWN = {"names", "kubeconfig", "data_dir", "server_url", "disable", "supervisor_fd"}


@main.command(cls=_PluginOptionsCommand, plugin_command="server")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The API server, CA and bearer token to use (its current context)",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Instead: the data dir of a `kybern server` on this machine (its Unix socket and admin token)",
)
@click.option("--server", "server_url", default=None, metavar="URL", help="API server URL (overrides)")
@click.option("--disable", multiple=True, metavar="NAME", help="A controller to skip")
@click.option("--supervisor-fd", type=int, default=None, hidden=True)
@click.pass_context
def component(ctx: click.Context, **kwargs: Any) -> None:
    """Run control-plane components (scheduler, controller-manager) in their own process, against
    an API server, as kube-scheduler and kube-controller-manager run with --kubeconfig."""
    from kybern import runner, subprocesses
    from kybern.components import ComponentSpec, RunContext, select_named

    loaded = _loaded(ctx)
    specs = select_named(runner.collect_components(loaded.manager), kwargs["names"])
    kubeconfig, data_dir = kwargs["kubeconfig"], kwargs["data_dir"]
    if kubeconfig and data_dir:
        fail("pass --kubeconfig or --data-dir, not both")
    if kubeconfig:
        connection = subprocesses.connection_from_kubeconfig(kubeconfig, kwargs["server_url"])
    elif data_dir:
        connection = subprocesses.connection_from_data_dir(data_dir, kwargs["server_url"])
    else:
        fail("no kubeconfig: pass --kubeconfig FILE (or --data-dir DIR of a kybern server on this machine)")
    config = _common_config(
        ctx,
        data_dir=data_dir or default_data_dir(),
        disabled=frozenset(kwargs["disable"]),
        run_agent=False,
        role="server",
        extra=_extra(kwargs, COMPONENT_OWN),
    )
    run_ctx = RunContext(config=config, plugins=loaded.manager)
    connection.publish(run_ctx)
    fd = kwargs["supervisor_fd"]
    if fd is not None:  # started by `kybern server --component-process`: last to start, first to stop
        # its lines go to the server's log stream: say which process wrote them
        tag = f"[{'+'.join(s.name for s in specs)} {os.getpid()}]"
        logger.configure(patcher=lambda r: r["extra"].update(component=f"{r['extra']['component']} {tag}"))
        link = ComponentSpec("supervisor-link", lambda c: subprocesses.SupervisorLink(c, fd), order=10_000)
        specs.append(link)
    _run(config, loaded, run_ctx, specs=specs)


@main.command(cls=_PluginOptionsCommand, plugin_command="agent")
@click.option("--server", "server_url", required=True, metavar="URL", help="https://HOST:6443 of the server")
@click.option(
    "--token",
    required=True,
    envvar="KYBERN_TOKEN",
    help="Node join token (DATA_DIR/node-token on the server)",
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--node-name", default=None, help="Name of this node [default: hostname]")
@click.pass_context
def agent(ctx: click.Context, **kwargs: Any) -> None:
    """Run a node agent that joins a running server."""
    config = _common_config(
        ctx,
        data_dir=kwargs["data_dir"] or default_data_dir() / "agent",
        node_name=kwargs["node_name"] or default_node_name(),
        server_url=kwargs["server_url"],
        token=kwargs["token"],
        role="agent",
        extra=_extra(kwargs, {"server_url", "token", "data_dir", "node_name"}),
    )
    _prepare_data_dir(config.data_dir)
    _run(config, _loaded(ctx))


def _prepare_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        fail(f"cannot use data dir {path}: {exc.strerror} (pass --data-dir to choose another)")


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
@click.pass_context
def plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, their distributions and the hooks they implement."""
    loaded = _loaded(ctx)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": p.name,
                            "distribution": p.distribution,
                            "version": p.version,
                            "module": p.module,
                            "hooks": list(p.hooks),
                        }
                        for p in loaded.plugins
                    ],
                    "errors": [
                        {"name": e.name, "distribution": e.distribution, "error": e.error}
                        for e in loaded.problems
                    ],
                },
                indent=2,
            )
        )
        return
    width = max([len(p.name) for p in loaded.plugins] + [4])
    for p in loaded.plugins:
        click.echo(f"{p.name:<{width}}  {p.distribution} {p.version}  {', '.join(p.hooks)}")
    for e in loaded.problems:
        click.echo(f"{e.name:<{width}}  {e.distribution}  ERROR: {e.error}")


@main.command()
def version() -> None:
    """Print kybern's version and the Kubernetes API version it serves."""
    click.echo(f"kybern {__version__} (Kubernetes API {KUBERNETES_VERSION})")


#: kubectl invocations that need no cluster (so no kubeconfig)
CLIENT_ONLY_ARGS = frozenset({"--client", "--help", "-h", "help", "completion", "options", "plugin"})


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(data_dir: Path | None, args: tuple[str, ...]) -> None:
    """Run the installed kubectl against this cluster (its admin kubeconfig)."""
    binary = shutil.which("kubectl")
    if binary is None:
        fail("kubectl is not installed (apt-get install kubectl, or put it on PATH)")
    kubeconfig = (data_dir or default_data_dir()) / "kubeconfig.yaml"
    if kubeconfig.exists():
        os.environ["KUBECONFIG"] = str(kubeconfig)
    elif not set(args) & CLIENT_ONLY_ARGS:
        fail(f"no kubeconfig at {kubeconfig}: start `kybern server` first (or pass --data-dir)")
    logger.remove()
    os.execv(binary, [binary, *args])  # type: ignore[arg-type]


if __name__ == "__main__":  # `python -m kybern.cli`: how a server starts its component processes
    main(prog_name="kybern")
