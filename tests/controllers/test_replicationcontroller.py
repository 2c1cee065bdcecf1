"""ReplicationControllers end to end: real server, real kubectl, the RC manager and the GC."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
from conftest import create_namespace, kubectl_json, mark_pods_ready, wait_for
from support.cluster import Server

RC_YAML = """
apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      containers:
      - name: c
        image: busybox:1.36
"""


def live_pods(server: Server, ns: str, selector: str) -> list[dict]:
    items = kubectl_json(server, "get", "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def wait_pods(server: Server, ns: str, selector: str, n: int) -> list[dict]:
    found: list[list[dict]] = [[]]

    def check() -> bool:
        found[0] = live_pods(server, ns, selector)
        return len(found[0]) == n

    wait_for(check, what=f"{n} pods with {selector}")
    return found[0]


def rc_status(server: Server, ns: str) -> dict:
    return kubectl_json(server, "get", "rc", "web", "-n", ns).get("status") or {}


def test_rc_create_scale_and_cascading_delete(server: Server, tmp_path: Path) -> None:
    ns = create_namespace(server, "rc-basic")
    manifest = tmp_path / "rc.yaml"
    manifest.write_text(RC_YAML)
    server.kubectl("create", "-n", ns, "-f", str(manifest))
    rc = kubectl_json(server, "get", "rc", "web", "-n", ns)
    # defaulted from the template, as kube does
    assert rc["spec"]["selector"] == {"app": "web", "tier": "front"}
    assert rc["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert rc["metadata"]["generation"] == 1
    created = wait_pods(server, ns, "app=web", 3)
    for pod in created:
        assert pod["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "ReplicationController",
                "name": "web",
                "uid": rc["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert pod["metadata"]["name"].startswith("web-")
    assert mark_pods_ready(server, ns, "app=web") == 3
    wait_for(lambda: rc_status(server, ns).get("availableReplicas") == 3, what="3 available")
    rc = kubectl_json(server, "get", "rc", "web", "-n", ns)
    assert rc["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }
    kubernetes_validate.validate(rc, "1.32.0", strict=True)
    for pod in live_pods(server, ns, "app=web"):
        kubernetes_validate.validate(pod, "1.32.0", strict=True)
    # kube-apiserver's columns
    table = server.kubectl("get", "rc", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert table[1].split()[:4] == ["web", "3", "3", "3"]
    wide = server.kubectl("get", "rc", "web", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert wide[1].split()[5:] == ["c", "busybox:1.36", "app=web,tier=front"]
    assert "replicationcontroller/web" in server.kubectl("get", "all", "-n", ns, "-o", "name").stdout
    # the scale subresource, through kubectl scale
    assert "scaled" in server.kubectl("scale", "rc", "web", "-n", ns, "--replicas=5").stdout
    wait_pods(server, ns, "app=web", 5)
    scale = kubectl_json(server, "get", "rc", "web", "-n", ns, "--subresource=scale")
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 5}
    assert scale["status"]["selector"] == "app=web,tier=front"
    server.kubectl("scale", "rc", "web", "-n", ns, "--replicas=1")
    wait_pods(server, ns, "app=web", 1)
    wait_for(lambda: rc_status(server, ns).get("replicas") == 1, what="status.replicas 1")
    out = server.kubectl("describe", "rc", "web", "-n", ns).stdout
    assert "replication-controller" in out and "SuccessfulDelete" in out and "SuccessfulCreate" in out
    # deleting the RC takes its pods with it (the garbage collector follows the ownerReference)
    server.kubectl("delete", "rc", "web", "-n", ns)
    wait_pods(server, ns, "app=web", 0)


def test_rc_validation_errors_reach_kubectl(server: Server, tmp_path: Path) -> None:
    ns = create_namespace(server, "rc-invalid")
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(RC_YAML.replace("  replicas: 3\n", "  replicas: 3\n  selector: {app: other}\n"))
    out = server.kubectl("create", "-n", ns, "-f", str(manifest), check=False)
    assert out.returncode != 0
    assert "spec.template.metadata.labels: Invalid value" in out.stderr
    assert "`selector` does not match template `labels`" in out.stderr


def test_orphan_cascade_keeps_pods(server: Server, tmp_path: Path) -> None:
    ns = create_namespace(server, "rc-orphan")
    manifest = tmp_path / "rc.yaml"
    manifest.write_text(RC_YAML.replace("replicas: 3", "replicas: 2"))
    server.kubectl("create", "-n", ns, "-f", str(manifest))
    wait_pods(server, ns, "app=web", 2)
    server.kubectl("delete", "rc", "web", "-n", ns, "--cascade=orphan")
    wait_for(
        lambda: all(not p["metadata"].get("ownerReferences") for p in live_pods(server, ns, "app=web")),
        what="orphaned pods",
    )
    assert len(live_pods(server, ns, "app=web")) == 2


def test_cluster_info_dump(server: Server, tmp_path: Path) -> None:
    ns = create_namespace(server, "rc-dump")
    manifest = tmp_path / "rc.yaml"
    manifest.write_text(RC_YAML.replace("replicas: 3", "replicas: 1"))
    server.kubectl("create", "-n", ns, "-f", str(manifest))
    wait_pods(server, ns, "app=web", 1)
    # the default dump (namespaces default and kube-system) lists every kind it knows, RCs too
    plain = tmp_path / "plain"
    server.kubectl("cluster-info", "dump", "--output-directory", str(plain))
    assert (plain / "default" / "replication-controllers.json").exists()
    assert (plain / "kube-system" / "replication-controllers.json").exists()
    out_dir = tmp_path / "dump"
    server.kubectl("cluster-info", "dump", "--namespaces", ns, "--output-directory", str(out_dir))
    rcs = (out_dir / ns / "replication-controllers.json").read_text()
    assert '"kind": "ReplicationController"' in rcs and '"name": "web"' in rcs
    assert (out_dir / "nodes.json").exists()
