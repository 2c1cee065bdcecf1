"""kybern's Kubernetes-compatible API server (the ``apiserver`` component).

It serves the Kubernetes REST API over the store, as kube-apiserver 1.32 does, for every kind
that plugins register through ``kybern_api_resources``; the real kubectl and the official
Python client work against it unchanged.

Where things are: ``component`` (TLS listener, PKI, tokens, kubeconfig, bootstrap objects),
``app`` (routing, authentication, Status answers), ``handlers_rest`` / ``handlers_watch`` /
``handlers_sub`` (verbs, watch streams, subresources), ``storage`` (object lifecycle over the
store), ``cache`` (the watch cache every list and watch is served from), ``bodies`` and
``protobuf`` (request decoding), ``selectors``, ``tables``, ``errors``, ``allocators``.

Pod ``log``/``exec``/``attach``/``portforward`` are served by whoever runs the pod: register an
async ``handler(request, pod, subresource) -> web.StreamResponse`` in
``RunContext.shared["apiserver.pod_connect_handlers"][subresource]`` (see ``handlers_sub``).
"""

from __future__ import annotations

from typing import Any

from kybern import hookimpl
from kybern.components import ComponentSpec, RunContext


def _factory(ctx: RunContext) -> object:
    from kybern.plugins.apiserver.component import ApiServerComponent

    return ApiServerComponent(ctx)


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="apiserver",
            factory=_factory,  # type: ignore[arg-type]
            roles=frozenset({"server"}),
            order=10,
            description="Kubernetes API server over the store",
        )
    ]


@hookimpl
def kybern_server_options(command: str) -> list[Any]:
    if command != "server":
        return []
    import click

    return [
        click.Option(
            ["--service-cidr"],
            default=None,
            metavar="CIDR",
            help="Range Service ClusterIPs come from [default: 10.43.0.0/16]",
        ),
        click.Option(
            ["--service-node-port-range"],
            default=None,
            metavar="FIRST-LAST",
            help="Range of NodePort ports [default: 30000-32767]",
        ),
    ]
