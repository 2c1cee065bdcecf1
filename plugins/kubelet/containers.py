"""Turning a pod's container spec into the runtime's ContainerSpec: env vars (values,
references to ConfigMaps, Secrets, pod fields and resources, ``$(VAR)`` expansion), envFrom,
command and args, limits, user and group, and the mounts of its volumes.
"""

from __future__ import annotations

import base64
import re
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kybern.plugins.kubelet.objcache import ObjectCache
from kybern.quantity import cpu_millis, memory_bytes, parse_quantity
from kybern.runtime import ContainerSpec, Mount, PortMapping, Resources

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_VAR_REF = re.compile(r"\$\$|\$\(([^)]*)\)")


class ContainerConfigError(Exception):
    """The container cannot be configured yet (missing ConfigMap key, ...): the status shows
    waiting ``CreateContainerConfigError`` and the kubelet retries."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, unknown
    references stay as written."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(sub, text)


def _label_path(path: str, meta: dict[str, Any]) -> str | None:
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return None


def field_value(pod: dict[str, Any], path: str) -> str:
    """A downward API fieldRef (env vars and downwardAPI volumes)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    labelled = _label_path(path, meta)
    if labelled is not None:
        return labelled
    raise ContainerConfigError(f"unsupported fieldPath {path!r}")


def resource_value(
    pod: dict[str, Any], ref: dict[str, Any], default_container: str | None, allocatable: dict[str, str]
) -> str:
    """A resourceFieldRef: the container's limit or request divided by ``divisor`` (rounded
    up); an unset limit reads as the node's allocatable, as in the kubelet."""
    cname = ref.get("containerName") or default_container
    resource = ref.get("resource", "")
    containers = (pod.get("spec") or {}).get("containers") or []
    ctr = next((c for c in containers if c.get("name") == cname), {})
    kind, _, res = resource.partition(".")
    value = ((ctr.get("resources") or {}).get(kind) or {}).get(res)
    if value is None and kind == "limits":
        value = allocatable.get(res)
    if value is None:
        value = 0
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(int((parse_quantity(value) / divisor).to_integral_value(rounding=ROUND_CEILING)))


def _decode_secret(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", "replace")


async def _config_data(
    cache: ObjectCache, kind: str, namespace: str, name: str, optional: bool
) -> dict[str, str] | None:
    resource = "configmaps" if kind == "ConfigMap" else "secrets"
    obj = await cache.get(resource, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{resource[:-1]} "{name}" not found')
    if kind == "ConfigMap":
        data = dict(obj.get("data") or {})
        for k, v in (obj.get("binaryData") or {}).items():
            data.setdefault(k, _decode_secret(v))
        return data
    data = {k: _decode_secret(v) for k, v in (obj.get("data") or {}).items()}
    data.update(obj.get("stringData") or {})
    return data


#: (the Service object the variables were made from, the variables): the cache hands out the
#: same object until it reads the Service again, so every container start in between (a burst
#: on a thousand hollow nodes) reuses them
_master_env: tuple[dict[str, Any] | None, dict[str, str]] = (None, {})


async def master_service_env(cache: ObjectCache) -> dict[str, str]:
    """The ``kubernetes`` Service's variables every container gets (the kubelet adds them
    whatever enableServiceLinks says): KUBERNETES_SERVICE_HOST/PORT is how in-cluster clients
    find the API server. The container's own env comes after and may override them."""
    global _master_env
    svc = await cache.get("services", "default", "kubernetes")
    made_from, env = _master_env
    if svc is None or made_from is not svc:
        env = service_env(svc)
        _master_env = (svc, env)
    return dict(env)


def service_env(svc: dict[str, Any] | None) -> dict[str, str]:
    """The variables of :func:`master_service_env` for that Service object."""
    spec = (svc or {}).get("spec") or {}
    host = spec.get("clusterIP")
    if not host or host == "None":
        return {}
    env = {"KUBERNETES_SERVICE_HOST": host}
    ports = spec.get("ports") or []
    for i, port in enumerate(ports):
        number = port.get("port")
        if number is None:
            continue
        proto = str(port.get("protocol") or "TCP")
        if i == 0:
            env["KUBERNETES_SERVICE_PORT"] = str(number)
            env["KUBERNETES_PORT"] = f"{proto.lower()}://{host}:{number}"
        if port.get("name"):
            env[f"KUBERNETES_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
        prefix = f"KUBERNETES_PORT_{number}_{proto.upper()}"
        env[prefix] = f"{proto.lower()}://{host}:{number}"
        env[f"{prefix}_PROTO"] = proto.lower()
        env[f"{prefix}_PORT"] = str(number)
        env[f"{prefix}_ADDR"] = host
    return env


async def resolve_env(
    pod: dict[str, Any], ctr: dict[str, Any], cache: ObjectCache, allocatable: dict[str, str]
) -> list[tuple[str, str]]:
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    env: dict[str, str] = await master_service_env(cache)
    for source in ctr.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if not ref:
                continue
            data = await _config_data(cache, kind, namespace, ref.get("name", ""), bool(ref.get("optional")))
            for k, v in (data or {}).items():
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v
    for var in ctr.get("env") or []:
        name = var.get("name", "")
        source = var.get("valueFrom")
        if not source:
            env[name] = expand(var.get("value") or "", env)
            continue
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in source:
            env[name] = resource_value(pod, source["resourceFieldRef"], ctr.get("name"), allocatable)
        else:
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = source.get(key)
                if not ref:
                    continue
                optional = bool(ref.get("optional"))
                data = await _config_data(cache, kind, namespace, ref.get("name", ""), optional)
                if data is None:
                    break
                if ref.get("key") not in data:
                    if optional:
                        break
                    what = "ConfigMap" if kind == "ConfigMap" else "Secret"
                    raise ContainerConfigError(
                        f"couldn't find key {ref.get('key')} in {what} {namespace}/{ref.get('name')}"
                    )
                env[name] = data[ref["key"]]
    return list(env.items())


def container_resources(ctr: dict[str, Any]) -> Resources:
    limits = (ctr.get("resources") or {}).get("limits") or {}
    return Resources(
        cpu_limit_millis=cpu_millis(limits["cpu"]) if limits.get("cpu") is not None else None,
        memory_limit_bytes=memory_bytes(limits["memory"]) if limits.get("memory") is not None else None,
    )


#: SandboxSpec.network for spec.hostNetwork pods: the runtime puts the sandbox in the host's
#: network namespace (the Podman runtime's ``host`` network mode)
HOST_NETWORK = "host"


def port_mappings(pod: dict[str, Any]) -> list[PortMapping]:
    out: list[PortMapping] = []
    spec = pod.get("spec") or {}
    for ctr in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for port in ctr.get("ports") or []:
            if port.get("hostPort"):
                out.append(
                    PortMapping(
                        container_port=int(port.get("containerPort") or 0),
                        host_port=int(port["hostPort"]),
                        protocol=port.get("protocol") or "TCP",
                        host_ip=port.get("hostIP") or "",
                    )
                )
    return out


def build_container_spec(
    pod: dict[str, Any],
    ctr: dict[str, Any],
    env: list[tuple[str, str]],
    volume_mounts: dict[str, Mount],
    attempt: int,
    grace_s: int,
) -> ContainerSpec:
    """``volume_mounts`` maps a pod volume's name to the host side prepared for it."""
    env_map = dict(env)
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = ctr.get("securityContext") or {}
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    mounts: list[Mount] = []
    for vm in ctr.get("volumeMounts") or []:
        source = volume_mounts.get(vm.get("name", ""))
        if source is None:
            raise ContainerConfigError(f"volume {vm.get('name')!r} is not prepared")
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env_map) if vm.get("subPathExpr") else "")
        host = source.host_path
        if sub and host:
            host = f"{host.rstrip('/')}/{sub.lstrip('/')}"
        mounts.append(
            Mount(
                container_path=vm.get("mountPath", ""),
                host_path=host,
                read_only=bool(vm.get("readOnly")) or source.read_only,
                tmpfs=source.tmpfs,
                tmpfs_size=source.tmpfs_size,
            )
        )
    command = [expand(c, env_map) for c in ctr.get("command") or []] or None
    args = [expand(a, env_map) for a in ctr.get("args") or []] or None
    return ContainerSpec(
        name=ctr.get("name", ""),
        image=ctr.get("image", ""),
        command=command,
        args=args,
        working_dir=ctr.get("workingDir") or None,
        env=env,
        mounts=mounts,
        resources=container_resources(ctr),
        run_as_user=user,
        run_as_group=group,
        tty=bool(ctr.get("tty")),
        stdin=bool(ctr.get("stdin")),
        attempt=attempt,
        stop_timeout_s=grace_s,
    )
