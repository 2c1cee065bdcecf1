"""PodSpec validation (pkg/apis/core/validation ValidatePodSpec), shared by Pods and every template.

Only the rules for fields kybern acts on are enforced; each message and field path is the one
kube-apiserver 1.32 produces, so ``kubectl apply`` errors read the same.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kybern.plugins.resources.common import JSON, spec_key
from kybern.quantity import format_quantity, parse_quantity
from kybern.resources import FieldError
from kybern.validation import (
    duplicate,
    forbidden,
    inclusive_range_error,
    invalid,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_relaxed_env_var_name,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    not_found,
    not_supported,
    required,
    validate_labels,
)

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ENV_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)
MAX_INT32 = 2**31 - 1


def validate_quantity(value: Any, path: str) -> tuple[list[FieldError], Decimal | None]:
    try:
        amount = parse_quantity(value)
    except ValueError as err:
        return [invalid(path, value, str(err))], None
    if amount < 0:
        return [invalid(path, format_quantity(value), "must be greater than or equal to 0")], None
    return [], amount


def validate_resources(resources: JSON | None, path: str) -> list[FieldError]:
    """ValidateResourceRequirements: quantities parse, are not negative, requests <= limits."""
    errs: list[FieldError] = []
    if not resources:
        return errs
    limits: dict[str, Decimal] = {}
    for name, value in (resources.get("limits") or {}).items():
        q_errs, amount = validate_quantity(value, f"{path}.limits[{name}]")
        errs.extend(q_errs)
        errs.extend(_resource_name_errors(name, f"{path}.limits[{name}]"))
        if amount is not None:
            limits[name] = amount
    for name, value in (resources.get("requests") or {}).items():
        req_path = f"{path}.requests[{name}]"
        q_errs, amount = validate_quantity(value, req_path)
        errs.extend(q_errs)
        errs.extend(_resource_name_errors(name, req_path))
        if amount is not None and name in limits and amount > limits[name]:
            limit_text = format_quantity((resources.get("limits") or {})[name])
            errs.append(
                invalid(
                    req_path,
                    format_quantity(value),
                    f"must be less than or equal to {name} limit of {limit_text}",
                )
            )
    return errs


def _resource_name_errors(name: str, path: str) -> list[FieldError]:
    """A container resource is standard (cpu, memory, ...) or a domain-qualified extended one."""
    if name in ("cpu", "memory", "ephemeral-storage") or name.startswith("hugepages-"):
        return []
    errs = [invalid(path, name, m) for m in is_qualified_name(name)]
    if not errs and "/" not in name:
        errs.append(invalid(path, name, "must be a standard resource for containers"))
    return errs


def _validate_port_num_or_name(port: Any, path: str) -> list[FieldError]:
    if isinstance(port, int) and not isinstance(port, bool):
        return [invalid(path, port, m) for m in is_valid_port_num(port)]
    if isinstance(port, str):
        if not port:
            return [required(path)]
        return [invalid(path, port, m) for m in is_valid_port_name(port)]
    return [required(path)]


def validate_handler(handler: JSON, path: str, kinds: tuple[str, ...]) -> list[FieldError]:
    """Exactly one of exec/httpGet/tcpSocket/grpc/sleep, each well formed."""
    errs: list[FieldError] = []
    present = [k for k in kinds if handler.get(k) is not None]
    if not present:
        return [required(path, "must specify a handler type")]
    for extra in present[1:]:
        errs.append(forbidden(f"{path}.{extra}", "may not specify more than 1 handler type"))
    kind = present[0]
    body = handler[kind]
    if kind == "exec" and not body.get("command"):
        errs.append(required(f"{path}.exec.command"))
    elif kind == "httpGet":
        if not body.get("path"):
            errs.append(required(f"{path}.httpGet.path"))
        errs.extend(_validate_port_num_or_name(body.get("port"), f"{path}.httpGet.port"))
        scheme = body.get("scheme")
        if scheme and scheme not in ("HTTP", "HTTPS"):
            errs.append(not_supported(f"{path}.httpGet.scheme", scheme, ("HTTP", "HTTPS")))
    elif kind == "tcpSocket":
        errs.extend(_validate_port_num_or_name(body.get("port"), f"{path}.tcpSocket.port"))
    elif kind == "grpc":
        port = body.get("port")
        errs.extend(
            [invalid(f"{path}.grpc.port", port, m) for m in is_valid_port_num(port)]
            if isinstance(port, int)
            else [required(f"{path}.grpc.port")]
        )
    return errs


def validate_probe(probe: JSON | None, path: str, must_succeed_once: bool) -> list[FieldError]:
    if probe is None:
        return []
    errs = validate_handler(probe, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = probe.get(key)
        if isinstance(value, int) and value < 0:
            errs.append(invalid(f"{path}.{key}", value, "must be greater than or equal to 0"))
    success = probe.get("successThreshold")
    if must_succeed_once and success not in (None, 1):
        errs.append(invalid(f"{path}.successThreshold", success, "must be 1"))
    grace = probe.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace <= 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
    return errs


def _validate_env(env: list[JSON] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(env or []):
        p = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs.extend(invalid(f"{p}.name", name, m) for m in is_relaxed_env_var_name(name))
        value_from = var.get("valueFrom")
        if value_from is not None:
            errs.extend(_validate_env_source(value_from, f"{p}.valueFrom", bool(var.get("value"))))
    return errs


def _validate_env_source(source: JSON, path: str, has_value: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if source.get(k)]
    if not kinds:
        return [
            invalid(
                path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )
        ]
    if len(kinds) > 1:
        return [invalid(path, "", "may not have more than one field specified at a time")]
    if has_value:
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    kind = kinds[0]
    body = source[kind]
    if kind == "fieldRef":
        field_path = body.get("fieldPath") or ""
        if not body.get("apiVersion"):
            errs.append(required(f"{path}.fieldRef.apiVersion"))
        if not field_path:
            errs.append(required(f"{path}.fieldRef.fieldPath"))
        else:
            base = field_path.split("[", 1)[0]
            subscripted = "[" in field_path
            if base not in ENV_FIELD_PATHS or (
                subscripted != (base in ("metadata.labels", "metadata.annotations"))
            ):
                supported = [
                    p for p in ENV_FIELD_PATHS if p not in ("metadata.annotations", "metadata.labels")
                ]
                errs.append(not_supported(f"{path}.fieldRef.fieldPath", field_path, supported))
    elif kind == "resourceFieldRef":
        if not body.get("resource"):
            errs.append(required(f"{path}.resourceFieldRef.resource"))
    else:
        key = body.get("key") or ""
        if not key:
            errs.append(required(f"{path}.{kind}.key"))
        else:
            errs.extend(invalid(f"{path}.{kind}.key", key, m) for m in is_config_map_key(key))
        if not body.get("name"):
            errs.append(required(f"{path}.{kind}.name"))
    return errs


def _validate_ports(ports: list[JSON] | None, path: str, host_network: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports or []):
        p = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            errs.extend(invalid(f"{p}.name", name, m) for m in is_valid_port_name(name))
            if name in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(name)
        container_port = port.get("containerPort") or 0
        if container_port == 0:
            errs.append(required(f"{p}.containerPort"))
        else:
            errs.extend(
                invalid(f"{p}.containerPort", container_port, m) for m in is_valid_port_num(container_port)
            )
        host_port = port.get("hostPort") or 0
        if host_port:
            errs.extend(invalid(f"{p}.hostPort", host_port, m) for m in is_valid_port_num(host_port))
            if host_network and host_port != container_port:
                errs.append(
                    invalid(
                        f"{p}.hostPort", host_port, "must match `containerPort` when `hostNetwork` is true"
                    )
                )
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(f"{p}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", protocol, PROTOCOLS))
    return errs


def _validate_mounts(mounts: list[JSON] | None, path: str, volumes: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    seen_paths: set[str] = set()
    for i, mount in enumerate(mounts or []):
        p = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        elif name not in volumes:
            errs.append(not_found(f"{p}.name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(required(f"{p}.mountPath"))
        elif mount_path in seen_paths:
            errs.append(invalid(f"{p}.mountPath", mount_path, "must be unique"))
        seen_paths.add(mount_path)
        sub_path = mount.get("subPath") or ""
        if sub_path:
            errs.extend(_relative_path_errors(sub_path, f"{p}.subPath"))
    return errs


def _relative_path_errors(value: str, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if value.startswith("/"):
        errs.append(invalid(path, value, "must be a relative path"))
    if ".." in value.split("/"):
        errs.append(invalid(path, value, "must not contain '..'"))
    return errs


def _validate_container(
    container: JSON, path: str, volumes: set[str], host_network: bool, init: bool
) -> list[FieldError]:
    errs: list[FieldError] = []
    if not container.get("image"):
        errs.append(required(f"{path}.image"))
    policy = container.get("imagePullPolicy") or ""
    if not policy:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif policy not in PULL_POLICIES:
        errs.append(not_supported(f"{path}.imagePullPolicy", policy, PULL_POLICIES))
    message_policy = container.get("terminationMessagePolicy") or ""
    if not message_policy:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif message_policy not in TERMINATION_MESSAGE_POLICIES:
        errs.append(
            not_supported(f"{path}.terminationMessagePolicy", message_policy, TERMINATION_MESSAGE_POLICIES)
        )
    errs.extend(_validate_ports(container.get("ports"), f"{path}.ports", host_network))
    errs.extend(_validate_env(container.get("env"), f"{path}.env"))
    errs.extend(_validate_mounts(container.get("volumeMounts"), f"{path}.volumeMounts", volumes))
    errs.extend(validate_resources(container.get("resources"), f"{path}.resources"))
    restart_policy = container.get("restartPolicy")
    sidecar = init and restart_policy == "Always"
    if restart_policy is not None:
        if not init:
            errs.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
        elif restart_policy != "Always":
            errs.append(not_supported(f"{path}.restartPolicy", restart_policy, ("Always",)))
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(key)
        if probe is None:
            continue
        if init and not sidecar:
            errs.append(
                forbidden(f"{path}.{key}", "may not be set for init containers without restartPolicy=Always")
            )
            continue
        errs.extend(validate_probe(probe, f"{path}.{key}", key != "readinessProbe"))
    lifecycle = container.get("lifecycle") or {}
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            errs.extend(
                validate_handler(
                    lifecycle[hook], f"{path}.lifecycle.{hook}", ("exec", "httpGet", "tcpSocket", "sleep")
                )
            )
    return errs


def _validate_volumes(volumes: list[JSON] | None, path: str) -> tuple[list[FieldError], set[str]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes or []):
        p = f"{path}[{i}]"
        name = volume.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs.extend(invalid(f"{p}.name", name, m) for m in is_dns1123_label(name))
            if name in names:
                errs.append(duplicate(f"{p}.name", name))
        names.add(name)
        sources = [k for k in VOLUME_SOURCES if volume.get(k) is not None]
        if not sources:
            errs.append(required(p, "must specify a volume type"))
            continue
        for extra in sources[1:]:
            errs.append(forbidden(f"{p}.{extra}", "may not specify more than 1 volume type"))
        errs.extend(_validate_volume_source(sources[0], volume[sources[0]], f"{p}.{sources[0]}"))
    return errs, names


def _validate_mode(mode: Any, path: str) -> list[FieldError]:
    if mode is not None and not (isinstance(mode, int) and 0 <= mode <= 0o777):
        return [invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _validate_items(items: list[JSON] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, item in enumerate(items or []):
        p = f"{path}[{i}]"
        if not item.get("key"):
            errs.append(required(f"{p}.key"))
        item_path = item.get("path") or ""
        if not item_path:
            errs.append(required(f"{p}.path"))
        else:
            errs.extend(_relative_path_errors(item_path, f"{p}.path"))
        errs.extend(_validate_mode(item.get("mode"), f"{p}.mode"))
    return errs


def _validate_volume_source(kind: str, source: JSON, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if kind == "hostPath":
        if not source.get("path"):
            errs.append(required(f"{path}.path"))
        host_type = source.get("type")
        allowed = (
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        )
        if host_type is not None and host_type not in allowed:
            errs.append(not_supported(f"{path}.type", host_type, allowed))
    elif kind == "emptyDir":
        medium = source.get("medium") or ""
        if medium not in ("", "Memory", "HugePages") and not medium.startswith("HugePages-"):
            errs.append(not_supported(f"{path}.medium", medium, ("", "Memory", "HugePages")))
        if source.get("sizeLimit") is not None:
            q_errs, _ = validate_quantity(source["sizeLimit"], f"{path}.sizeLimit")
            errs.extend(q_errs)
    elif kind == "configMap":
        if not source.get("name"):
            errs.append(required(f"{path}.name"))
        errs.extend(_validate_mode(source.get("defaultMode"), f"{path}.defaultMode"))
        errs.extend(_validate_items(source.get("items"), f"{path}.items"))
    elif kind == "secret":
        if not source.get("secretName"):
            errs.append(required(f"{path}.secretName"))
        errs.extend(_validate_mode(source.get("defaultMode"), f"{path}.defaultMode"))
        errs.extend(_validate_items(source.get("items"), f"{path}.items"))
    elif kind == "persistentVolumeClaim":
        if not source.get("claimName"):
            errs.append(required(f"{path}.claimName"))
    elif kind == "nfs":
        if not source.get("server"):
            errs.append(required(f"{path}.server"))
        nfs_path = source.get("path") or ""
        if not nfs_path:
            errs.append(required(f"{path}.path"))
        elif not nfs_path.startswith("/"):
            errs.append(invalid(f"{path}.path", nfs_path, "must be an absolute path"))
    elif kind in ("downwardAPI", "projected"):
        errs.extend(_validate_mode(source.get("defaultMode"), f"{path}.defaultMode"))
    return errs


def _validate_tolerations(tolerations: list[JSON] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, tol in enumerate(tolerations or []):
        p = f"{path}[{i}]"
        key = tol.get("key") or ""
        operator = tol.get("operator") or ""
        if key:
            errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
        elif operator != "Exists":
            errs.append(
                invalid(
                    f"{p}.operator",
                    operator,
                    "operator must be Exists when `key` is empty, which means "
                    '"match all values and all keys"',
                )
            )
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            errs.append(
                invalid(
                    f"{p}.effect",
                    tol.get("effect") or "",
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if operator in ("", "Equal"):
            errs.extend(
                invalid(f"{p}.value", tol.get("value") or "", m)
                for m in is_valid_label_value(tol.get("value") or "")
            )
        elif operator == "Exists":
            if tol.get("value"):
                errs.append(
                    invalid(
                        f"{p}.operator", tol.get("value"), "value must be empty when `operator` is 'Exists'"
                    )
                )
        else:
            errs.append(not_supported(f"{p}.operator", operator, ("Equal", "Exists")))
        effect = tol.get("effect")
        if effect and effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", effect, TAINT_EFFECTS))
    return errs


def validate_pod_spec(spec: JSON | None, path: str) -> list[FieldError]:
    """ValidatePodSpec for the fields kybern serves; ``path`` is "spec" or "spec.template.spec".

    The answer depends on the spec alone, and every pod of a template has the same spec, so
    specs found valid are remembered (as their JSON; invalid ones are checked each time, their
    errors quote values of the object)."""
    key = spec_key(spec) if spec else None
    if key is not None and (path, key.key) in _VALID_SPECS:
        return []
    errs = _validate_pod_spec(spec, path)
    if key is not None and not errs:
        if len(_VALID_SPECS) >= _VALID_SPECS_MAX:
            _VALID_SPECS.clear()
        _VALID_SPECS.add((path, key.key))
    return errs


#: (path, compact JSON) of pod specs found valid
_VALID_SPECS: set[tuple[str, bytes]] = set()
_VALID_SPECS_MAX = 512  # specs of a few KB: a bounded, small memory


def _validate_pod_spec(spec: JSON | None, path: str) -> list[FieldError]:
    spec = spec or {}
    errs: list[FieldError] = []
    volume_errs, volumes = _validate_volumes(spec.get("volumes"), f"{path}.volumes")
    errs.extend(volume_errs)
    host_network = bool(spec.get("hostNetwork"))
    names: set[str] = set()
    if not spec.get("containers"):
        errs.append(required(f"{path}.containers"))
    # regular containers first: a clashing init container is the one reported as a duplicate
    for key in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(key) or []):
            p = f"{path}.{key}[{i}]"
            name = container.get("name") or ""
            if not name:
                errs.append(required(f"{p}.name"))
            else:
                errs.extend(invalid(f"{p}.name", name, m) for m in is_dns1123_label(name))
                if name in names:
                    errs.append(duplicate(f"{p}.name", name))
            names.add(name)
            errs.extend(_validate_container(container, p, volumes, host_network, key == "initContainers"))
    restart = spec.get("restartPolicy") or ""
    if not restart:
        errs.append(required(f"{path}.restartPolicy"))
    elif restart not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", restart, RESTART_POLICIES))
    dns = spec.get("dnsPolicy") or ""
    if not dns:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dns not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, DNS_POLICIES))
    elif dns == "None" and spec.get("dnsConfig") is None:
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    errs.extend(validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector"))
    for key in ("serviceAccountName", "nodeName"):
        value = spec.get(key) or ""
        if value:
            errs.extend(invalid(f"{path}.{key}", value, m) for m in is_dns1123_subdomain(value))
    for key in ("hostname", "subdomain"):
        value = spec.get(key) or ""
        if value:
            errs.extend(invalid(f"{path}.{key}", value, m) for m in is_dns1123_label(value))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not (1 <= deadline <= MAX_INT32):
        errs.append(invalid(f"{path}.activeDeadlineSeconds", deadline, inclusive_range_error(1, MAX_INT32)))
    errs.extend(_validate_tolerations(spec.get("tolerations"), f"{path}.tolerations"))
    gates = [g.get("name") or "" for g in spec.get("schedulingGates") or []]
    for i, gate in enumerate(gates):
        errs.extend(invalid(f"{path}.schedulingGates[{i}].name", gate, m) for m in is_qualified_name(gate))
        if gate in gates[:i]:
            errs.append(duplicate(f"{path}.schedulingGates[{i}].name", gate))
    if gates and spec.get("nodeName"):
        errs.append(
            forbidden(f"{path}.nodeName", "cannot be set until all schedulingGates have been cleared")
        )
    return errs


def validate_pod_template(template: JSON | None, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec: template labels/annotations plus the pod spec."""
    if template is None:
        return [required(path)]
    errs = validate_labels((template.get("metadata") or {}).get("labels"), f"{path}.metadata.labels")
    errs.extend(validate_pod_spec(template.get("spec"), f"{path}.spec"))
    return errs
