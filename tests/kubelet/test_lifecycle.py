"""Graceful termination (preStop, SIGTERM, grace period), volumes (persistentVolumeClaim by
the local-path provisioner, hostPath, ConfigMap updates reaching mounted files), hostPort and
cgroup limits, on real Podman with the real kubectl."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from support.cluster import free_port

from .nodes import BUSYBOX, Cluster
from .test_pods import phase_ready, pod_manifest

pytestmark = pytest.mark.podman


def test_delete_runs_pre_stop_then_sigterm_within_grace(cluster: Cluster, tmp_path: Path) -> None:
    host_dir = tmp_path / "shared"
    containers = f"""
  - name: app
    image: {BUSYBOX}
    command: [sh, -c, "trap 'echo term >> /shared/log; exit 0' TERM; while true; do sleep 0.2; done"]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo prestop >> /shared/log"]}}}}
    volumeMounts: [{{name: shared, mountPath: /shared}}]
"""
    volumes = f"""  volumes:
  - {{name: shared, hostPath: {{path: {host_dir}, type: DirectoryOrCreate}}}}"""
    cluster.apply(
        pod_manifest("graceful", containers, volumes).replace(
            "terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 20"
        )
    )
    cluster.wait_for("graceful Ready", lambda: phase_ready(cluster, "graceful"))
    uid = cluster.pod("graceful")["metadata"]["uid"]
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "graceful", "--wait=true", timeout=60)
    took = time.monotonic() - started
    assert (host_dir / "log").read_text().split() == ["prestop", "term"]
    assert took < 20, f"the container exits on SIGTERM: no need to wait the whole grace period ({took:.1f}s)"
    node = cluster.nodes[0]
    assert not [c for c in node.containers() if (c.get("Labels") or {}).get("io.kybern.pod.uid") == uid]


def test_claim_is_provisioned_on_the_node_and_survives_the_pod(cluster: Cluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: local-path
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
""")
    writer = f"  - {{name: app, image: {BUSYBOX}, command: [sh, -c, 'echo kept > /data/file'], " \
             "volumeMounts: [{name: data, mountPath: /data}]}"  # fmt: skip
    extra = "  restartPolicy: Never\n  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]"
    cluster.apply(pod_manifest("writer", writer, extra))
    cluster.wait_for("writer Succeeded", lambda: cluster.pod("writer")["status"].get("phase") == "Succeeded")
    pvc = cluster.json("get", "pvc", "data")
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"]
    pv = cluster.json("get", "pv", pvc["spec"]["volumeName"])
    assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["name"] == "data"
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["node-a"]
    path = Path(pv["spec"]["hostPath"]["path"])
    assert path.is_relative_to(cluster.server.data_dir / "storage")
    assert (path / "file").read_text() == "kept\n"
    cluster.kubectl("delete", "pod", "writer", "--wait=true", timeout=60)
    assert (path / "file").exists(), "the claim's data outlives the pod"


def test_host_port_limits_and_user(cluster: Cluster) -> None:
    port = free_port()
    containers = f"""
  - name: web
    image: {BUSYBOX}
    command: [httpd, -f, -p, "8080", -h, /www]
    ports: [{{containerPort: 8080, hostPort: {port}}}]
    resources: {{limits: {{cpu: 250m, memory: 64Mi}}, requests: {{cpu: 250m, memory: 64Mi}}}}
"""
    cluster.apply(
        pod_manifest("limited", containers, "  securityContext: {runAsUser: 1234, runAsGroup: 2345}")
    )
    cluster.wait_for("limited Ready", lambda: phase_ready(cluster, "limited"))
    body = cluster.wait_for(
        "hostPort answers",
        lambda: _get(f"http://127.0.0.1:{port}/"),
    )
    assert "Hello from kybern" in body
    pod = cluster.pod("limited")
    assert pod["status"]["qosClass"] == "Guaranteed"
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("podman://")
    host_config = json.loads(cluster.nodes[0].cli("inspect", cid))[0]["HostConfig"]
    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["CpuQuota"] == 25_000 and host_config["CpuPeriod"] == 100_000
    assert cluster.nodes[0].cli("exec", cid, "id", "-u").strip() == "1234"
    assert cluster.nodes[0].cli("exec", cid, "id", "-g").strip() == "2345"
    cluster.kubectl("delete", "pod", "limited", "--wait=true", timeout=60)


def _get(url: str) -> str | None:
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError:
        return None


@pytest.mark.slow
def test_config_map_updates_reach_mounted_files(cluster: Cluster) -> None:
    cluster.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: live}\ndata: {value: one}\n")
    containers = f"""
  - name: app
    image: {BUSYBOX}
    command: [sleep, "3600"]
    volumeMounts: [{{name: cfg, mountPath: /cfg}}]
"""
    cluster.apply(pod_manifest("reader", containers, "  volumes: [{name: cfg, configMap: {name: live}}]"))
    cluster.wait_for("reader Ready", lambda: phase_ready(cluster, "reader"))
    cid = cluster.container_status("reader")["containerID"].removeprefix("podman://")
    node = cluster.nodes[0]
    assert node.cli("exec", cid, "cat", "/cfg/value") == "one"
    cluster.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: live}\ndata: {value: two}\n")
    cluster.wait_for("update in the file", lambda: node.cli("exec", cid, "cat", "/cfg/value") == "two",
                     timeout=90, interval=2)  # fmt: skip
    cluster.kubectl("delete", "pod", "reader", "--wait=true", timeout=60)


def test_memory_limit_overrun_is_reported_as_oom_killed(cluster: Cluster) -> None:
    containers = f"""
  - name: hog
    image: {BUSYBOX}
    command: [sh, -c, 'a=x; while true; do a="$a$a"; done']
    resources: {{limits: {{memory: 16Mi}}}}
"""
    cluster.apply(pod_manifest("hog", containers, "  restartPolicy: Never"))
    cluster.wait_for("hog Failed", lambda: cluster.pod("hog")["status"].get("phase") == "Failed", timeout=90)
    terminated = cluster.container_status("hog")["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137
    cluster.kubectl("delete", "pod", "hog", "--wait=true", timeout=60)


def test_active_deadline_fails_the_pod(cluster: Cluster) -> None:
    containers = f"  - {{name: app, image: {BUSYBOX}, command: [sleep, '3600']}}"
    cluster.apply(pod_manifest("deadline", containers, "  activeDeadlineSeconds: 3"))
    cluster.wait_for("deadline Failed", lambda: cluster.pod("deadline")["status"].get("phase") == "Failed")
    status = cluster.pod("deadline")["status"]
    assert status["reason"] == "DeadlineExceeded"
    assert "terminated" in status["containerStatuses"][0]["state"]
    assert any(e["reason"] == "DeadlineExceeded" for e in cluster.events("deadline"))
    cluster.kubectl("delete", "pod", "deadline", "--wait=true", timeout=60)


def test_dead_sandbox_is_recreated_and_containers_restarted(cluster: Cluster) -> None:
    containers = f"  - {{name: app, image: {BUSYBOX}, command: [sleep, '3600']}}"
    cluster.apply(pod_manifest("sandboxed", containers))
    cluster.wait_for("sandboxed Ready", lambda: phase_ready(cluster, "sandboxed"))
    uid = cluster.pod("sandboxed")["metadata"]["uid"]
    node = cluster.nodes[0]
    pods = json.loads(node.cli("pod", "ps", "--format", "json", "--filter", f"label=io.kybern.pod.uid={uid}"))
    node.cli("kill", pods[0]["InfraId"])

    def restarted() -> dict | None:
        cs = cluster.container_status("sandboxed")
        return cs if cs.get("restartCount", 0) >= 1 and "running" in cs.get("state", {}) else None

    cluster.wait_for("new sandbox and restarted container", restarted, timeout=60)
    cluster.wait_for("Ready again", lambda: phase_ready(cluster, "sandboxed"))
    assert any(e["reason"] == "SandboxChanged" for e in cluster.events("sandboxed"))
    cluster.kubectl("delete", "pod", "sandboxed", "--wait=true", timeout=60)
