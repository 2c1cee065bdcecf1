"""The Deployment controller with the real kubectl: rollout status/history/undo/restart/pause/
resume, scale, RollingUpdate bounds, Recreate, ProgressDeadlineExceeded."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import (
    FakeKubelet,
    client_for,
    create_namespace,
    kubectl_async,
    kubectl_json,
    run,
    until,
    wait_for,
)
from support.cluster import Server

pytestmark = pytest.mark.timeout(180)


def deployment(name: str, replicas: int = 3, image: str = "busybox:1.36", **spec: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def apply(server: Server, ns: str, obj: dict) -> None:
    path = server.data_dir.parent / f"{ns}-{obj['metadata']['name']}.json"
    path.write_text(json.dumps(obj))
    server.kubectl("apply", "-n", ns, "-f", str(path))


def replicasets(server: Server, ns: str) -> dict[str, dict]:
    items = kubectl_json(server, "get", "rs", "-n", ns)["items"]
    return {rs["metadata"]["name"]: rs for rs in items}


def image_of(obj: dict) -> str:
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def not_broken(pod: dict) -> bool:
    return "broken" not in pod["spec"]["containers"][0]["image"]


def rollout_status(server: Server, ns: str, name: str, timeout: str = "60s", check: bool = True):
    return server.kubectl(
        "rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={timeout}", check=check
    )


def test_create_rolling_update_history_undo(server: Server) -> None:
    ns = create_namespace(server, "dep-roll")
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

    async def go() -> None:
        async with FakeKubelet(server, ns) as kubelet:
            await asyncio.to_thread(apply, server, ns, deployment("web", strategy=strategy))
            out = await kubectl_async(
                server, "rollout", "status", "deployment/web", "-n", ns, "--timeout=60s"
            )
            assert 'deployment "web" successfully rolled out' in out.stdout
            rss = replicasets(server, ns)
            assert len(rss) == 1
            (rs,) = rss.values()
            hash_ = rs["metadata"]["labels"]["pod-template-hash"]
            assert rs["metadata"]["name"] == f"web-{hash_}"
            assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
            ann = rs["metadata"]["annotations"]
            assert ann["deployment.kubernetes.io/revision"] == "1"
            assert ann["deployment.kubernetes.io/desired-replicas"] == "3"
            assert ann["deployment.kubernetes.io/max-replicas"] == "4"
            assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
            d = kubectl_json(server, "get", "deploy", "web", "-n", ns)
            st = d["status"]
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
            assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (
                3,
                3,
                3,
                3,
            )
            assert st["observedGeneration"] == d["metadata"]["generation"]
            conds = {c["type"]: c for c in st["conditions"]}
            assert conds["Available"]["status"] == "True"
            assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
            assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
            describe = (await kubectl_async(server, "describe", "deploy", "web", "-n", ns)).stdout
            assert f"Scaled up replica set web-{hash_} from 0 to 3" in describe
            assert "deployment-controller" in describe

            # rolling update: never fewer than 3 ready, never more than 4 pods
            kubelet.arm()
            await kubectl_async(server, "set", "image", "deployment/web", "c=busybox:1.37", "-n", ns)
            await kubectl_async(
                server, "annotate", "deployment/web", "-n", ns, "kubernetes.io/change-cause=image 1.37"
            )
            out = await kubectl_async(
                server, "rollout", "status", "deployment/web", "-n", ns, "--timeout=90s"
            )
            assert "successfully rolled out" in out.stdout
            assert kubelet.min_ready is not None and kubelet.min_ready >= 3, kubelet.min_ready
            assert kubelet.max_alive <= 4, kubelet.max_alive
            rss = replicasets(server, ns)
            assert len(rss) == 2
            new = next(
                r
                for r in rss.values()
                if r["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.37")
            )
            old = next(r for r in rss.values() if r is not new)
            assert new["spec"]["replicas"] == 3 and old["spec"]["replicas"] == 0
            assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
            pods = kubectl_json(server, "get", "pods", "-n", ns)["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            assert {p["spec"]["containers"][0]["image"] for p in live} == {"busybox:1.37"}
            describe = (await kubectl_async(server, "describe", "deploy", "web", "-n", ns)).stdout
            assert f"Scaled down replica set {old['metadata']['name']} from" in describe

            history = (await kubectl_async(server, "rollout", "history", "deployment/web", "-n", ns)).stdout
            lines = [line.split() for line in history.splitlines() if line[:1].isdigit()]
            assert [line[0] for line in lines] == ["1", "2"], history
            assert "image 1.37" in history

            # undo: the revision-1 ReplicaSet comes back as revision 3
            await kubectl_async(server, "rollout", "undo", "deployment/web", "-n", ns)
            await kubectl_async(server, "rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")
            d = kubectl_json(server, "get", "deploy", "web", "-n", ns)
            assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            rss = replicasets(server, ns)
            assert len(rss) == 2  # no new ReplicaSet: the old one was reused
            back = rss[old["metadata"]["name"]]
            assert back["spec"]["replicas"] == 3
            assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
            history = (await kubectl_async(server, "rollout", "history", "deployment/web", "-n", ns)).stdout
            assert [line.split()[0] for line in history.splitlines() if line[:1].isdigit()] == ["2", "3"]

            # --to-revision=2
            await kubectl_async(server, "rollout", "undo", "deployment/web", "-n", ns, "--to-revision=2")
            await kubectl_async(server, "rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")
            d = kubectl_json(server, "get", "deploy", "web", "-n", ns)
            assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.37"
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
            assert d["metadata"]["annotations"].get("kubernetes.io/change-cause") == "image 1.37"

            # restart: a new template annotation, hence a new ReplicaSet
            await kubectl_async(server, "rollout", "restart", "deployment/web", "-n", ns)
            await kubectl_async(server, "rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")
            rss = replicasets(server, ns)
            assert len(rss) == 3
            restarted = [
                r
                for r in rss.values()
                if "kubectl.kubernetes.io/restartedAt"
                in (r["spec"]["template"]["metadata"].get("annotations") or {})
            ]
            assert len(restarted) == 1 and restarted[0]["spec"]["replicas"] == 3

    run(go())


def test_scale_pause_resume(server: Server) -> None:
    ns = create_namespace(server, "dep-scale")

    async def go() -> None:
        async with FakeKubelet(server, ns):
            await asyncio.to_thread(apply, server, ns, deployment("api", replicas=2))
            await kubectl_async(server, "rollout", "status", "deployment/api", "-n", ns, "--timeout=60s")
            out = await kubectl_async(server, "scale", "deployment/api", "-n", ns, "--replicas=5")
            assert "deployment.apps/api scaled" in out.stdout
            out = await kubectl_async(
                server, "rollout", "status", "deployment/api", "-n", ns, "--timeout=60s"
            )
            (rs,) = replicasets(server, ns).values()
            assert rs["spec"]["replicas"] == 5
            assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"

            async def columns() -> bool:
                out = await kubectl_async(server, "get", "deploy", "api", "-n", ns, "--no-headers")
                return out.stdout.split()[:4] == ["api", "5/5", "5", "5"]

            await until(columns, what="READY 5/5")

            # paused: template changes do not roll out
            await kubectl_async(server, "rollout", "pause", "deployment/api", "-n", ns)
            await kubectl_async(server, "set", "image", "deployment/api", "c=busybox:1.37", "-n", ns)

            def paused_cond() -> bool:
                d = kubectl_json(server, "get", "deploy", "api", "-n", ns)
                c = {c["type"]: c for c in d["status"].get("conditions") or []}
                return (
                    c.get("Progressing", {}).get("reason") == "DeploymentPaused"
                    and d["status"].get("observedGeneration") == d["metadata"]["generation"]
                )

            await until(paused_cond, what="DeploymentPaused")
            assert len(replicasets(server, ns)) == 1
            await kubectl_async(server, "rollout", "resume", "deployment/api", "-n", ns)
            await kubectl_async(server, "rollout", "status", "deployment/api", "-n", ns, "--timeout=90s")
            assert len(replicasets(server, ns)) == 2
            await kubectl_async(server, "scale", "deployment/api", "-n", ns, "--replicas=0")

            async def no_pods() -> bool:
                async with client_for(server) as c:
                    pods = (await c.list("pods", ns))["items"]
                return not [p for p in pods if not p["metadata"].get("deletionTimestamp")]

            await until(no_pods, what="all pods gone")
            await kubectl_async(server, "rollout", "status", "deployment/api", "-n", ns, "--timeout=30s")

    run(go())


def test_progress_deadline_exceeded_keeps_old_pods(server: Server) -> None:
    ns = create_namespace(server, "dep-stuck")
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

    async def go() -> None:
        # the "broken" image never becomes ready
        async with FakeKubelet(
            server, ns, ready_if=lambda p: "broken" not in p["spec"]["containers"][0]["image"]
        ):
            d = deployment("stuck", replicas=2, strategy=strategy, progressDeadlineSeconds=3)
            await asyncio.to_thread(apply, server, ns, d)
            await kubectl_async(server, "rollout", "status", "deployment/stuck", "-n", ns, "--timeout=60s")
            await kubectl_async(server, "set", "image", "deployment/stuck", "c=busybox:broken", "-n", ns)
            out = await kubectl_async(
                server, "rollout", "status", "deployment/stuck", "-n", ns, "--timeout=60s", check=False
            )
            assert out.returncode != 0
            assert 'deployment "stuck" exceeded its progress deadline' in out.stderr + out.stdout
            st = kubectl_json(server, "get", "deploy", "stuck", "-n", ns)["status"]
            conds = {c["type"]: c for c in st["conditions"]}
            assert conds["Progressing"]["status"] == "False"
            assert conds["Progressing"]["reason"] == "ProgressDeadlineExceeded"
            assert conds["Available"]["status"] == "True"
            assert (
                st["availableReplicas"] == 2 and st["updatedReplicas"] == 1 and st["unavailableReplicas"] == 1
            )

    run(go())


def test_recreate_removes_old_pods_before_new_ones(server: Server) -> None:
    ns = create_namespace(server, "dep-recreate")

    async def go() -> None:
        async with FakeKubelet(server, ns):
            await asyncio.to_thread(
                apply, server, ns, deployment("job", replicas=2, strategy={"type": "Recreate"})
            )
            await kubectl_async(server, "rollout", "status", "deployment/job", "-n", ns, "--timeout=60s")
            seen_images: list[set[str]] = []

            async def watch() -> None:
                async with client_for(server) as c:
                    alive: dict[str, str] = {}
                    listing = await c.list("pods", ns)
                    for p in listing["items"]:
                        alive[p["metadata"]["name"]] = p["spec"]["containers"][0]["image"]
                    async for ev in c.watch(
                        "pods", ns, resource_version=listing["metadata"]["resourceVersion"]
                    ):
                        if ev.type not in ("ADDED", "MODIFIED", "DELETED"):
                            continue
                        name = ev.object["metadata"]["name"]
                        if ev.type == "DELETED" or ev.object["metadata"].get("deletionTimestamp"):
                            alive.pop(name, None)
                        else:
                            alive[name] = ev.object["spec"]["containers"][0]["image"]
                        seen_images.append(set(alive.values()))

            watcher = asyncio.create_task(watch())
            await kubectl_async(server, "set", "image", "deployment/job", "c=busybox:1.37", "-n", ns)
            await kubectl_async(server, "rollout", "status", "deployment/job", "-n", ns, "--timeout=60s")
            await asyncio.sleep(0.5)
            watcher.cancel()
            assert seen_images, "no pod events seen"
            assert all(len(images) <= 1 for images in seen_images), seen_images
            assert seen_images[-1] == {"busybox:1.37"}

    run(go())


def test_scaling_mid_rollout_is_proportional(server: Server) -> None:
    ns = create_namespace(server, "dep-prop")
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

    async def go() -> None:
        async with FakeKubelet(
            server, ns, ready_if=lambda p: "broken" not in p["spec"]["containers"][0]["image"]
        ):
            await asyncio.to_thread(apply, server, ns, deployment("prop", replicas=4, strategy=strategy))
            await kubectl_async(server, "rollout", "status", "deployment/prop", "-n", ns, "--timeout=60s")
            await kubectl_async(server, "set", "image", "deployment/prop", "c=busybox:broken", "-n", ns)

            def sizes() -> dict[str, int]:
                by_image = {}
                for rs in replicasets(server, ns).values():
                    by_image[rs["spec"]["template"]["spec"]["containers"][0]["image"]] = rs["spec"][
                        "replicas"
                    ]
                return by_image

            await until(lambda: sizes() == {"busybox:1.36": 4, "busybox:broken": 1}, what="a stuck rollout")
            await kubectl_async(server, "scale", "deployment/prop", "-n", ns, "--replicas=8")
            # 8 + maxSurge 1 = 9 pods shared 4:1 like before (kube's proportional scaling)
            await until(lambda: sizes() == {"busybox:1.36": 7, "busybox:broken": 2}, what="7 old and 2 new")

    run(go())


def test_adopts_a_matching_orphan_replicaset(server: Server) -> None:
    ns = create_namespace(server, "dep-adopt")
    d = deployment("adopt", replicas=2)
    template = json.loads(json.dumps(d["spec"]["template"]))
    template["metadata"]["labels"]["pod-template-hash"] = "legacy"
    orphan = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "adopt-legacy", "labels": template["metadata"]["labels"]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": template["metadata"]["labels"]},
            "template": template,
        },
    }
    apply(server, ns, orphan)
    apply(server, ns, d)

    def adopted() -> bool:
        rss = replicasets(server, ns)
        rs = rss.get("adopt-legacy") or {}
        refs = rs.get("metadata", {}).get("ownerReferences") or []
        return (
            len(rss) == 1 and bool(refs) and refs[0]["kind"] == "Deployment" and rs["spec"]["replicas"] == 2
        )

    wait_for(adopted, what="the orphan ReplicaSet adopted as the new one and scaled to 2")


def test_revision_history_limit_deletes_the_oldest_replicasets(server: Server) -> None:
    ns = create_namespace(server, "dep-history")

    async def go() -> None:
        async with FakeKubelet(server, ns):
            await asyncio.to_thread(apply, server, ns, deployment("hist", replicas=1, revisionHistoryLimit=1))
            await kubectl_async(server, "rollout", "status", "deployment/hist", "-n", ns, "--timeout=60s")
            for tag in ("1.37", "1.38"):
                await kubectl_async(server, "set", "image", "deployment/hist", f"c=busybox:{tag}", "-n", ns)
                await kubectl_async(server, "rollout", "status", "deployment/hist", "-n", ns, "--timeout=60s")

            def revisions() -> list[str]:
                rss = replicasets(server, ns).values()
                return sorted(
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in rss
                )

            await until(lambda: revisions() == ["2", "3"], what="revisions 2 and 3 only")
            history = (await kubectl_async(server, "rollout", "history", "deployment/hist", "-n", ns)).stdout
            assert [line.split()[0] for line in history.splitlines() if line[:1].isdigit()] == ["2", "3"]

    run(go())
