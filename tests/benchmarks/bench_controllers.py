"""Controller benchmark: Deployments from apply to all pods Running.

Not a test (prints figures, asserts nothing timed). Run it alone:

    .venv/bin/python tests/benchmarks/bench_controllers.py [--replicas 1000] [--rolling 100] [--nodes 10]
    .venv/bin/python tests/benchmarks/bench_controllers.py --podman [--podman-replicas 10]

Hollow nodes (simulated runtime, one process): seconds from ``kubectl apply`` of a
``--replicas`` Deployment to all pods Running and the Deployment available, then seconds for
a rolling update (new image) of a ``--rolling`` Deployment to complete.

``--podman``: a real node agent on isolated Podman; seconds from ``kubectl apply`` of a
``--podman-replicas`` busybox httpd Deployment to all pods Running, against
``podman kube play`` of the same YAML on the same storage, and their ratio (goal <= 0.8).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # "support" and "kubelet" are the tests' packages here

from kubelet.nodes import BUSYBOX, Cluster, kubelet_cluster, start_hollow  # noqa: E402


def deployment(name: str, replicas: int, image: str, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if command:
        container["command"] = command
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def running_count(cluster: Cluster, app: str) -> int:
    pods = cluster.json("get", "pods", "-l", f"app={app}")["items"]
    return sum(
        1
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") == "Running"
    )


def timed_rollout(cluster: Cluster, manifest: dict[str, Any], replicas: int) -> float:
    path = cluster.server.data_dir.parent / f"{manifest['metadata']['name']}.json"
    path.write_text(json.dumps(manifest))
    started = time.monotonic()
    cluster.kubectl("apply", "-f", str(path))
    name = manifest["metadata"]["name"]
    cluster.kubectl("rollout", "status", f"deployment/{name}", "--timeout=900s", timeout=960)
    cluster.wait_for(
        f"{replicas} Running", lambda: running_count(cluster, name) >= replicas, timeout=900, interval=0.2
    )
    return time.monotonic() - started


def hollow(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-controllers-"))
    per_node = (args.replicas + args.rolling) // args.nodes + 20
    server = start_hollow(base, args.nodes, "hollow-", "64", "256Gi", per_node)
    cluster = Cluster(server)
    try:
        cluster.wait_for(
            "hollow nodes Ready",
            lambda: len(cluster.ready_nodes()) == args.nodes,
            timeout=120,
        )
        seconds = timed_rollout(cluster, deployment("big", args.replicas, "example/app:1.0"), args.replicas)
        print(f"hollow: {args.replicas}-replica Deployment, apply -> all Running: {seconds:.1f} s")
        seconds = timed_rollout(cluster, deployment("roll", args.rolling, "example/app:1.0"), args.rolling)
        print(f"hollow: {args.rolling}-replica Deployment, apply -> all Running: {seconds:.1f} s")
        started = time.monotonic()
        cluster.kubectl("set", "image", "deployment/roll", "app=example/app:2.0")
        cluster.kubectl("rollout", "status", "deployment/roll", "--timeout=900s", timeout=960)
        print(f"hollow: rolling update of {args.rolling} replicas: {time.monotonic() - started:.1f} s")
    finally:
        server.stop()


def podman(args: argparse.Namespace) -> None:
    n = args.podman_replicas
    httpd = ["httpd", "-f", "-p", "8080", "-h", "/www"]
    with kubelet_cluster(Path(tempfile.mkdtemp(prefix="bench-controllers-podman-"))) as cluster:
        node = cluster.nodes[0]
        play = deployment("play", n, BUSYBOX, httpd)
        play_path = cluster.server.data_dir.parent / "play.json"
        play_path.write_text(json.dumps(play))
        started = time.monotonic()
        node.cli("kube", "play", str(play_path))
        play_seconds = time.monotonic() - started
        play_pods = len(node.cli("pod", "ps", "-q").split())
        node.cli("kube", "down", str(play_path), check=False)
        seconds = timed_rollout(cluster, deployment("web", n, BUSYBOX, httpd), n)
        print(f"podman kube play, {n} replicas ({play_pods} pods started): {play_seconds:.1f} s")
        print(f"kybern, {n}-replica Deployment, apply -> all Running: {seconds:.1f} s")
        print(f"ratio kybern / podman kube play: {seconds / play_seconds:.2f} (goal <= 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--rolling", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--podman", action="store_true", help="compare with podman kube play instead")
    parser.add_argument("--podman-replicas", type=int, default=10)
    args = parser.parse_args()
    if args.podman:
        podman(args)
    else:
        hollow(args)


if __name__ == "__main__":
    main()
