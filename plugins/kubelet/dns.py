"""A pod's resolv.conf from its dnsPolicy and dnsConfig, as the kubelet's dns configurer does.

ClusterFirst pods ask cluster DNS (``--cluster-dns``, the kube-dns Service's ClusterIP) with the
search path ``NS.svc.DOMAIN svc.DOMAIN DOMAIN`` and ``ndots:5``; Default pods get the host's
resolv.conf; None pods only what dnsConfig says. dnsConfig is merged last in every case.
"""

from __future__ import annotations

import time
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
#: a look at the host's file (its stat) holds this long: a burst of pod starts stats it once a
#: second, not once a pod (the kubelet reads it per sandbox; a second later is as good)
HOST_CHECK_S = 1.0
#: path -> (monotonic time of the last stat, the parsed record it confirmed; None: no file)
_checked: dict[Path, tuple[float, DnsConfig | None]] = {}
#: (namespace, cluster DNS, domain) -> (the host record it was made from, the pod's config):
#: every ClusterFirst pod of a namespace without a dnsConfig gets the same resolv.conf
_cluster_first: dict[tuple[str, str, str], tuple[DnsConfig, DnsConfig]] = {}


def _host_record(path: Path) -> DnsConfig | None:
    """The shared parsed record of the host's file (never to be changed), None without one."""
    now = time.monotonic()
    seen = _checked.get(path)
    if seen is not None and now - seen[0] < HOST_CHECK_S:
        return seen[1]
    try:
        st = path.stat()
    except OSError:
        _checked[path] = (now, None)
        return None
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _parsed.get(path)
    if hit is None or hit[0] != key:
        hit = _parsed[path] = (key, _parse_resolv_conf(path))
    _checked[path] = (now, hit[1])
    return hit[1]


def _copy(cfg: DnsConfig) -> DnsConfig:
    return DnsConfig(list(cfg.nameservers), list(cfg.searches), list(cfg.options))


def host_resolv_conf(path: Path = Path("/etc/resolv.conf")) -> DnsConfig:
    """The host's nameservers, searches and options (loopback stubs are of no use in a pod)."""
    cfg = _host_record(path)
    return DnsConfig() if cfg is None else _copy(cfg)


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
        if host is None and not extra:
            return _plain_cluster_first(namespace, str(cluster_dns), cluster_domain)
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


def _plain_cluster_first(namespace: str, cluster_dns: str, cluster_domain: str) -> DnsConfig:
    """A ClusterFirst pod without a dnsConfig on this host (the common pod): made once per
    namespace and host file, a copy handed out per pod start."""
    host = _host_record(_HOST_FILE) or _NO_HOST
    key = (namespace, cluster_dns, cluster_domain)
    hit = _cluster_first.get(key)
    if hit is None or hit[0] is not host:
        if len(_cluster_first) > 4096:
            _cluster_first.clear()
        made = pod_dns_config(
            {"metadata": {"namespace": namespace}}, cluster_dns, cluster_domain, host=_copy(host)
        )
        assert made is not None
        hit = _cluster_first[key] = (host, made)
    return _copy(hit[1])


_HOST_FILE = Path("/etc/resolv.conf")
#: the host record of a host without a resolv.conf
_NO_HOST = DnsConfig()
