"""Service and Endpoints: defaulting, validation and table rows (core/v1)."""

from __future__ import annotations

from typing import Any

from kybern.plugins.resources.common import (
    AGE_COLUMN,
    JSON,
    NAME_COLUMN,
    age_of,
    ensure,
    format_labels,
    name_of,
)
from kybern.plugins.resources.pod_validation import PROTOCOLS
from kybern.resources import FieldError, TableColumn
from kybern.validation import (
    duplicate,
    forbidden,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_ip,
    is_valid_port_name,
    is_valid_port_num,
    not_supported,
    required,
    validate_immutable,
    validate_labels,
)

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
IP_FAMILIES = ("IPv4", "IPv6")
DEFAULT_CLIENT_IP_TIMEOUT = 10800
KUBELET_PORT = 10250


def _externally_accessible(spec: JSON) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(spec.get("externalIPs")))


def default_service(svc: JSON) -> None:
    """SetDefaults_Service plus the IP-family fields the service registry fills on create."""
    spec = ensure(svc, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = ensure(ensure(spec, "sessionAffinityConfig"), "clientIP")
        if client_ip.get("timeoutSeconds") is None:
            client_ip["timeoutSeconds"] = DEFAULT_CLIENT_IP_TIMEOUT
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in spec.get("ports") or []:
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if _externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in (
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
    ):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if spec["type"] != "ExternalName":
        cluster_ip = spec.get("clusterIP") or ""
        if cluster_ip and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [cluster_ip]
        if spec.get("ipFamilyPolicy") is None:
            headless_without_selector = cluster_ip == "None" and not spec.get("selector")
            spec["ipFamilyPolicy"] = "RequireDualStack" if headless_without_selector else "SingleStack"
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]
    svc.setdefault("status", {}).setdefault("loadBalancer", {})


def _int_or_name_errors(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [invalid(path, value, m) for m in is_valid_port_num(value)]
    if isinstance(value, str) and value:
        return [invalid(path, value, m) for m in is_valid_port_name(value)]
    return [required(path)]


def validate_service(new: JSON, old: JSON | None) -> list[FieldError]:
    """ValidateServiceUpdate + ValidateService, in kube's order of checks.

    The name (a DNS-1035 label) is checked by the API server's validate_object_meta call.
    """
    errs: list[FieldError] = []
    spec = new.get("spec") or {}
    kind = spec.get("type") or ""
    cluster_ip = spec.get("clusterIP") or ""
    headless = cluster_ip == "None"
    if old is not None:
        old_spec = old.get("spec") or {}
        old_ip = old_spec.get("clusterIP") or ""
        # an empty clusterIP on update means "keep the allocated one" (the registry copies it)
        if old_ip and cluster_ip and old_spec.get("type") != "ExternalName" and kind != "ExternalName":
            errs.extend(validate_immutable(cluster_ip, old_ip, "spec.clusterIP"))
    ports = spec.get("ports") or []
    if not ports and not headless and kind != "ExternalName":
        errs.append(required("spec.ports"))
    if kind == "LoadBalancer":
        for i, port in enumerate(ports):
            if port.get("port") == KUBELET_PORT:
                errs.append(
                    invalid(
                        f"spec.ports[{i}]",
                        KUBELET_PORT,
                        "may not expose port 10250 externally since it is used by kubelet",
                    )
                )
    if kind in ("LoadBalancer", "NodePort") and headless:
        errs.append(invalid("spec.clusterIP", cluster_ip, f"may not be set to 'None' for {kind} services"))
    if kind == "ExternalName":
        if spec.get("clusterIPs"):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        external_name = spec.get("externalName") or ""
        if not external_name:
            errs.append(required("spec.externalName"))
        else:
            errs.extend(_fqdn_errors(external_name, "spec.externalName"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        port_name = port.get("name") or ""
        if len(ports) > 1 and not port_name:
            errs.append(required(f"{p}.name"))
        elif port_name:
            errs.extend(invalid(f"{p}.name", port_name, m) for m in is_dns1123_label(port_name))
            if port_name in names:
                errs.append(duplicate(f"{p}.name", port_name))
            names.add(port_name)
        number = port.get("port") or 0
        errs.extend(invalid(f"{p}.port", number, m) for m in is_valid_port_num(number))
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(f"{p}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", protocol, PROTOCOLS))
        errs.extend(_int_or_name_errors(port.get("targetPort"), f"{p}.targetPort"))
    errs.extend(validate_labels(spec.get("selector"), "spec.selector"))
    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        errs.append(required("spec.sessionAffinity"))
    elif affinity not in SESSION_AFFINITIES:
        errs.append(not_supported("spec.sessionAffinity", affinity, SESSION_AFFINITIES))
    if affinity == "ClientIP":
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if timeout is not None and not 0 < timeout <= 86400:
            errs.append(
                invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    "must be greater than 0 and less than 86400",
                )
            )
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    cluster_ips = spec.get("clusterIPs") or []
    if cluster_ips and cluster_ips[0] != cluster_ip:
        errs.append(invalid("spec.clusterIPs", cluster_ips, "first value must match `clusterIP`"))
    for i, ip in enumerate(cluster_ips):
        if ip != "None":
            errs.extend(invalid(f"spec.clusterIPs[{i}]", ip, m) for m in is_valid_ip(ip))
    for i, ip in enumerate(spec.get("externalIPs") or []):
        errs.extend(invalid(f"spec.externalIPs[{i}]", ip, m) for m in is_valid_ip(ip))
    if not kind:
        errs.append(required("spec.type"))
    elif kind not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", kind, SERVICE_TYPES))
    seen: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        if kind == "ClusterIP" and port.get("nodePort"):
            errs.append(forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
        if port.get("nodePort"):
            node_key = (port.get("protocol"), port["nodePort"])
            if node_key in node_ports:
                errs.append(duplicate(f"{p}.nodePort", port["nodePort"]))
            node_ports.add(node_key)
    for i, port in enumerate(ports):
        key = (port.get("port") or 0, port.get("protocol") or "")
        if key in seen:
            errs.append(duplicate(f"spec.ports[{i}]", {"port": key[0], "protocol": key[1]}))
        seen.add(key)
    etp = spec.get("externalTrafficPolicy")
    if not _externally_accessible(spec):
        if etp:
            errs.append(
                invalid(
                    "spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"
                )
            )
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES))
    itp = spec.get("internalTrafficPolicy")
    if itp and itp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES))
    policy = spec.get("ipFamilyPolicy")
    if policy and policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in IP_FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES))
    return errs


def _fqdn_errors(name: str, path: str) -> list[FieldError]:
    """IsFullyQualifiedDomainName: a subdomain of at least two labels (a trailing dot is fine)."""
    name = name[:-1] if name.endswith(".") else name
    problems = is_dns1123_subdomain(name)
    if problems:
        return [invalid(path, name, ",".join(problems))]
    if len(name.split(".")) < 2:
        return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    for label in name.split("."):
        problems = is_dns1123_label(label)
        if problems:
            return [invalid(path, label, ",".join(problems))]
    return []


SERVICE_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Type", "string", "", "type determines how the Service is exposed."),
    TableColumn("Cluster-IP", "string", "", "clusterIP is the IP address of the service."),
    TableColumn(
        "External-IP",
        "string",
        "",
        "externalIPs is a list of IP addresses for which nodes will also accept traffic.",
    ),
    TableColumn("Port(s)", "string", "", "The list of ports that are exposed by this service."),
    AGE_COLUMN,
    TableColumn(
        "Selector",
        "string",
        "",
        "Route service traffic to pods with label keys and values matching this selector.",
        1,
    ),
)


def _external_ip(spec: JSON, status: JSON) -> str:
    kind = spec.get("type")
    external = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = sorted(
            {
                i.get("ip") or i.get("hostname")
                for i in (status.get("loadBalancer") or {}).get("ingress") or []
            }
            - {None, ""}
        )
        if external:
            return ",".join([*ingress, *external])
        return ",".join(ingress) if ingress else "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def service_ports_text(ports: list[JSON] | None) -> str:
    pieces = []
    for port in ports or []:
        if port.get("nodePort"):
            pieces.append(f"{port.get('port')}:{port['nodePort']}/{port.get('protocol') or ''}")
        else:
            pieces.append(f"{port.get('port')}/{port.get('protocol') or ''}")
    return ",".join(pieces) or "<none>"


def service_row(svc: JSON) -> list[Any]:
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or []
    return [
        name_of(svc),
        spec.get("type") or "",
        cluster_ips[0] if cluster_ips else "<none>",
        _external_ip(spec, svc.get("status") or {}),
        service_ports_text(spec.get("ports")),
        age_of(svc),
        format_labels(spec.get("selector")),
    ]


# --------------------------------------------------------------------------- Endpoints


def default_endpoints(ep: JSON) -> None:
    for subset in ep.get("subsets") or []:
        for port in subset.get("ports") or []:
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def validate_endpoints(new: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in enumerate(new.get("subsets") or []):
        p = f"subsets[{i}]"
        if not subset.get("addresses") and not subset.get("notReadyAddresses"):
            errs.append(required(p, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(subset.get(key) or []):
                ip = address.get("ip") or ""
                errs.extend(invalid(f"{p}.{key}[{j}].ip", ip, m) for m in is_valid_ip(ip))
                hostname = address.get("hostname") or ""
                if hostname:
                    errs.extend(
                        invalid(f"{p}.{key}[{j}].hostname", hostname, m) for m in is_dns1123_label(hostname)
                    )
        ports = subset.get("ports") or []
        for j, port in enumerate(ports):
            pp = f"{p}.ports[{j}]"
            port_name = port.get("name") or ""
            if len(ports) > 1 and not port_name:
                errs.append(required(f"{pp}.name"))
            elif port_name:
                errs.extend(invalid(f"{pp}.name", port_name, m) for m in is_dns1123_label(port_name))
            number = port.get("port") or 0
            errs.extend(invalid(f"{pp}.port", number, m) for m in is_valid_port_num(number))
            protocol = port.get("protocol") or ""
            if not protocol:
                errs.append(required(f"{pp}.protocol"))
            elif protocol not in PROTOCOLS:
                errs.append(not_supported(f"{pp}.protocol", protocol, PROTOCOLS))
    return errs


ENDPOINTS_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Endpoints", "string", "", "The set of all endpoints is the union of all subsets."),
    AGE_COLUMN,
)


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def endpoints_text(ep: JSON) -> str:
    """formatEndpoints: up to three ip:port pairs, then "+ N more..."."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit, more, count = 3, False, 0
    for subset in subsets:
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or []
        if not ports:
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(address.get("ip") or "")
            continue
        for port in ports:
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(_host_port(address.get("ip") or "", port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def endpoints_row(ep: JSON) -> list[Any]:
    return [name_of(ep), endpoints_text(ep), age_of(ep)]
