"""Service address and port allocation made binding across API servers and restarts.

The API server chooses ClusterIPs and NodePorts (``--service-cidr``,
``--service-node-port-range``, the ``default/kubernetes`` Service at the range's first
address); this plugin records each chosen value as a key of the store during admission
(``reservations``), so two API servers on one database can never hand out the same address
or port, and keeps those keys in step with the Services (``keeper``: release on delete, repair
pass). A conflict is refused with kube-apiserver's message.
"""

from __future__ import annotations

from typing import Any

from kybern import hookimpl
from kybern.components import ComponentSpec
from kybern.hooktypes import AdmissionRequest
from kybern.resources import FieldError


def _factory(ctx: Any) -> Any:
    from kybern.plugins.services.keeper import ReservationKeeper

    return ReservationKeeper(ctx)


@hookimpl
def kybern_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            name="service-allocation",
            factory=_factory,
            roles=frozenset({"server"}),
            order=5,  # before the API server creates default/kubernetes
            needs_store=True,
            description="ClusterIP/NodePort reservations in the store (atomic across API servers)",
        )
    ]


@hookimpl
def kybern_admission_validate(request: AdmissionRequest) -> list[FieldError] | None:
    rt = request.resource
    if rt.kind != "Service" or rt.group or request.subresource or request.dry_run:
        return None
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return None
    from kybern.plugins.services import keeper
    from kybern.plugins.services.reservations import owner_of, used_by

    reservations = keeper.current
    if reservations is None:
        return None
    ips, ports = used_by(request.object)
    if request.old_object is not None:
        old_ips, old_ports = used_by(request.old_object)
        ips, ports = ips - old_ips, ports - old_ports
    if not ips and not ports:
        return None
    conflicts = reservations.reserve(owner_of(request.namespace, request.name), ips, ports)
    errs = []
    for c in conflicts:
        if c.kind == "ip":
            errs.append(
                FieldError(
                    "FieldValueInvalid",
                    "spec.clusterIPs",
                    f"failed to allocate IP {c.value}: provided IP is already allocated",
                    [c.value],
                )
            )
        else:
            index = next(
                i
                for i, p in enumerate((request.object.get("spec") or {}).get("ports") or [])
                if isinstance(p, dict) and p.get("nodePort") and int(p["nodePort"]) == c.value
            )
            errs.append(
                FieldError(
                    "FieldValueInvalid",
                    f"spec.ports[{index}].nodePort",
                    "provided port is already allocated",
                    c.value,
                )
            )
    return errs or None
