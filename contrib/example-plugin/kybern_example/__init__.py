"""An example kybern plugin: one CLI command and one mutating admission hook.

kybern loads this module through the ``example`` entry point in the ``kybern.plugins``
group (see pyproject.toml) and registers every ``@hookimpl`` function in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from kybern import hookimpl

if TYPE_CHECKING:
    from kybern.hooktypes import AdmissionRequest

#: the label this plugin puts on every ConfigMap created through the API
SEEN_LABEL = "example.kybern.io/seen"


@click.command()
@click.option("--name", default="world", show_default=True, help="Who to greet")
def hello(name: str) -> None:
    """Print a greeting (added by the kybern-example-plugin package)."""
    click.echo(f"Hello, {name}! (from the kybern example plugin)")


@hookimpl
def kybern_cli_commands() -> list[click.Command]:
    return [hello]


@hookimpl
def kybern_admission_mutate(request: AdmissionRequest) -> None:
    """Mark created ConfigMaps, to show a plugin changing objects before they are stored."""
    if request.operation != "CREATE" or request.object is None:
        return
    if request.resource.group != "" or request.resource.kind != "ConfigMap":
        return
    metadata = request.object.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    labels[SEEN_LABEL] = "true"
    metadata["labels"] = labels
