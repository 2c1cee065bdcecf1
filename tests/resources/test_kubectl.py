"""The built-in kinds through a real ``kybern server`` and kubectl 1.32: tables, defaults, errors."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cluster import API_ONLY, Server, running_server


class Cluster:
    """The shared real-server helper plus the few conveniences these tests use."""

    def __init__(self, server: Server, base: Path) -> None:
        self.server = server
        self.base = base

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> Any:
        if input is not None:
            manifest = self.base / f"manifest-{uuid.uuid4().hex[:8]}.yaml"
            manifest.write_text(input)
            args = tuple(str(manifest) if a == "-" else a for a in args)
        return self.server.kubectl(*args, check=check)

    def kjson(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def namespace(self) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with (
        tempfile.TemporaryDirectory(prefix="kybern-resources-") as tmp,
        running_server(Path(tmp), *API_ONLY) as server,
    ):
        yield Cluster(server, Path(tmp))


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: "nginx:1.25", ports: [{containerPort: 80}]}
"""


def test_deployment_defaults_and_table(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT.replace("NS", ns))
    deploy = cluster.kjson("get", "deployment", "web", "-n", ns)
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    assert deploy["metadata"]["generation"] == 1
    out = cluster.kubectl("get", "deployments", "-n", ns, "-o", "wide").stdout.splitlines()
    assert out[0].split() == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert out[1].split()[:4] == ["web", "0/1", "0", "0"]
    assert out[1].split()[-3:] == ["nginx", "nginx:1.25", "app=web"]


def test_pod_table_and_field_selector(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.kubectl("run", "box", "-n", ns, "--image=busybox", "--restart=Never", "--", "sleep", "1")
    pod = cluster.kjson("get", "pod", "box", "-n", ns)
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["status"]["qosClass"] == "BestEffort"
    lines = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES",
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["box", "0/1", "Pending", "0"]
    selected = cluster.kubectl(
        "get", "pods", "-n", ns, "--field-selector", "status.phase=Pending", "-o", "name"
    )
    assert selected.stdout.split() == ["pod/box"]
    none = cluster.kubectl(
        "get", "pods", "-n", ns, "--field-selector", "spec.restartPolicy=Always", "-o", "name"
    )
    assert none.stdout.split() == []


def test_validation_error_as_kubectl_prints_it(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bad = DEPLOYMENT.replace("NS", ns).replace(
        "labels: {app: web}}\n    spec", "labels: {app: other}}\n    spec"
    )
    proc = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert 'The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: ' in proc.stderr
    assert "`selector` does not match template `labels`" in proc.stderr


def test_service_and_configmap_tables(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=a=1", "--from-literal=b=2")
    lines = cluster.kubectl("get", "configmaps", "cfg", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["cfg", "2"]
    cluster.kubectl("create", "secret", "generic", "s", "-n", ns, "--from-literal=k=v")
    assert cluster.kubectl("get", "secrets", "s", "-n", ns).stdout.splitlines()[1].split()[:3] == [
        "s",
        "Opaque",
        "1",
    ]
    ns_line = cluster.kubectl("get", "namespace", ns).stdout.splitlines()
    assert ns_line[0].split() == ["NAME", "STATUS", "AGE"]
    assert ns_line[1].split()[:2] == [ns, "Active"]
