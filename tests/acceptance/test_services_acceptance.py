"""Issue 7's acceptance, end to end: one ``kybern server`` with its node agent on an isolated
Podman, the nftables proxy and the cluster DNS, and every check made the way a user would, from
inside a pod with ``kubectl exec`` (busybox wget/nslookup) or from the host.

The cluster gets a service CIDR of its own (not 10.43.0.0/16): the proxy's tables of other
clusters running on this machine at the same time then never match our ClusterIPs. Names
outside the cluster are forwarded to a small authoritative server on loopback (``--dns-upstream``),
so the ExternalName check needs no outside network. Slow: containers really start.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import random
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubelet.nodes import (
    BUSYBOX,
    Cluster,
    Node,
    cleanup_podman,
    free_cluster_cidr,
    start_server,
    wait_node_ready,
)
from runtimes.podman_env import busybox_archive, write_containers_conf
from support.cluster import KUBECTL

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.timeout(900)]

REPLICAS = 3
#: what the loopback upstream resolver answers for the ExternalName target
EXTERNAL_NAME, EXTERNAL_IP = "example.org", "192.0.2.7"
SVC = "web.default.svc.cluster.local"
#: each replica answers with its own name, and is ready while /ready exists
SERVE = "hostname > /tmp/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /tmp"


def _dnshelp() -> Any:
    """tests/dns/dnshelp.py (its folder is no package: ``dns`` would shadow dnspython)."""
    path = Path(__file__).resolve().parents[1] / "dns" / "dnshelp.py"
    spec = importlib.util.spec_from_file_location("kybern_tests_dnshelp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_service_cidr() -> str:
    """A /16 under 10.100-199.0.0 that no host route overlaps (the pod CIDRs are 10.200+)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(100):
        second = random.randint(100, 199)
        if f"10.{second}." not in routes:
            return f"10.{second}.0.0/16"
    raise RuntimeError("no free /16 for the service CIDR")


@dataclass
class Env:
    """The cluster and what it takes to start its server again on the same data."""

    cluster: Cluster
    base: Path
    conf: Path
    cidr: str
    node: str
    args: tuple[str, ...]

    def restart(self) -> None:
        port = self.cluster.server.port
        self.cluster.server.stop()
        self.cluster.server = start_server(self.base, self.conf, self.cidr, self.node, *self.args, port=port)
        wait_node_ready(self.cluster, self.node)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from support.hostcheck import podman_problem

    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    base = tmp_path_factory.mktemp("svc-acceptance")
    dnshelp = _dnshelp()
    assert dnshelp.UPSTREAM_RECORDS.get(f"{EXTERNAL_NAME}.") == EXTERNAL_IP
    service_cidr = free_service_cidr()
    node_name = f"acc{random.randint(0, 99999)}"
    with dnshelp.fake_upstream() as upstream:
        args = ("--service-cidr", service_cidr, "--cluster-dns", service_cidr.replace("0.0/16", "0.10"),
                "--dns-upstream", f"127.0.0.1:{upstream}")  # fmt: skip
        conf = write_containers_conf(base / "containers.conf")
        archive = busybox_archive(base)
        cidr = free_cluster_cidr()
        node = Node(base / "data", conf, node_name)
        server = start_server(base, conf, cidr, node_name, *args)
        cluster = Cluster(server, [node], archive)
        try:
            wait_node_ready(cluster, node_name)
            node.load_image(archive)
            _deploy(cluster)
            yield Env(cluster, base, conf, cidr, node_name, args)
        finally:
            cluster.server.stop()  # the one running now: a restart replaces it
            cleanup_podman(node)


def _deploy(cluster: Cluster) -> None:
    # the readiness probe asks httpd for /ready: removing that file makes the replica unready
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": BUSYBOX,
                            "command": ["sh", "-c", SERVE],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8080},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                },
            },
        },
    }
    selector = {"app": "web"}
    port = {"name": "http", "port": 8080, "targetPort": "http"}
    objects: list[dict[str, Any]] = [
        web,
        _service("web", {"type": "NodePort", "selector": selector, "ports": [port]}),
        _service("web-headless", {"clusterIP": "None", "selector": selector, "ports": [port]}),
        _service("ext", {"type": "ExternalName", "externalName": EXTERNAL_NAME}),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "client", "image": BUSYBOX, "command": ["sleep", "100000"]}],
            },
        },
    ]
    for obj in objects:
        cluster.apply(json.dumps(obj))


def _service(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


# --- observing --------------------------------------------------------------------------------


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds
    )


def web_pods(cluster: Cluster) -> dict[str, dict[str, Any]]:
    pods = cluster.json("get", "pods", "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def ready_web(cluster: Cluster) -> dict[str, str]:
    """Ready replicas: name -> pod IP."""
    return {n: p["status"]["podIP"] for n, p in web_pods(cluster).items() if _ready(p)}


def in_client(cluster: Cluster, script: str, timeout: float = 120) -> str:
    out = cluster.kubectl("exec", "client", "--", "sh", "-c", script, check=False, timeout=timeout)
    return out.stdout + out.stderr


def fetch_in_client(cluster: Cluster, n: int, url: str = f"http://{SVC}:8080/") -> collections.Counter[str]:
    """``n`` requests from the client pod, one connection each; what answered, counted.

    This busybox's wget crashes on some errors: a failed request is whatever exit status it
    had, reported as a ``FAILED`` line rather than trusted output."""
    script = f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); wget -qO- {url} 2>/dev/null || echo FAILED; done"
    lines = in_client(cluster, script).splitlines()
    return collections.Counter(line.strip() for line in lines if line.strip())


def fetch_from_host(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode().strip()
    except OSError as exc:
        return f"error: {exc}"


def nslookup_addresses(cluster: Cluster, name: str) -> set[str]:
    """The addresses busybox nslookup prints for ``name`` (not the server's own line)."""
    out = in_client(cluster, f"nslookup {name} || true", timeout=30)
    _, _, answers = out.partition("Name:")
    return set(re.findall(r"Address(?: \d+)?:\s*([0-9.]+)\s*$", answers, re.M))


def host_address() -> str | None:
    route = subprocess.run(["ip", "-4", "route", "get", "192.0.2.254"], capture_output=True, text=True).stdout
    found = re.search(r"src (\S+)", route)
    return found.group(1) if found else None


# --- the acceptance, in order on one cluster ----------------------------------------------------


def test_service_name_answers_from_a_pod(env: Env) -> None:
    c = env.cluster
    c.wait_for("3 ready replicas and the client", lambda: len(ready_web(c)) == REPLICAS
               and _ready(c.pod("client")), timeout=240)  # fmt: skip
    pods = set(ready_web(c))
    c.wait_for("the service answering by name", lambda: set(fetch_in_client(c, 3)) <= pods, timeout=60)
    out = c.kubectl("exec", "client", "--", "wget", "-qO-", f"http://{SVC}:8080/").stdout
    assert out.strip() in pods


def test_300_requests_reach_every_ready_replica(env: Env) -> None:
    c = env.cluster
    pods = set(ready_web(c))
    seen = fetch_in_client(c, 320)
    print(f"320 requests from a pod: {dict(seen)}")
    assert set(seen) == pods and sum(seen.values()) == 320, seen


def test_unready_replica_gets_no_requests_until_it_recovers(env: Env) -> None:
    c = env.cluster
    victim = sorted(ready_web(c))[0]
    c.kubectl("exec", victim, "--", "rm", "/tmp/ready")
    c.wait_for("the replica unready", lambda: victim not in ready_web(c), timeout=30, interval=0.2)
    # the API says unready; the endpoint and then the rules follow within moments
    c.wait_for("no request reaching it", lambda: victim not in fetch_in_client(c, 10), timeout=30)
    seen = fetch_in_client(c, 100)
    assert victim not in seen and set(seen) == set(ready_web(c)), seen
    c.kubectl("exec", victim, "--", "touch", "/tmp/ready")
    c.wait_for("the replica ready again", lambda: victim in ready_web(c), timeout=30, interval=0.2)
    c.wait_for("requests reaching it again", lambda: victim in fetch_in_client(c, 30), timeout=30)


class ReadyWatch:
    """``kubectl get pods --watch``: when each web pod was first seen Ready (a watch event
    arrives within moments of the status write; polling with kubectl takes ~0.5 s a call)."""

    def __init__(self, cluster: Cluster) -> None:
        template = '{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}'
        server = cluster.server
        self.proc = subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(server.cache_dir),
             "get", "pods", "-l", "app=web", "--watch", "-o", f"jsonpath={template}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.ready_at: dict[str, float] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 2 and parts[1] == "True":
                self.ready_at.setdefault(parts[0], time.monotonic())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_scale_up_is_served_soon_after_ready(env: Env) -> None:
    c = env.cluster
    svc = c.json("get", "service", "web")
    url = f"http://{svc['spec']['clusterIP']}:8080/"
    before = set(ready_web(c))
    watch = ReadyWatch(c)
    try:
        c.wait_for("the watch listing the ready replicas", lambda: before <= set(watch.ready_at), timeout=30)
        c.kubectl("scale", "deployment", "web", "--replicas", str(REPLICAS + 1))
        # hit the ClusterIP from the host (the same rules as from a pod, and fine-grained timing)
        # until the new replica answers
        served: tuple[str, float] | None = None
        deadline = time.monotonic() + 180
        while served is None and time.monotonic() < deadline:
            name = fetch_from_host(url)
            if name.startswith("web-") and name not in before:
                served = (name, time.monotonic())
            else:
                time.sleep(0.01)
        assert served is not None, c.server.log()[-2000:]
        name, served_at = served
        c.wait_for("the watch showing it Ready", lambda: name in watch.ready_at, timeout=30)
        delay = served_at - watch.ready_at[name]
        print(f"scale-up: new replica served {delay:.3f}s after the watch showed it Ready")
    finally:
        watch.close()
    # and from inside a pod
    c.wait_for("the new replica served to a pod", lambda: name in fetch_in_client(c, 30), timeout=30)
    c.kubectl("scale", "deployment", "web", "--replicas", str(REPLICAS))
    c.wait_for(f"{REPLICAS} replicas again", lambda: len(web_pods(c)) == REPLICAS, timeout=120)


def test_node_port_answers_from_the_host(env: Env) -> None:
    c = env.cluster
    address = host_address()
    if address is None:
        pytest.skip("the host has no non-loopback IPv4 address")
    node_port = c.json("get", "service", "web")["spec"]["ports"][0]["nodePort"]
    pods = set(ready_web(c))
    answers = collections.Counter(fetch_from_host(f"http://{address}:{node_port}/") for _ in range(30))
    assert set(answers) <= pods and len(answers) > 1, answers


def test_headless_service_resolves_to_the_pod_ips(env: Env) -> None:
    c = env.cluster
    c.wait_for(f"{REPLICAS} ready replicas", lambda: len(ready_web(c)) == REPLICAS, timeout=120)
    ips = set(ready_web(c).values())
    c.wait_for(
        "the headless name giving the ready pods' IPs",
        lambda: nslookup_addresses(c, "web-headless.default.svc.cluster.local") == ips,
        timeout=30,
    )
    # and the ClusterIP service name gives its ClusterIP, not the pods
    cip = c.json("get", "service", "web")["spec"]["clusterIP"]
    assert nslookup_addresses(c, SVC) == {cip}


def test_external_name_resolves_through_the_forwarder(env: Env) -> None:
    out = in_client(env.cluster, "nslookup ext.default.svc.cluster.local || true", timeout=30)
    assert EXTERNAL_NAME in out, out  # the CNAME
    assert nslookup_addresses(env.cluster, "ext.default.svc.cluster.local") == {EXTERNAL_IP}, out
    # a name outside the cluster goes straight to the upstream
    assert nslookup_addresses(env.cluster, f"{EXTERNAL_NAME}.") == {EXTERNAL_IP}


def test_restart_keeps_every_cluster_ip(env: Env) -> None:
    c = env.cluster

    def cluster_ips() -> dict[str, list[str]]:
        items = c.json("get", "services", "-A")["items"]
        return {
            f"{s['metadata']['namespace']}/{s['metadata']['name']}": s["spec"].get("clusterIPs") or []
            for s in items
        }

    before = cluster_ips()
    expected = {"default/kubernetes", "kube-system/kube-dns", "default/web", "default/web-headless"}
    assert expected <= set(before), before
    env.restart()
    after = cluster_ips()
    assert after == before
    # the proxy rebuilt its rules from the API: the ClusterIP answers again
    url = f"http://{before['default/web'][0]}:8080/"
    c.wait_for(f"{REPLICAS} ready replicas", lambda: len(ready_web(c)) == REPLICAS, timeout=180)
    c.wait_for("the ClusterIP answering after the restart", lambda: fetch_from_host(url) in ready_web(c),
               timeout=60)  # fmt: skip
