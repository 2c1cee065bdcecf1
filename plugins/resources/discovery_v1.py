"""discovery.k8s.io/v1: EndpointSlice, the scalable successor of Endpoints."""

from __future__ import annotations

import ipaddress
from typing import Any

from kybern import hookimpl
from kybern.models.discovery_v1 import EndpointSlice
from kybern.plugins.resources.common import (
    AGE_COLUMN,
    JSON,
    NAME_COLUMN,
    age_of,
    json_defaulter,
    json_row,
    json_validator,
    name_of,
)
from kybern.resources import FieldError, ResourceType, TableColumn
from kybern.validation import (
    duplicate,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_port_num,
    not_supported,
    required,
    too_many,
    validate_immutable,
)

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
PROTOCOLS = ("SCTP", "TCP", "UDP")
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000


def default_endpoint_slice(eps: JSON) -> None:
    for port in eps.get("ports") or []:
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _address_errors(address: str, address_type: str, path: str) -> list[FieldError]:
    if address_type in ("IPv4", "IPv6"):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return [invalid(path, address, f"must be a valid {address_type} address")]
        if ip.version != (4 if address_type == "IPv4" else 6):
            return [invalid(path, address, f"must be a valid {address_type} address")]
        return []
    if address_type == "FQDN":
        errs = [invalid(path, address, m) for m in is_dns1123_subdomain(address.rstrip("."))]
        if not errs and len(address.rstrip(".").split(".")) < 2:
            errs.append(
                invalid(path, address, "should be a domain with at least two segments separated by dots")
            )
        return errs
    return []


def validate_endpoint_slice(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    address_type = new.get("addressType") or ""
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = new.get("endpoints") or []
    if len(endpoints) > MAX_ENDPOINTS:
        errs.append(too_many("endpoints", len(endpoints), MAX_ENDPOINTS))
    for i, endpoint in enumerate(endpoints):
        p = f"endpoints[{i}]"
        addresses = endpoint.get("addresses") or []
        if not addresses:
            errs.append(required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            errs.append(too_many(f"{p}.addresses", len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            errs.extend(_address_errors(address, address_type, f"{p}.addresses[{j}]"))
        hostname = endpoint.get("hostname")
        if hostname:
            errs.extend(invalid(f"{p}.hostname", hostname, m) for m in is_dns1123_label(hostname))
        node_name = endpoint.get("nodeName")
        if node_name:
            errs.extend(invalid(f"{p}.nodeName", node_name, m) for m in is_dns1123_subdomain(node_name))
    ports = new.get("ports") or []
    if len(ports) > MAX_PORTS:
        errs.append(too_many("ports", len(ports), MAX_PORTS))
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            errs.extend(invalid(f"{p}.name", name, m) for m in is_dns1123_label(name))
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        names.add(name)
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(f"{p}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", protocol, PROTOCOLS))
        number = port.get("port")
        if number is not None:
            errs.extend(invalid(f"{p}.port", number, m) for m in is_valid_port_num(number))
        app_protocol = port.get("appProtocol")
        if app_protocol:
            errs.extend(invalid(f"{p}.appProtocol", app_protocol, m) for m in is_qualified_name(app_protocol))
    if old is not None:
        errs.extend(validate_immutable(address_type, old.get("addressType") or "", "addressType"))
    return errs


ENDPOINT_SLICE_COLUMNS = (
    NAME_COLUMN,
    TableColumn(
        "AddressType",
        "string",
        "",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    TableColumn(
        "Ports",
        "string",
        "",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    TableColumn("Endpoints", "string", "", "endpoints is a list of unique endpoints in this slice."),
    AGE_COLUMN,
)


def _list_with_more(items: list[str], total: int, limit: int = 3) -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or "<unset>"


def endpoint_slice_row(eps: JSON) -> list[Any]:
    ports = []
    for port in eps.get("ports") or []:
        if port.get("port") is not None:
            ports.append(str(port["port"]))
        elif port.get("name") is not None:
            ports.append(port["name"])
        else:
            ports.append("*")
    addresses = [a for e in eps.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        name_of(eps),
        eps.get("addressType") or "",
        _list_with_more(ports, len(ports)),
        _list_with_more(addresses, len(addresses)),
        age_of(eps),
    ]


ENDPOINT_SLICES = ResourceType(
    group="discovery.k8s.io",
    version="v1",
    kind="EndpointSlice",
    plural="endpointslices",
    singular="endpointslice",
    namespaced=True,
    model=EndpointSlice,
    # an EndpointSlice has no spec: its registry bumps generation on any change of the slice body
    generation_fields=("addressType", "endpoints", "ports"),
    default=json_defaulter(default_endpoint_slice),
    validate=json_validator(validate_endpoint_slice),
    table_columns=ENDPOINT_SLICE_COLUMNS,
    table_row=json_row(endpoint_slice_row),
)


@hookimpl
def kybern_api_resources() -> list[ResourceType]:
    return [ENDPOINT_SLICES]
