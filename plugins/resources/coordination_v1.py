"""coordination.k8s.io/v1: Lease, the kind leader election and node heartbeats use."""

from __future__ import annotations

from typing import Any

from kybern import hookimpl
from kybern.models.coordination_v1 import Lease
from kybern.plugins.resources.common import (
    AGE_COLUMN,
    JSON,
    NAME_COLUMN,
    age_of,
    json_row,
    json_validator,
    name_of,
)
from kybern.resources import FieldError, ResourceType, TableColumn
from kybern.validation import forbidden, invalid

LEASE_COLUMNS = (
    NAME_COLUMN,
    TableColumn(
        "Holder", "string", "", "holderIdentity contains the identity of the holder of a current lease."
    ),
    AGE_COLUMN,
)


def validate_lease(new: JSON, old: JSON | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    if spec.get("preferredHolder") and not spec.get("strategy"):
        errs.append(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


def lease_row(lease: JSON) -> list[Any]:
    return [name_of(lease), (lease.get("spec") or {}).get("holderIdentity") or "", age_of(lease)]


LEASES = ResourceType(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    singular="lease",
    namespaced=True,
    model=Lease,
    generation_fields=(),
    validate=json_validator(validate_lease),
    table_columns=LEASE_COLUMNS,
    table_row=json_row(lease_row),
)


@hookimpl
def kybern_api_resources() -> list[ResourceType]:
    return [LEASES]
