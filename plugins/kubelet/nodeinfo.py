"""What a node reports about its host: capacity, addresses, system info, and its pod CIDR.

Figures come from the host (``/proc``, ``statvfs``) unless hollow-node options override them.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kybern.quantity import format_quantity, memory_bytes

KUBELET_VERSION = "v1.32.0-kybern"
KUBELET_PORT = 10250
DEFAULT_MAX_PODS = 110
#: kubelet's default hard eviction thresholds, kept out of allocatable
RESERVED_MEMORY = 100 * 1024 * 1024
DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def host_ip() -> str:
    """The address other machines reach this one at (the source of the default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@dataclass
class NodeResources:
    cpu: str
    memory: str
    ephemeral_storage: str
    pods: int
    allocatable_memory: str
    allocatable_storage: str

    @classmethod
    def from_host(cls, data_dir: Path, pods: int = DEFAULT_MAX_PODS) -> NodeResources:
        mem = _mem_total()
        try:
            st = os.statvfs(data_dir)
            disk = st.f_blocks * st.f_frsize
        except OSError:
            disk = 0
        return cls(
            cpu=str(os.cpu_count() or 1),
            memory=f"{mem // 1024}Ki",
            ephemeral_storage=f"{disk // 1024}Ki",
            pods=pods,
            allocatable_memory=f"{max(mem - RESERVED_MEMORY, 0) // 1024}Ki",
            # kubelet's nodefs.available<10% eviction threshold
            allocatable_storage=str(disk * 9 // 10),
        )

    @classmethod
    def hollow(cls, cpu: str, memory: str, pods: int) -> NodeResources:
        mem = format_quantity(memory_bytes(memory), "BinarySI") if memory else "32Gi"
        return cls(
            cpu=str(cpu),
            memory=mem,
            ephemeral_storage="100Gi",
            pods=pods,
            allocatable_memory=mem,
            allocatable_storage="100Gi",
        )

    def capacity(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "ephemeral-storage": self.ephemeral_storage,
            "pods": str(self.pods),
        }

    def allocatable(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.allocatable_memory,
            "ephemeral-storage": self.allocatable_storage,
            "pods": str(self.pods),
        }


@functools.cache
def _system_info(runtime_version: str, hollow: bool) -> dict[str, str]:
    machine = platform.machine()
    machine_id = _read("/etc/machine-id", "0" * 32)
    return {
        "machineID": machine_id,
        "systemUUID": _read("/sys/class/dmi/id/product_uuid", machine_id),
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": platform.release(),
        "osImage": _os_image() if not hollow else "hollow node",
        "containerRuntimeVersion": runtime_version,
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": _ARCH.get(machine, machine),
    }


def system_info(runtime_version: str, hollow: bool = False) -> dict[str, str]:
    """Read once per process: a thousand hollow nodes report every 10 s."""
    return dict(_system_info(runtime_version, hollow))


def node_labels(name: str, control_plane: bool) -> dict[str, str]:
    machine = platform.machine()
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _ARCH.get(machine, machine),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": _ARCH.get(machine, machine),
    }
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = "true"
    return labels


def pick_pod_cidr(node_name: str, taken: set[str], cluster_cidr: str = DEFAULT_CLUSTER_CIDR) -> str:
    """A /24 of the cluster CIDR for a node that the control plane gave none (until node IPAM
    exists): the slot a hash of the name picks, or the next free one after it. Deterministic,
    so a re-registering node gets the same range back."""
    cluster = ipaddress.ip_network(cluster_cidr)
    if cluster.prefixlen > 24:
        slots, size, prefix = 1, cluster.num_addresses, cluster.prefixlen
    else:
        slots, size, prefix = 2 ** (24 - cluster.prefixlen), 256, 24
    base = int(cluster.network_address)
    start = int(hashlib.sha256(node_name.encode()).hexdigest(), 16) % slots
    for i in range(slots):
        candidate = f"{ipaddress.ip_address(base + ((start + i) % slots) * size)}/{prefix}"
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"no free /24 left in cluster CIDR {cluster_cidr}")


def network_name(pod_cidr: str) -> str:
    """The runtime network for a pod CIDR; named after it, so two agents sharing one Podman
    never reuse each other's network by accident."""
    return "kybern-" + pod_cidr.replace(".", "-").replace("/", "-")


def condition(
    type_: str, ok: bool, reason: str, message: str, now: str, old: dict[str, Any] | None
) -> dict[str, Any]:
    status = "True" if ok else "False"
    changed = old is None or old.get("status") != status
    return {
        "type": type_,
        "status": status,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),  # type: ignore[union-attr]
        "reason": reason,
        "message": message,
    }
