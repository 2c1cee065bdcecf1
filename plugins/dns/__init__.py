"""Cluster DNS (CoreDNS's kubernetes plugin): ``records`` holds the cluster zone's answers,
``server`` the UDP/TCP listener and forwarder, ``component`` the ``dns`` component that wires
them to informers and publishes ``kube-system/kube-dns``.

Options ``--cluster-dns`` and ``--cluster-domain`` are declared here for both ``kybern server``
and ``kybern agent``: kubelets read them (``Config.extra["cluster_dns"]``,
``["cluster_domain"]``) to write ClusterFirst pods' resolv.conf.
"""

from __future__ import annotations

from typing import Any

from kybern import hookimpl
from kybern.components import ComponentSpec


def _factory(ctx: Any) -> Any:
    from kybern.plugins.dns.component import DnsComponent

    return DnsComponent(ctx)


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="dns",
            factory=_factory,
            requires=("apiserver",),
            roles=frozenset({"server"}),
            order=45,
            description="Cluster DNS for cluster.local (kube-dns Service)",
        )
    ]


@hookimpl
def kybern_server_options(command: str) -> list[Any]:
    import click
    from kybern.plugins.dns.component import DEFAULT_CLUSTER_DNS, DEFAULT_CLUSTER_DOMAIN, options

    common = [
        click.Option(
            ["--cluster-dns"],
            default=None,
            metavar="IP",
            help=f"ClusterIP of the kube-dns Service, pods' nameserver [default: {DEFAULT_CLUSTER_DNS}]",
        ),
        click.Option(
            ["--cluster-domain"],
            default=None,
            metavar="DOMAIN",
            help=f"Cluster DNS domain [default: {DEFAULT_CLUSTER_DOMAIN}]",
        ),
    ]
    if command == "server":
        return common + options()
    return common
