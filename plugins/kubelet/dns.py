"""A pod's resolv.conf from its dnsPolicy and dnsConfig, as the kubelet's dns configurer does.

ClusterFirst pods ask cluster DNS (``--cluster-dns``, the kube-dns Service's ClusterIP) with the
search path ``NS.svc.DOMAIN svc.DOMAIN DOMAIN`` and ``ndots:5``; Default pods get the host's
resolv.conf; None pods only what dnsConfig says. dnsConfig is merged last in every case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kybern.runtime import DnsConfig

DEFAULT_CLUSTER_DNS = "10.43.0.10"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
#: resolv.conf limits glibc honours (kube trims to the same)
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32


#: path -> ((mtime_ns, size, inode), parsed): every ClusterFirst pod start reads the host's
#: file, and a thousand hollow nodes start hundreds a second; a stat says whether it changed
_parsed: dict[Path, tuple[tuple[int, int, int], DnsConfig]] = {}


def host_resolv_conf(path: Path = Path("/etc/resolv.conf")) -> DnsConfig:
    """The host's nameservers, searches and options (loopback stubs are of no use in a pod)."""
    try:
        st = path.stat()
    except OSError:
        return DnsConfig()
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _parsed.get(path)
    if hit is None or hit[0] != key:
        hit = _parsed[path] = (key, _parse_resolv_conf(path))
    cfg = hit[1]
    return DnsConfig(list(cfg.nameservers), list(cfg.searches), list(cfg.options))


def _parse_resolv_conf(path: Path) -> DnsConfig:
    cfg = DnsConfig()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return cfg
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1 and not fields[1].startswith("127."):
            cfg.nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            cfg.searches = fields[1:]
        elif fields[0] == "options":
            cfg.options.extend(fields[1:])
    return cfg


def _merge_options(base: list[str], extra: list[dict[str, Any]]) -> list[str]:
    """dnsConfig options override same-named ones (``ndots:2`` replaces ``ndots:5``)."""
    merged: dict[str, str] = {}
    for option in base:
        name, _, value = option.partition(":")
        merged[name] = option
    for option in extra:
        name = option.get("name") or ""
        if name:
            value = option.get("value")
            merged[name] = f"{name}:{value}" if value not in (None, "") else name
    return list(merged.values())


def pod_dns_config(
    pod: dict[str, Any],
    cluster_dns: str | None = DEFAULT_CLUSTER_DNS,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    host: DnsConfig | None = None,
) -> DnsConfig | None:
    """The resolv.conf for a pod; None means "the runtime's default" (the host's)."""
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    extra = spec.get("dnsConfig") or {}
    host_network = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirst" and host_network:
        policy = "Default"  # as kubelet: host-network pods need ClusterFirstWithHostNet
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns:
        policy = "Default"  # no cluster DNS configured: kubelet falls back to the host's
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        host = host if host is not None else host_resolv_conf()
        domain = cluster_domain.strip(".")
        cfg = DnsConfig(
            nameservers=[str(cluster_dns)],
            searches=[f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host.searches],
            options=["ndots:5"],
        )
    elif policy == "None":
        cfg = DnsConfig()
    else:  # Default
        if not extra:
            return None
        host = host if host is not None else host_resolv_conf()
        cfg = DnsConfig(list(host.nameservers), list(host.searches), list(host.options))
    cfg.nameservers = [*cfg.nameservers, *(extra.get("nameservers") or [])][:MAX_NAMESERVERS]
    searches: list[str] = []
    for name in [*cfg.searches, *(extra.get("searches") or [])]:
        if name not in searches:
            searches.append(name)
    cfg.searches = searches[:MAX_SEARCHES]
    cfg.options = _merge_options(cfg.options, extra.get("options") or [])
    return cfg
