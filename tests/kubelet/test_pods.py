"""The node agent on real Podman, driven with the real kubectl: pods start, serve, restart,
back off, probe, read ConfigMaps and Secrets, and leave nothing behind when deleted."""

from __future__ import annotations

import base64
import urllib.request

import pytest

from .nodes import BUSYBOX, Cluster

pytestmark = pytest.mark.podman


def pod_manifest(name: str, containers: str, extra: str = "", node: str = "node-a") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
{extra}
  containers:
{containers}
"""


def phase_ready(cluster: Cluster, name: str) -> bool:
    status = cluster.pod(name).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return status.get("phase") == "Running" and bool(ready) and ready[0]["status"] == "True"


def test_node_registers_with_capacity_lease_and_pod_cidr(cluster: Cluster) -> None:
    node = cluster.json("get", "node", "node-a")
    status = node["status"]
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == "v1.32.0-kybern"
    assert info["containerRuntimeVersion"].startswith("podman://")
    assert info["operatingSystem"] == "linux" and info["architecture"] and info["kernelVersion"]
    assert status["capacity"]["pods"] == "110" and int(status["capacity"]["cpu"]) >= 1
    assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    prefix = cluster.cidr.split(".0.0/")[0]  # type: ignore[attr-defined]
    assert node["spec"]["podCIDR"].startswith(prefix + ".") and node["spec"]["podCIDR"].endswith("/24")
    lease = cluster.json("get", "lease", "node-a", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "node-a" and lease["spec"]["renewTime"]


def test_httpd_pod_runs_serves_and_reads_config(cluster: Cluster) -> None:
    cluster.apply(
        """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello, mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret}
data: {password: """
        + base64.b64encode(b"s3cret").decode()
        + "}\n"
    )
    containers = f"""
  - name: httpd
    image: {BUSYBOX}
    command: ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
    ports: [{{containerPort: 8080}}]
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: web-config, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: web-secret, key: password}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: MESSAGE, value: "$(GREETING) from $(POD_NAME)"}}
    envFrom: [{{configMapRef: {{name: web-config}}, prefix: CFG_}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
    volumeMounts:
    - {{name: config, mountPath: /etc/config}}
    - {{name: secret, mountPath: /etc/secret}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: info, mountPath: /etc/podinfo}}
"""
    volumes = """  volumes:
  - {name: config, configMap: {name: web-config, items: [{key: greeting, path: greeting.txt}]}}
  - {name: secret, secret: {secretName: web-secret, defaultMode: 0400}}
  - {name: scratch, emptyDir: {medium: Memory}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}"""
    cluster.apply(pod_manifest("web", containers, volumes))
    cluster.wait_for("web Ready", lambda: phase_ready(cluster, "web"))
    pod = cluster.pod("web")
    ip = pod["status"]["podIP"]
    assert pod["status"]["podIPs"] == [{"ip": ip}] and pod["status"]["hostIP"]
    body = urllib.request.urlopen(f"http://{ip}:8080/", timeout=5).read().decode()
    assert "Hello from kybern" in body
    cs = pod["status"]["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("podman://") and cs["imageID"]
    cid = cs["containerID"].removeprefix("podman://")
    node = cluster.nodes[0]
    # the request shows in the container's log (busybox httpd -v logs each request)
    cluster.wait_for("the request in the container's log", lambda: "response:200" in node.logs(cid))
    env = dict(line.split("=", 1) for line in node.cli("exec", cid, "env").splitlines() if "=" in line)
    assert env["GREETING"] == "hello" and env["PASSWORD"] == "s3cret" and env["POD_NAME"] == "web"
    assert env["POD_IP"] == ip and env["MESSAGE"] == "hello from web" and env["CFG_mode"] == "fast"
    assert node.cli("exec", cid, "cat", "/etc/config/greeting.txt") == "hello"
    assert node.cli("exec", cid, "cat", "/etc/secret/password") == "s3cret"
    assert node.cli("exec", cid, "stat", "-L", "-c", "%a", "/etc/secret/password").strip() == "400"
    assert 'app="web"' in node.cli("exec", cid, "cat", "/etc/podinfo/labels")
    assert "tmpfs" in node.cli("exec", cid, "sh", "-c", "grep ' /scratch ' /proc/mounts")
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
                     "Ready": "True", "PodReadyToStartContainers": "True"}  # fmt: skip
    assert pod["status"]["qosClass"] == "BestEffort" and pod["status"]["startTime"]
    reasons = {e["reason"] for e in cluster.events("web")}
    assert {"Pulled", "Created", "Started"} <= reasons


def test_killed_container_is_restarted(cluster: Cluster) -> None:
    before = cluster.container_status("web")
    cid = before["containerID"].removeprefix("podman://")
    cluster.nodes[0].cli("kill", cid)

    def restarted() -> dict | None:
        cs = cluster.container_status("web")
        return cs if cs.get("restartCount") == 1 and "running" in cs.get("state", {}) else None

    cs = cluster.wait_for("restart after kill", restarted)
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    assert cs["lastState"]["terminated"]["containerID"] == before["containerID"]
    assert cs["containerID"] != before["containerID"]


def test_failing_liveness_restarts_and_failing_readiness_unreadies(cluster: Cluster) -> None:
    containers = f"""
  - name: live
    image: {BUSYBOX}
    command: ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 3600"]
    livenessProbe: {{exec: {{command: [test, -f, /tmp/ok]}}, periodSeconds: 1, failureThreshold: 1}}
  - name: unready
    image: {BUSYBOX}
    command: ["sleep", "3600"]
    readinessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1}}
  - name: slowstart
    image: {BUSYBOX}
    command: ["sh", "-c", "sleep 2; touch /tmp/started; sleep 3600"]
    startupProbe: {{exec: {{command: [test, -f, /tmp/started]}}, periodSeconds: 1, failureThreshold: 30}}
    livenessProbe: {{exec: {{command: [test, -f, /tmp/started]}}, periodSeconds: 1, failureThreshold: 1}}
"""
    cluster.apply(pod_manifest("probed", containers))

    def live_restarted() -> bool:
        cs = cluster.container_status("probed")
        return cs.get("restartCount", 0) >= 1

    cluster.wait_for("liveness restart", live_restarted, timeout=60)
    pod = cluster.pod("probed")
    assert pod["status"]["phase"] == "Running"
    unready = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "unready")
    assert "running" in unready["state"] and unready["ready"] is False and unready["restartCount"] == 0

    # liveness only starts once the startup probe succeeded: it would have failed before
    def slow_started() -> dict | None:
        statuses = cluster.pod("probed")["status"]["containerStatuses"]
        return next((x for x in statuses if x["name"] == "slowstart" and x["started"]), None)

    slow = cluster.wait_for("slowstart started", slow_started)
    assert slow["restartCount"] == 0 and slow["ready"]
    conds = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainersNotReady"
    events = cluster.events("probed")
    messages = [e["message"] for e in events if e["reason"] == "Unhealthy"]
    assert any(m.startswith("Liveness probe failed") for m in messages)
    assert any(m.startswith("Readiness probe failed") for m in messages)
    assert any(e["reason"] == "Killing" and "failed liveness probe" in e["message"] for e in events)
    assert all(
        e["source"] == {"component": "kubelet", "host": "node-a"}
        for e in events
        if e["reason"] == "Unhealthy"
    )
    assert any(e.get("count", 1) > 1 for e in events if e["reason"] == "Unhealthy"), "repeats are aggregated"


def test_bad_image_backs_off(cluster: Cluster) -> None:
    cluster.apply(pod_manifest("badimage", "  - {name: app, image: localhost/does-not-exist:1.0}"))

    def waiting_reason() -> str | None:
        state = cluster.container_status("badimage").get("state", {})
        reason = state.get("waiting", {}).get("reason")
        return reason if reason == "ImagePullBackOff" else None

    cluster.wait_for("ImagePullBackOff", waiting_reason, timeout=60)
    reasons = [(e["type"], e["reason"]) for e in cluster.events("badimage")]
    assert (
        ("Normal", "Pulling") in reasons
        and ("Warning", "Failed") in reasons
        and ("Normal", "BackOff") in reasons
    )
    assert cluster.pod("badimage")["status"]["phase"] == "Pending"


def test_crashing_container_goes_into_crash_loop_back_off(cluster: Cluster) -> None:
    cluster.apply(
        pod_manifest("crasher", f"  - {{name: app, image: {BUSYBOX}, command: [sh, -c, 'exit 3']}}")
    )

    def crash_looping() -> dict | None:
        cs = cluster.container_status("crasher")
        waiting = cs.get("state", {}).get("waiting", {})
        return cs if waiting.get("reason") == "CrashLoopBackOff" and cs.get("restartCount", 0) >= 2 else None

    cs = cluster.wait_for("CrashLoopBackOff", crash_looping, timeout=60)
    assert (
        "back-off 10s" in cs["state"]["waiting"]["message"]
        or "back-off 20s" in cs["state"]["waiting"]["message"]
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cluster.pod("crasher")["status"]["phase"] == "Running"
    # the delays grow: restarts 1 and 2 are 0 s and 10 s apart, the next back-off is 20 s
    cs = cluster.wait_for(
        "back-off 20s", lambda: (c := cluster.container_status("crasher")) and
        "back-off 20s" in c.get("state", {}).get("waiting", {}).get("message", "") and c, timeout=40,
    )  # fmt: skip
    assert any(e["reason"] == "BackOff" for e in cluster.events("crasher"))


def test_run_to_completion_pods_finish(cluster: Cluster) -> None:
    mount = "volumeMounts: [{name: work, mountPath: /work}]"
    containers = f"  - {{name: app, image: {BUSYBOX}, command: [sh, -c, 'cat /work/ready'], {mount}}}"
    extra = f"""  restartPolicy: Never
  initContainers:
  - {{name: prepare, image: {BUSYBOX}, command: [sh, -c, 'echo yes > /work/ready'], {mount}}}
  volumes: [{{name: work, emptyDir: {{}}}}]"""
    cluster.apply(pod_manifest("once", containers, extra))
    cluster.wait_for("Succeeded", lambda: cluster.pod("once")["status"].get("phase") == "Succeeded")
    status = cluster.pod("once")["status"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_deleting_pods_removes_every_podman_object(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    uids = {cluster.pod(name)["metadata"]["uid"] for name in ("web", "probed", "crasher", "badimage", "once")}
    assert any(c["Labels"].get("io.kybern.pod.uid") in uids for c in node.containers())
    cluster.kubectl(
        "delete", "pod", "web", "probed", "crasher", "badimage", "once", "--wait=true", timeout=90
    )
    assert cluster.json("get", "pods")["items"] == []
    left = [c["Names"] for c in node.containers() if (c.get("Labels") or {}).get("io.kybern.pod.uid") in uids]
    assert left == []
    assert [p for p in node.cli("pod", "ps", "-q").split() if p] == []
    assert not any((cluster.server.data_dir / "pods" / uid).exists() for uid in uids)
