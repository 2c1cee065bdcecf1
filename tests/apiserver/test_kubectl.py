"""The real kubectl 1.32 against a real kybern server: the everyday flows end to end."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

Cluster = Any  # tests/apiserver/conftest.py


#: the public smoke path in ../shared beside the repository (as CI lays it out)
SMOKE = Path(__file__).resolve().parents[3] / "shared" / "acceptance" / "kubectl-smoke.sh"


def valid(obj: dict) -> None:
    """The object validates against the official 1.32 schema (strict: no unknown fields)."""
    kubernetes_validate.validate(obj, "1.32.0", strict=True)


def deployment_yaml(name: str, ns: str, replicas: int = 2, image: str = "busybox") -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: {ns}, labels: {{tier: web}}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              containers:
              - name: main
                image: {image}
                ports: [{{containerPort: 8080}}]
        """)


def test_version_and_discovery(cluster: Cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["gitVersion"].startswith("v1.32")
    res = cluster.kubectl("api-resources").stdout
    for plural in ("pods", "deployments", "namespaces", "configmaps"):
        assert plural in res
    assert "apps/v1" in cluster.kubectl("api-versions").stdout
    assert "is running at" in cluster.kubectl("cluster-info").stdout


def test_builtin_namespaces(cluster: Cluster) -> None:
    names = cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{ns}" in names


def test_create_get_formats_delete(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "c1", "-n", ns, "--from-literal=a=1", "--from-literal=b=2")
    cm = cluster.kjson("get", "cm", "c1", "-n", ns)
    valid(cm)
    assert cm["data"] == {"a": "1", "b": "2"}
    assert cm["metadata"]["uid"] and cm["metadata"]["resourceVersion"].isdigit()
    assert cm["metadata"]["creationTimestamp"].endswith("Z")
    table = cluster.kubectl("get", "cm", "-n", ns).stdout
    assert table.split("\n")[0].split() == ["NAME", "DATA", "AGE"]
    assert "c1" in table and " 2 " in table
    assert cluster.kubectl("get", "cm", "c1", "-n", ns, "-o", "name").stdout.strip() == "configmap/c1"
    assert cluster.kubectl("get", "cm", "c1", "-n", ns, "-o", "jsonpath={.data.a}").stdout == "1"
    assert (
        yaml.safe_load(cluster.kubectl("get", "cm", "c1", "-n", ns, "-o", "yaml").stdout)["data"]["b"] == "2"
    )
    assert "Data" in cluster.kubectl("describe", "cm", "c1", "-n", ns).stdout
    cluster.kubectl("delete", "cm", "c1", "-n", ns)
    proc = cluster.kubectl("get", "cm", "c1", "-n", ns, check=False)
    assert proc.returncode != 0 and 'configmaps "c1" not found' in proc.stderr


def test_all_namespaces_labels_and_field_selectors(cluster: Cluster) -> None:
    a, b = cluster.namespace(), cluster.namespace()
    cluster.kubectl("create", "configmap", "x", "-n", a)
    cluster.kubectl("create", "configmap", "y", "-n", b)
    cluster.kubectl("label", "cm", "x", "-n", a, "color=red")
    out = cluster.kubectl("get", "cm", "-A", "--show-labels").stdout
    header = out.split("\n")[0].split()
    assert header[0] == "NAMESPACE" and header[-1] == "LABELS"
    assert any(line.split()[:2] == [a, "x"] and "color=red" in line for line in out.splitlines())
    out = cluster.kubectl("get", "cm", "-A", "-l", "color=red", "-o", "name").stdout.split()
    assert out == ["configmap/x"]
    out = cluster.kubectl("get", "cm", "-A", "-L", "color").stdout
    assert "COLOR" in out.split("\n")[0]
    out = cluster.kubectl(
        "get", "cm", "-A", "--field-selector", f"metadata.namespace={b}", "-o", "name"
    ).stdout
    assert out.split() == ["configmap/y"]
    out = cluster.kubectl("get", "cm", "-n", a, "--field-selector", "metadata.name!=x", "-o", "name").stdout
    assert out.strip() == ""
    bad = cluster.kubectl("get", "cm", "-A", "--field-selector", "spec.nothing=1", check=False)
    assert bad.returncode != 0 and "field label not supported: spec.nothing" in bad.stderr


def test_label_annotate_and_patches(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", ns))
    cluster.kubectl("label", "deploy", "web", "-n", ns, "env=prod")
    cluster.kubectl("annotate", "deploy", "web", "-n", ns, "note=hello")
    cluster.kubectl("patch", "deploy", "web", "-n", ns, "--type", "merge", "-p", '{"spec":{"replicas":3}}')
    cluster.kubectl(
        "patch",
        "deploy",
        "web",
        "-n",
        ns,
        "--type",
        "json",
        "-p",
        '[{"op":"add","path":"/spec/minReadySeconds","value":5}]',
    )
    cluster.kubectl(
        "patch",
        "deploy",
        "web",
        "-n",
        ns,
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:2"}]}}}}',
    )
    d = cluster.kjson("get", "deploy", "web", "-n", ns, "--show-managed-fields")
    valid(d)
    assert d["metadata"]["labels"]["env"] == "prod"
    assert d["metadata"]["annotations"]["note"] == "hello"
    assert d["spec"]["replicas"] == 3 and d["spec"]["minReadySeconds"] == 5
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
    assert d["metadata"]["generation"] == 4
    managers = {m["manager"] for m in d["metadata"].get("managedFields") or []}
    assert {"kubectl-client-side-apply", "kubectl-label", "kubectl-annotate", "kubectl-patch"} <= managers


def test_edit_with_editor_script(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    cluster.kubectl("create", "configmap", "ed", "-n", ns, "--from-literal=k=old")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/k: old/k: new/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    cluster.kubectl("edit", "cm", "ed", "-n", ns, env={"KUBE_EDITOR": str(editor), "EDITOR": str(editor)})
    assert cluster.kubectl("get", "cm", "ed", "-n", ns, "-o", "jsonpath={.data.k}").stdout == "new"


def test_scale_and_status_subresource(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("sc", ns, replicas=1))
    cluster.kubectl("scale", "deploy/sc", "-n", ns, "--replicas=4")
    assert cluster.kubectl("get", "deploy", "sc", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "4"
    scale = json.loads(
        cluster.kubectl("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/sc/scale").stdout
    )
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 4 and scale["status"]["selector"] == "app=sc"
    shown = cluster.kubectl("get", "deploy", "sc", "-n", ns, "--subresource=scale").stdout.splitlines()
    assert shown[0].split() == ["NAME", "DESIRED", "AVAILABLE"] and shown[1].split()[:2] == ["sc", "4"]
    cluster.kubectl("scale", "deploy/sc", "-n", ns, "--replicas=2", "--current-replicas=4")
    bad = cluster.kubectl("scale", "deploy/sc", "-n", ns, "--replicas=3", "--current-replicas=9", check=False)
    assert bad.returncode != 0
    # the main endpoint keeps status; the status endpoint keeps spec
    cluster.kubectl(
        "patch",
        "deploy",
        "sc",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"replicas":7},"spec":{"replicas":9}}',
    )
    d = cluster.kjson("get", "deploy", "sc", "-n", ns)
    assert d["status"]["replicas"] == 7 and d["spec"]["replicas"] == 2
    cluster.kubectl("patch", "deploy", "sc", "-n", ns, "--type=merge", "-p", '{"status":{"replicas":1}}')
    assert cluster.kjson("get", "deploy", "sc", "-n", ns)["status"]["replicas"] == 7


def test_multi_document_apply_and_delete_f(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    doc = deployment_yaml("md", ns) + textwrap.dedent(f"""\
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: md, namespace: {ns}}}
        spec:
          selector: {{app: md}}
          ports: [{{port: 80, targetPort: 8080}}]
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: md, namespace: {ns}}}
        data: {{a: b}}
        """)
    path = tmp_path / "all.yaml"
    path.write_text(doc)
    out = cluster.kubectl("apply", "-f", str(path)).stdout
    assert (
        "deployment.apps/md created" in out and "service/md created" in out and "configmap/md created" in out
    )
    out = cluster.kubectl("apply", "-f", str(path)).stdout
    assert "unchanged" in out
    svc = cluster.kjson("get", "svc", "md", "-n", ns)
    valid(svc)
    cluster.kubectl("delete", "-f", str(path))
    left = cluster.kubectl("get", "deploy,svc,cm", "-n", ns, "-o", "name").stdout.split()
    assert "deployment.apps/md" not in left and "service/md" not in left


def test_server_side_apply(cluster: Cluster, ns: str) -> None:
    out = cluster.kubectl("apply", "--server-side", "-f", "-", input=deployment_yaml("ssa", ns)).stdout
    assert "serverside-applied" in out
    d = cluster.kjson("get", "deploy", "ssa", "-n", ns, "--show-managed-fields")
    assert any(
        m["manager"] == "kubectl" and m["operation"] == "Apply" for m in d["metadata"]["managedFields"]
    )
    cluster.kubectl("scale", "deploy/ssa", "-n", ns, "--replicas=5")
    conflict = cluster.kubectl(
        "apply", "--server-side", "-f", "-", input=deployment_yaml("ssa", ns), check=False
    )
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower()
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=deployment_yaml("ssa", ns)
    )
    assert cluster.kjson("get", "deploy", "ssa", "-n", ns)["spec"]["replicas"] == 2


class LineReader:
    """Collects a process's stdout lines in a thread, so a test can wait for one to appear."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.lines):
                return True
            time.sleep(0.1)
        return predicate(self.lines)


def test_watch_with_kubectl(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "w1", "-n", ns)
    proc = subprocess.Popen(
        cluster.cmd("get", "cm", "-n", ns, "-w", "--request-timeout=40s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = LineReader(proc)

    def names(lines: list[str]) -> list[str]:
        return [line.split()[0] for line in lines if line.strip()]

    try:
        assert reader.wait_for(lambda lines: "w1" in names(lines)), reader.lines  # the initial list
        cluster.kubectl("create", "configmap", "w2", "-n", ns)
        cluster.kubectl("label", "cm", "w1", "-n", ns, "x=y")
        assert reader.wait_for(lambda lines: names(lines).count("w1") >= 2 and "w2" in names(lines)), (
            reader.lines
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert names(reader.lines)[0] == "NAME"


def test_wait_for_delete_and_finalizers(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "fin", "-n", ns)
    cluster.kubectl(
        "patch",
        "cm",
        "fin",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["example.com/hold"]}}',
    )
    cluster.kubectl("delete", "cm", "fin", "-n", ns, "--wait=false")
    cm = cluster.kjson("get", "cm", "fin", "-n", ns)
    assert cm["metadata"]["deletionTimestamp"]
    add = cluster.kubectl(
        "patch",
        "cm",
        "fin",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/more"}]',
        check=False,
    )
    assert add.returncode != 0 and "no new finalizers" in add.stderr
    waiter = subprocess.Popen(
        cluster.cmd("wait", "--for=delete", "cm/fin", "-n", ns, "--timeout=30s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    cluster.kubectl("patch", "cm", "fin", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    _, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert cluster.kubectl("get", "cm", "fin", "-n", ns, check=False).returncode != 0


def test_namespace_lifecycle(cluster: Cluster) -> None:
    ns = cluster.namespace()
    n = cluster.kjson("get", "ns", ns)
    valid(n)
    assert n["status"]["phase"] == "Active" and n["spec"]["finalizers"] == ["kubernetes"]
    cluster.kubectl("delete", "ns", ns, "--wait=false")
    n = cluster.kjson("get", "ns", ns)
    assert n["status"]["phase"] == "Terminating" and n["metadata"]["deletionTimestamp"]
    bad = cluster.kubectl("create", "configmap", "late", "-n", ns, check=False)
    assert bad.returncode != 0 and "being terminated" in bad.stderr
    missing = cluster.kubectl("create", "configmap", "x", "-n", "no-such-ns", check=False)
    assert 'namespaces "no-such-ns" not found' in missing.stderr
    # the namespace controller's part: clear spec.finalizers through /finalize
    n["spec"]["finalizers"] = []
    cluster.kubectl("replace", "--raw", f"/api/v1/namespaces/{ns}/finalize", "-f", "-", input=json.dumps(n))
    assert cluster.kubectl("get", "ns", ns, check=False).returncode != 0


def test_errors_as_kubectl_prints_them(cluster: Cluster, ns: str) -> None:
    bad = cluster.kubectl("apply", "-f", "-", input=deployment_yaml("bad", ns, replicas=-1), check=False)
    want = (
        'The Deployment "bad" is invalid: spec.replicas: Invalid value: -1: '
        + "must be greater than or equal to 0"
    )
    assert want in bad.stderr
    text = deployment_yaml("strict", ns).replace("replicas:", "replicaz:")
    bad = cluster.kubectl("apply", "-f", "-", input=text, check=False)
    assert 'strict decoding error: unknown field "spec.replicaz"' in bad.stderr
    warn = cluster.kubectl("apply", "--validate=warn", "-f", "-", input=text, check=False)
    assert 'unknown field "spec.replicaz"' in warn.stderr
    cluster.kubectl("create", "configmap", "dup", "-n", ns)
    again = cluster.kubectl("create", "configmap", "dup", "-n", ns, check=False)
    assert 'configmaps "dup" already exists' in again.stderr


@pytest.mark.slow
def test_acceptance_smoke_api_only(cluster: Cluster) -> None:
    if not SMOKE.exists():
        pytest.skip("acceptance script not present")
    proc = subprocess.run(
        ["bash", str(SMOKE), str(cluster.kubeconfig), "busybox", "--api-only"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout
