"""``kubectl get componentstatuses`` against real servers: one running everything, one API-only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import kubernetes_validate
from support.cluster import API_ONLY, Server, running_server

WARNING = "Warning: v1 ComponentStatus is deprecated in v1.19+"


def conditions(server: Server) -> dict[str, dict]:
    out = server.kubectl("get", "componentstatuses", "-o", "json")
    assert WARNING in out.stderr
    body = json.loads(out.stdout)
    for item in body["items"]:
        kubernetes_validate.validate(item, "1.32.0", strict=True)
    return {item["metadata"]["name"]: item["conditions"][0] for item in body["items"]}


def wait_healthy(server: Server) -> dict[str, dict]:
    """The controller manager is healthy once it leads (its Lease is fresh): poll for that."""
    deadline = time.monotonic() + 60
    found: dict[str, dict] = {}
    while time.monotonic() < deadline:
        found = conditions(server)
        if all(c["status"] == "True" for c in found.values()):
            return found
        time.sleep(0.5)
    raise AssertionError(f"components never all healthy: {found}")


def test_everything_healthy_on_a_full_server(tmp_path: Path) -> None:
    with running_server(tmp_path, "--disable", "kubelet") as server:
        found = wait_healthy(server)
        assert found == {
            "controller-manager": {"type": "Healthy", "status": "True", "message": "ok"},
            "etcd-0": {"type": "Healthy", "status": "True", "message": '{"health":"true","reason":""}'},
            "scheduler": {"type": "Healthy", "status": "True", "message": "ok"},
        }
        out = server.kubectl("get", "cs")
        assert WARNING in out.stderr
        lines = [line.split() for line in out.stdout.splitlines()]
        assert lines[0] == ["NAME", "STATUS", "MESSAGE", "ERROR"]
        assert [line[:3] for line in lines[1:]] == [
            ["controller-manager", "Healthy", "ok"],
            ["etcd-0", "Healthy", '{"health":"true","reason":""}'],
            ["scheduler", "Healthy", "ok"],
        ]
        one = json.loads(server.kubectl("get", "cs", "etcd-0", "-o", "json").stdout)
        assert one["kind"] == "ComponentStatus" and one["metadata"]["name"] == "etcd-0"
        missing = server.kubectl("get", "cs", "nope", check=False)
        assert missing.returncode != 0
        assert 'componentstatuses "nope" not found' in missing.stderr
        # list and get only, as kube serves it
        resources = server.kubectl("api-resources", "-o", "wide").stdout
        (line,) = [line for line in resources.splitlines() if line.startswith("componentstatuses")]
        assert line.split()[:4] == ["componentstatuses", "cs", "v1", "false"]
        assert line.split()[5] == "get,list"
        refused = server.kubectl("delete", "cs", "scheduler", check=False)
        assert refused.returncode != 0


def test_disabled_components_are_unhealthy(tmp_path: Path) -> None:
    with running_server(tmp_path, *API_ONLY) as server:
        found = conditions(server)
        assert found["etcd-0"]["status"] == "True"
        assert found["scheduler"]["status"] == "False"
        assert "not running" in found["scheduler"]["message"]
        assert found["controller-manager"]["status"] == "False"
        out = server.kubectl("get", "cs", "--no-headers").stdout
        assert [line.split()[:2] for line in out.splitlines()] == [
            ["controller-manager", "Unhealthy"],
            ["etcd-0", "Healthy"],
            ["scheduler", "Unhealthy"],
        ]
        # no watch for this kind, as in kube
        watch = server.kubectl("get", "--raw", "/api/v1/componentstatuses?watch=true", check=False)
        assert watch.returncode != 0
