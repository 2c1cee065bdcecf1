"""resolv.conf per dnsPolicy, as kubelet writes it (pure function; the e2e DNS test uses it)."""

from __future__ import annotations

from pathlib import Path

from kybern.plugins.kubelet.dns import host_resolv_conf, pod_dns_config
from kybern.runtime import DnsConfig

HOST = DnsConfig(nameservers=["192.0.2.53"], searches=["corp.example"], options=["edns0"])


def pod(policy: str | None = None, ns: str = "team", **spec: object) -> dict:
    s: dict = dict(spec)
    if policy:
        s["dnsPolicy"] = policy
    return {"metadata": {"name": "p", "namespace": ns}, "spec": s}


def test_cluster_first_uses_cluster_dns_and_search_path() -> None:
    cfg = pod_dns_config(pod(), "10.43.0.10", "cluster.local", host=HOST)
    assert cfg == DnsConfig(
        nameservers=["10.43.0.10"],
        searches=["team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"],
        options=["ndots:5"],
    )


def test_dns_config_is_merged_and_options_override() -> None:
    extra = {
        "nameservers": ["1.1.1.1"],
        "searches": ["x.example"],
        "options": [{"name": "ndots", "value": "2"}],
    }
    cfg = pod_dns_config(pod("ClusterFirst", dnsConfig=extra), "10.43.0.10", host=HOST)
    assert cfg is not None
    assert cfg.nameservers == ["10.43.0.10", "1.1.1.1"]
    assert cfg.searches[-1] == "x.example"
    assert cfg.options == ["ndots:2"]


def test_none_takes_only_dns_config() -> None:
    cfg = pod_dns_config(pod("None", dnsConfig={"nameservers": ["10.0.0.1"]}), host=HOST)
    assert cfg == DnsConfig(nameservers=["10.0.0.1"])


def test_default_is_the_host_and_host_network_cluster_first_falls_back() -> None:
    assert pod_dns_config(pod("Default"), host=HOST) is None
    assert pod_dns_config(pod(hostNetwork=True), host=HOST) is None
    with_net = pod_dns_config(pod("ClusterFirstWithHostNet", hostNetwork=True), host=HOST)
    assert with_net is not None and with_net.nameservers == ["10.43.0.10"]
    assert pod_dns_config(pod(), cluster_dns=None, host=HOST) is None


def test_host_resolv_conf_skips_loopback_stubs(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "nameserver 127.0.0.53\nnameserver 192.0.2.1 # lan\nsearch a.example b.example\noptions edns0\n"
    )
    assert host_resolv_conf(conf) == DnsConfig(["192.0.2.1"], ["a.example", "b.example"], ["edns0"])
