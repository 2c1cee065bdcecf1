"""The proxy's nftables ruleset, as kube-proxy's nftables mode lays it out, and its diffs.

One table (family ip) that the proxy alone owns::

    services          ip daddr . l4proto . dport vmap @service-ips        -> svc-<hash>
                      fib daddr local, not 127/8: l4proto . dport vmap @service-nodeports -> ext-<hash>
    ext-<hash>        mark for masquerade (NodePort traffic may come from anywhere), goto svc-<hash>
    svc-<hash>        saddr outside the cluster CIDR: mark for masquerade;
                      ClientIP affinity: saddr in @aff-<sep> -> goto that endpoint;
                      numgen random mod N vmap { i : goto sep-<hash> }
    sep-<hash>        saddr == endpoint (hairpin): mark; [update @aff-<sep>]; dnat to ip:port
    masquerading      postrouting: marked packets are masqueraded (source = outgoing interface),
                      keeping the client's source port when it is free (not kube-proxy's
                      ``fully-random``: see MASQUERADE)
    endpoints-check   filter hooks: a service port without endpoints is rejected (ICMP
                      port unreachable, so clients fail fast instead of timing out), and so
                      is a ClusterIP on a port no service has (it would leave by the
                      default route otherwise)

Chain names hash the service port key (and the endpoint), so a chain's content only changes
when its service port's endpoints do, and a sync touches only the chains and map elements
that differ from what was applied last: one ``nft -f`` transaction, never a flush of the
table. The maps make the per-packet lookup constant time whatever the number of services.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from kybern.plugins.proxy.model import Endpoint, ServiceState

#: the packet mark bit meaning "masquerade me" (kube-proxy's default)
MASQ_MARK = 0x4000
#: Without ``fully-random``: a client that reuses a source port keeps its server-side address
#: and port, so the endpoint sees the same client address and port's TCP timestamps rising.
#: With random ports, a new connection often lands on a port whose TIME_WAIT socket at the
#: endpoint belongs to another client address and port, whose timestamps have another offset
#: (the kernel here, 6.18, offsets them per connection: two connections between the same two
#: addresses 50 ms apart started ~98 million apart): the endpoint's PAWS check drops the SYN
#: and the client waits a 1 s retransmit. bench_proxy.py measured this for host-to-ClusterIP
#: traffic: with fully-random the request rate fell round by round (3800 to 530 req/s, ~1100
#: PAWS drops in 10 s); without it, none.
MASQUERADE = "masquerade"


class NftError(Exception):
    """nft refused a transaction (the message is nft's)."""


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def svc_chain(state: ServiceState) -> str:
    return "svc-" + _h(state.port.key)


def ext_chain(state: ServiceState) -> str:
    return "ext-" + _h(state.port.key)


def sep_chain(state: ServiceState, ep: Endpoint) -> str:
    # the affinity timeout is part of the name: changing it makes new chains and sets
    return "sep-" + _h(f"{state.port.key}|{ep}|{state.port.affinity_timeout}")


def aff_set(state: ServiceState, ep: Endpoint) -> str:
    return "aff-" + sep_chain(state, ep)[4:]


def _comment(text: str) -> str:
    return '"' + text.replace('"', "'")[:120] + '"'


def skeleton(table: str) -> str:
    """The fixed part: maps, hook chains, masquerading. Recreates the table from scratch."""
    return f"""
add table ip {table}
delete table ip {table}
table ip {table} {{
    comment "kybern service proxy pid={os.getpid()}: do not edit, rebuilt by the proxy"
    map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
    map service-nodeports {{ type inet_proto . inet_service : verdict; }}
    map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
    map no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}
    set cluster-ips {{ type ipv4_addr; }}
    set service-keys {{ type ipv4_addr . inet_proto . inet_service; }}
    chain reject-chain {{ reject; }}
    chain endpoints-check {{
        ip daddr . meta l4proto . th dport vmap @no-endpoint-services
        fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
        ip daddr @cluster-ips ip daddr . meta l4proto . th dport != @service-keys reject
    }}
    chain filter-input {{
        type filter hook input priority -110; policy accept;
        ct state new jump endpoints-check
    }}
    chain filter-forward {{
        type filter hook forward priority -110; policy accept;
        ct state new jump endpoints-check
    }}
    chain filter-output {{
        type filter hook output priority -110; policy accept;
        ct state new jump endpoints-check
    }}
    chain mark-for-masquerade {{ meta mark set meta mark | {MASQ_MARK:#x}; }}
    chain masquerading {{
        type nat hook postrouting priority srcnat; policy accept;
        meta mark & {MASQ_MARK:#x} == 0 return
        meta mark set meta mark ^ {MASQ_MARK:#x}
        {MASQUERADE}
    }}
    chain services {{
        ip daddr . meta l4proto . th dport vmap @service-ips
        fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
    }}
    chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}
    chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}
}}
"""


@dataclass
class Transaction:
    """Lines of one ``nft -f`` script, in the order deletions must respect references."""

    table: str
    create: list[str] = field(default_factory=list)
    fill: list[str] = field(default_factory=list)
    add_elements: list[str] = field(default_factory=list)
    del_elements: list[str] = field(default_factory=list)
    del_chains: list[str] = field(default_factory=list)
    del_sets: list[str] = field(default_factory=list)

    def script(self) -> str:
        return "\n".join(
            [
                *self.create,
                *self.fill,
                *self.add_elements,
                *self.del_elements,
                *self.del_chains,
                *self.del_sets,
            ]
        )

    def __bool__(self) -> bool:
        return bool(self.create or self.fill or self.add_elements or self.del_elements or self.del_chains)


def _elements(table: str, state: ServiceState) -> dict[tuple[str, str], str]:
    """Map elements of a service port: (map, key) -> verdict."""
    p = state.port
    out: dict[tuple[str, str], str] = {}
    for ip in p.cluster_ips:  # set elements (no verdict): what is a service at all
        out[("cluster-ips", ip)] = ""
        out[("service-keys", f"{ip} . {p.protocol} . {p.port}")] = ""
    if state.endpoints:
        for ip in p.cluster_ips:
            out[("service-ips", f"{ip} . {p.protocol} . {p.port}")] = f"goto {svc_chain(state)}"
        if p.node_port:
            out[("service-nodeports", f"{p.protocol} . {p.node_port}")] = f"goto {ext_chain(state)}"
    else:
        for ip in p.cluster_ips:
            out[("no-endpoint-services", f"{ip} . {p.protocol} . {p.port}")] = "goto reject-chain"
        if p.node_port:
            out[("no-endpoint-nodeports", f"{p.protocol} . {p.node_port}")] = "goto reject-chain"
    return out


def _element(key: str, verdict: str) -> str:
    return f"{key} : {verdict}" if verdict else key


def _chains(state: ServiceState) -> set[str]:
    if not state.endpoints:
        return set()
    names = {svc_chain(state)} | {sep_chain(state, ep) for ep in state.endpoints}
    if state.port.node_port:
        names.add(ext_chain(state))
    return names


def _sets(state: ServiceState) -> set[str]:
    if not state.endpoints or state.port.affinity_timeout is None:
        return set()
    return {aff_set(state, ep) for ep in state.endpoints}


def diff(
    table: str, old: dict[str, ServiceState], new: dict[str, ServiceState], cluster_cidr: str | None
) -> Transaction:
    """The transaction that turns the ruleset for ``old`` into the one for ``new``."""
    tx = Transaction(table)
    old_elements: dict[tuple[str, str], str] = {}
    old_chains: set[str] = set()
    old_sets: set[str] = set()
    for st in old.values():
        old_elements.update(_elements(table, st))
        old_chains |= _chains(st)
        old_sets |= _sets(st)
    new_elements: dict[tuple[str, str], str] = {}
    new_chains: set[str] = set()
    new_sets: set[str] = set()
    for key, st in new.items():
        new_elements.update(_elements(table, st))
        new_chains |= _chains(st)
        new_sets |= _sets(st)
        if old.get(key) == st or not st.endpoints:
            continue
        _render_service(tx, st, old_chains, old_sets, cluster_cidr)
    for (map_name, key), verdict in new_elements.items():
        before = old_elements.get((map_name, key))
        if before == verdict:
            continue
        if before is not None:
            tx.del_elements.append(f"delete element ip {table} {map_name} {{ {key} }}")
            # re-added after the delete: put it among the deletions, in order
            tx.del_elements.append(f"add element ip {table} {map_name} {{ {_element(key, verdict)} }}")
        else:
            tx.add_elements.append(f"add element ip {table} {map_name} {{ {_element(key, verdict)} }}")
    for map_name, key in old_elements.keys() - new_elements.keys():
        tx.del_elements.append(f"delete element ip {table} {map_name} {{ {key} }}")
    stale = old_chains - new_chains
    # service chains reference endpoint chains: flush every stale chain before deleting any
    tx.del_chains.extend(f"flush chain ip {table} {c}" for c in sorted(stale))
    tx.del_chains.extend(f"delete chain ip {table} {c}" for c in sorted(stale))
    tx.del_sets.extend(f"delete set ip {table} {s}" for s in sorted(old_sets - new_sets))
    return tx


def _render_service(
    tx: Transaction, st: ServiceState, old_chains: set[str], old_sets: set[str], cluster_cidr: str | None
) -> None:
    t = tx.table
    p = st.port
    svc = svc_chain(st)
    comment = _comment(f"{p.key}")
    tx.create.append(f"add chain ip {t} {svc} {{ comment {comment}; }}")
    tx.fill.append(f"flush chain ip {t} {svc}")
    if p.node_port:
        ext = ext_chain(st)
        tx.create.append(f"add chain ip {t} {ext}")
        tx.fill.append(f"flush chain ip {t} {ext}")
        tx.fill.append(f"add rule ip {t} {ext} jump mark-for-masquerade")
        tx.fill.append(f"add rule ip {t} {ext} goto {svc}")
    if cluster_cidr:
        tx.fill.append(f"add rule ip {t} {svc} ip saddr != {cluster_cidr} jump mark-for-masquerade")
    else:
        tx.fill.append(f"add rule ip {t} {svc} jump mark-for-masquerade")
    for ep in st.endpoints:
        sep = sep_chain(st, ep)
        if p.affinity_timeout is not None:
            aff = aff_set(st, ep)
            if aff not in old_sets:
                tx.create.append(
                    f"add set ip {t} {aff} {{ type ipv4_addr; flags dynamic,timeout; "
                    f"timeout {p.affinity_timeout}s; }}"
                )
            tx.fill.append(f"add rule ip {t} {svc} ip saddr @{aff} goto {sep}")
        if sep in old_chains:
            continue  # an endpoint chain's content never changes for its name
        tx.create.append(f"add chain ip {t} {sep} {{ comment {_comment(f'{p.key} -> {ep}')}; }}")
        tx.create.append(f"add rule ip {t} {sep} ip saddr {ep.ip} jump mark-for-masquerade")
        if p.affinity_timeout is not None:
            tx.create.append(f"add rule ip {t} {sep} update @{aff_set(st, ep)} {{ ip saddr }}")
        tx.create.append(f"add rule ip {t} {sep} meta l4proto {p.protocol} dnat to {ep.ip}:{ep.port}")
    pick = ", ".join(f"{i} : goto {sep_chain(st, ep)}" for i, ep in enumerate(st.endpoints))
    tx.fill.append(f"add rule ip {t} {svc} numgen random mod {len(st.endpoints)} vmap {{ {pick} }}")


async def run_nft(script: str, *args: str) -> str:
    """Run ``nft -f -`` with ``script`` (one atomic transaction); raises NftError."""
    proc = await asyncio.create_subprocess_exec(
        "nft",
        *args,
        "-f",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NftError(err.decode(errors="replace").strip() or f"nft exited {proc.returncode}")
    return out.decode(errors="replace")


async def nft_usable() -> str | None:
    """None when nft can program tables here, else why not (auto mode falls back)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "nft", "list", "tables", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        return f"nft not runnable: {exc}"
    _, err = await proc.communicate()
    if proc.returncode != 0:
        return f"nft list tables failed: {err.decode(errors='replace').strip()}"
    return None


async def delete_table(table: str) -> None:
    await run_nft(f"add table ip {table}\ndelete table ip {table}\n")


async def remove_orphan_tables(prefix: str = "kybern-proxy-") -> list[str]:
    """Delete proxy tables whose process is gone (killed without its shutdown), so their stale
    DNATs cannot catch traffic for ClusterIPs that a later cluster on this host reuses.

    A table names its owner in its comment (``pid=N``); tables without one are left alone.
    """
    removed: list[str] = []
    listing = json.loads(await _nft("-j", "list", "tables") or "{}")
    for item in listing.get("nftables") or []:
        table = item.get("table") or {}
        name = table.get("name") or ""
        if table.get("family") != "ip" or not name.startswith(prefix):
            continue
        text = await _nft("list", "table", "ip", name)
        match = re.search(r'comment "kybern service proxy pid=(\d+)', text or "")
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            await delete_table(name)
            removed.append(name)
        except NftError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _nft(*args: str) -> str | None:
    proc = await asyncio.create_subprocess_exec(
        "nft", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else None
