"""The ReplicaSet controller through the real API server, kubectl and the Python client."""

from __future__ import annotations

import json

from conftest import (
    client_for,
    create_namespace,
    kubectl_json,
    mark_pods_ready,
    run,
    set_pod_ready,
    wait_for,
)
from support.cluster import Server


def rs_manifest(name: str, replicas: int, app: str | None = None) -> str:
    app = app or name
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app, "tier": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
                },
            },
        }
    )


def apply(server: Server, ns: str, manifest: str) -> None:
    path = server.data_dir.parent / f"m-{abs(hash(manifest))}.json"
    path.write_text(manifest)
    server.kubectl("apply", "-n", ns, "-f", str(path))


def pods(server: Server, ns: str, selector: str) -> list[dict]:
    items = kubectl_json(server, "get", "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def wait_pods(server: Server, ns: str, selector: str, n: int) -> list[dict]:
    found: list[list[dict]] = []

    def check() -> bool:
        found[:] = [pods(server, ns, selector)]
        return len(found[0]) == n

    wait_for(check, what=f"{n} pods with {selector}")
    return found[0]


def rs_status(server: Server, ns: str, name: str) -> dict:
    return kubectl_json(server, "get", "rs", name, "-n", ns).get("status") or {}


def test_replicaset_creates_replaces_and_reports_status(server: Server) -> None:
    ns = create_namespace(server, "rs-basic")
    apply(server, ns, rs_manifest("web", 3))
    rs = kubectl_json(server, "get", "rs", "web", "-n", ns)
    created = wait_pods(server, ns, "app=web", 3)
    for pod in created:
        (ref,) = pod["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": rs["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert pod["metadata"]["name"].startswith("web-")
        assert pod["metadata"]["labels"] == {"app": "web", "tier": "web"}
    wait_for(lambda: rs_status(server, ns, "web").get("replicas") == 3, what="status.replicas 3")
    status = rs_status(server, ns, "web")
    assert status["fullyLabeledReplicas"] == 3 and status["observedGeneration"] == 1
    assert not status.get("readyReplicas")
    assert mark_pods_ready(server, ns, "app=web") == 3
    wait_for(lambda: rs_status(server, ns, "web").get("availableReplicas") == 3, what="3 available")
    assert rs_status(server, ns, "web")["readyReplicas"] == 3
    # a deleted pod comes back
    victim = created[0]["metadata"]["name"]
    server.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
    wait_for(
        lambda: (lambda ps: len(ps) == 3 and victim not in {p["metadata"]["name"] for p in ps})(
            pods(server, ns, "app=web")
        ),
        what="replacement pod",
    )
    out = server.kubectl("describe", "rs", "web", "-n", ns).stdout
    assert "SuccessfulCreate" in out and "replicaset-controller" in out and "Created pod: web-" in out
    # kubectl get rs columns come from status
    line = server.kubectl("get", "rs", "web", "-n", ns, "--no-headers").stdout.split()
    assert line[:3] == ["web", "3", "3"]


def test_scale_up_and_down_prefers_deleting_not_ready_pods(server: Server) -> None:
    ns = create_namespace(server, "rs-scale")
    apply(server, ns, rs_manifest("api", 2))
    wait_pods(server, ns, "app=api", 2)
    mark_pods_ready(server, ns, "app=api")
    ready_names = {p["metadata"]["name"] for p in pods(server, ns, "app=api")}
    server.kubectl("scale", "rs", "api", "-n", ns, "--replicas=5")
    wait_pods(server, ns, "app=api", 5)
    server.kubectl("scale", "rs", "api", "-n", ns, "--replicas=2")
    left = wait_pods(server, ns, "app=api", 2)
    assert {p["metadata"]["name"] for p in left} == ready_names, [
        (p["metadata"]["name"], p.get("status")) for p in left
    ]
    out = server.kubectl("describe", "rs", "api", "-n", ns).stdout
    assert "SuccessfulDelete" in out and "Deleted pod: api-" in out
    server.kubectl("scale", "rs", "api", "-n", ns, "--replicas=0")
    wait_pods(server, ns, "app=api", 0)
    wait_for(lambda: not rs_status(server, ns, "api").get("replicas"), what="status.replicas 0")


def test_adopts_orphans_and_releases_pods_that_stop_matching(server: Server) -> None:
    ns = create_namespace(server, "rs-adopt")

    async def orphan() -> None:
        async with client_for(server) as client:
            pod = await client.create(
                "pods",
                {
                    "metadata": {"name": "orphan", "labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
                ns,
            )
            await set_pod_ready(client, pod)

    run(orphan())
    apply(server, ns, rs_manifest("db", 2))
    found = wait_pods(server, ns, "app=db", 2)
    names = {p["metadata"]["name"] for p in found}
    assert "orphan" in names
    adopted = kubectl_json(server, "get", "pod", "orphan", "-n", ns)
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "db"
    assert adopted["metadata"]["ownerReferences"][0]["controller"] is True
    # relabel an owned pod: it is released (ownerReference removed) and replaced
    server.kubectl("label", "pod", "orphan", "-n", ns, "app=other", "--overwrite")
    wait_for(
        lambda: not kubectl_json(server, "get", "pod", "orphan", "-n", ns)["metadata"].get("ownerReferences"),
        what="released pod",
    )
    wait_pods(server, ns, "app=db", 2)


def test_min_ready_seconds_delays_availability(server: Server) -> None:
    ns = create_namespace(server, "rs-minready")
    manifest = json.loads(rs_manifest("slow", 2))
    manifest["spec"]["minReadySeconds"] = 2
    apply(server, ns, json.dumps(manifest))
    wait_pods(server, ns, "app=slow", 2)
    mark_pods_ready(server, ns, "app=slow")
    wait_for(lambda: rs_status(server, ns, "slow").get("readyReplicas") == 2, what="2 ready")
    # no pod event follows the end of minReadySeconds: the controller must look again by itself
    # (well before the informers' 30 s resync)
    wait_for(
        lambda: rs_status(server, ns, "slow").get("availableReplicas") == 2, timeout=15, what="2 available"
    )
