"""kubectl 1.32's apply and patch flows against a real kybern server.

``kubectl apply`` computes three-way strategic merge patches (``$setElementOrder``,
``$retainKeys``, ``$patch: delete``); ``kubectl apply --server-side`` sends apply patches and
reads conflicts; ``kubectl patch`` sends the strategic, merge and JSON patches typed by hand.
The server answers with the patch engine under test (plugins/apiserver/patching.py, apply.py).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import yaml

Cluster = Any  # tests/apiserver/conftest.py


def deployment(
    name: str,
    ns: str,
    *,
    replicas: int = 2,
    labels: dict[str, str] | None = None,
    containers: list[dict] | None = None,
    strategy: dict | None = None,
    volumes: list[dict] | None = None,
) -> str:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": containers or [{"name": "main", "image": "busybox"}]},
        },
    }
    if strategy is not None:
        spec["strategy"] = strategy
    if volumes is not None:
        spec["template"]["spec"]["volumes"] = volumes
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels if labels is not None else {"app": name},
        },
        "spec": spec,
    }
    return yaml.safe_dump(obj)


def get(cluster: Cluster, ns: str, name: str, kind: str = "deploy") -> dict:
    return cluster.kjson("get", kind, name, "-n", ns, "--show-managed-fields")


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def managers(obj: dict) -> dict[tuple[str, str], dict]:
    return {(m["manager"], m["operation"]): m for m in obj["metadata"].get("managedFields") or []}


def test_client_side_reapply_removes_what_left_the_manifest(cluster: Cluster, ns: str) -> None:
    app = {
        "name": "app",
        "image": "busybox",
        "ports": [{"containerPort": 80}, {"containerPort": 9090}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    }
    first = deployment("web", ns, labels={"app": "web", "tier": "front"}, containers=[app])
    cluster.kubectl("apply", "-f", "-", input=first)
    # a change made outside the manifest survives re-applies (three-way merge)
    cluster.kubectl("label", "deploy", "web", "-n", ns, "owner=ops")
    trimmed = {
        **app,
        "ports": [{"containerPort": 80}],
        "env": [{"name": "A", "value": "1"}],
        "image": "busybox:2",
    }
    cluster.kubectl("apply", "-f", "-", input=deployment("web", ns, containers=[trimmed]))
    d = get(cluster, ns, "web")
    assert d["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    (c,) = pod_spec(d)["containers"]
    assert c["image"] == "busybox:2"
    assert [p["containerPort"] for p in c["ports"]] == [80]
    assert c["env"] == [{"name": "A", "value": "1"}]
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    entry = managers(d)[("kubectl-client-side-apply", "Update")]
    assert entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1"
    assert (
        "f:kubectl.kubernetes.io/last-applied-configuration"
        in entry["fieldsV1"]["f:metadata"]["f:annotations"]
    )
    assert ("kubectl-label", "Update") in managers(d)


def test_client_side_reapply_follows_manifest_order(cluster: Cluster, ns: str) -> None:
    a = {"name": "a", "image": "busybox"}
    b = {"name": "b", "image": "busybox"}
    cluster.kubectl("apply", "-f", "-", input=deployment("order", ns, containers=[a, b]))
    cluster.kubectl("apply", "-f", "-", input=deployment("order", ns, containers=[b, a]))
    assert [c["name"] for c in pod_spec(get(cluster, ns, "order"))["containers"]] == ["b", "a"]
    c = {"name": "c", "image": "busybox"}
    cluster.kubectl("apply", "-f", "-", input=deployment("order", ns, containers=[b, c, a]))
    assert [c["name"] for c in pod_spec(get(cluster, ns, "order"))["containers"]] == ["b", "c", "a"]


def test_client_side_reapply_switches_strategy_and_volume_source(cluster: Cluster, ns: str) -> None:
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    volumes = [{"name": "data", "emptyDir": {}}]
    container = [
        {"name": "main", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    ]
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=deployment("strat", ns, strategy=rolling, volumes=volumes, containers=container),
    )
    recreate = {"type": "Recreate"}
    new_volumes = [{"name": "data", "configMap": {"name": "settings"}}]
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=deployment("strat", ns, strategy=recreate, volumes=new_volumes, containers=container),
    )
    d = get(cluster, ns, "strat")
    # retainKeys: the old union members are cleared, not merged in
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    (volume,) = pod_spec(d)["volumes"]
    assert "emptyDir" not in volume
    assert volume["name"] == "data" and volume["configMap"]["name"] == "settings"


def test_server_side_apply_owns_and_prunes(cluster: Cluster, ns: str) -> None:
    config = deployment(
        "ssa",
        ns,
        labels={"app": "ssa", "tier": "front"},
        containers=[
            {
                "name": "main",
                "image": "busybox",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ],
    )
    out = cluster.kubectl("apply", "--server-side", "-f", "-", input=config).stdout
    assert "serverside-applied" in out
    d = get(cluster, ns, "ssa")
    apply_entry = managers(d)[("kubectl", "Apply")]
    fields = apply_entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}, "f:tier": {}}}
    container_fields = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"main"}']
    assert container_fields["."] == {} and 'k:{"name":"B"}' in container_fields["f:env"]
    # another manager's label stays when the applier drops its own fields
    cluster.kubectl("label", "deploy", "ssa", "-n", ns, "owner=ops")
    trimmed = deployment(
        "ssa", ns, containers=[{"name": "main", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]
    )
    cluster.kubectl("apply", "--server-side", "-f", "-", input=trimmed)
    d = get(cluster, ns, "ssa")
    assert d["metadata"]["labels"] == {"app": "ssa", "owner": "ops"}
    assert pod_spec(d)["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_server_side_apply_conflicts_and_force(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment("conf", ns))
    proc = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "-f",
        "-",
        input=deployment("conf", ns, replicas=4),
        check=False,
    )
    assert proc.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas" in proc.stderr
    )
    assert cluster.kjson("get", "deploy", "conf", "-n", ns)["spec"]["replicas"] == 2
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "--force-conflicts",
        "-f",
        "-",
        input=deployment("conf", ns, replicas=4),
    )
    d = get(cluster, ns, "conf")
    assert d["spec"]["replicas"] == 4
    owners = managers(d)
    assert "f:replicas" in owners[("deployer", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owners[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]


def test_kubectl_server_side_apply_upgrades_a_client_side_apply(cluster: Cluster, ns: str) -> None:
    # kube lets the "kubectl" manager take over fields its client-side apply recorded
    cluster.kubectl("apply", "-f", "-", input=deployment("upg", ns))
    cluster.kubectl("apply", "--server-side", "-f", "-", input=deployment("upg", ns, replicas=3))
    d = get(cluster, ns, "upg")
    assert d["spec"]["replicas"] == 3
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 3


def test_server_side_apply_conflict_between_two_appliers(cluster: Cluster, ns: str) -> None:
    cm = textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: shared, namespace: {ns}}}
        data: {{key: one}}
        """)
    cluster.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=cm)
    proc = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=bob",
        "-f",
        "-",
        input=cm.replace("one", "two"),
        check=False,
    )
    assert proc.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "alice": .data.key' in proc.stderr
    # alice keeps the field; re-applying without it gives it up
    assert cluster.kjson("get", "cm", "shared", "-n", ns)["data"] == {"key": "one"}
    emptied = cm.replace("data: {key: one}\n", "")
    cluster.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=emptied)
    assert not cluster.kjson("get", "cm", "shared", "-n", ns).get("data")


def test_kubectl_patch_strategic_merge(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment("pat", ns))
    add = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1"}]}}}}
    cluster.kubectl("patch", "deploy", "pat", "-n", ns, "--type", "strategic", "-p", json.dumps(add))
    d = get(cluster, ns, "pat")
    # strategic merge patch puts a new item it cannot place by the live list first
    assert [c["name"] for c in pod_spec(d)["containers"]] == ["sidecar", "main"]
    assert pod_spec(d)["containers"][1]["image"] == "busybox"
    tolerations = {"spec": {"template": {"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}}}
    cluster.kubectl("patch", "deploy", "pat", "-n", ns, "-p", json.dumps(tolerations))
    tolerations["spec"]["template"]["spec"]["tolerations"] = [{"key": "b", "operator": "Exists"}]
    cluster.kubectl("patch", "deploy", "pat", "-n", ns, "-p", json.dumps(tolerations))
    drop = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    cluster.kubectl("patch", "deploy", "pat", "-n", ns, "-p", json.dumps(drop))
    d = get(cluster, ns, "pat")
    assert [c["name"] for c in pod_spec(d)["containers"]] == ["main"]
    assert pod_spec(d)["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert ("kubectl-patch", "Update") in managers(d)


def test_kubectl_patch_finalizers_as_a_set(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "fins", "-n", ns, "--from-literal=k=v")
    one = {"metadata": {"finalizers": ["example.com/one"]}}
    two = {"metadata": {"finalizers": ["example.com/two"]}}
    cluster.kubectl("patch", "cm", "fins", "-n", ns, "-p", json.dumps(one))
    cluster.kubectl("patch", "cm", "fins", "-n", ns, "-p", json.dumps(two))
    cm = get(cluster, ns, "fins", "cm")
    assert sorted(cm["metadata"]["finalizers"]) == ["example.com/one", "example.com/two"]
    remove = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/one", "example.com/two"]}}
    cluster.kubectl("patch", "cm", "fins", "-n", ns, "-p", json.dumps(remove))
    assert not get(cluster, ns, "fins", "cm")["metadata"].get("finalizers")


def test_kubectl_patch_errors(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "errs", "-n", ns, "--from-literal=k=v")
    failed_test = '[{"op": "test", "path": "/data/k", "value": "other"}]'
    proc = cluster.kubectl("patch", "cm", "errs", "-n", ns, "--type", "json", "-p", failed_test, check=False)
    assert proc.returncode != 0
    assert "the server rejected our request due to an error in our request" in proc.stderr
    bad_order = {"data": {"$retainKeys": ["x"], "k": "v2"}}
    proc = cluster.kubectl("patch", "cm", "errs", "-n", ns, "-p", json.dumps(bad_order), check=False)
    assert proc.returncode != 0
    assert cluster.kjson("get", "cm", "errs", "-n", ns)["data"] == {"k": "v"}


def test_server_side_apply_dropping_all_labels(cluster: Cluster, ns: str) -> None:
    cm = textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: lab, namespace: {ns}, labels: {{a: b}}}}
        data: {{key: one}}
        """)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=cm)
    uid = cluster.kjson("get", "cm", "lab", "-n", ns)["metadata"]["uid"]
    cluster.kubectl("apply", "--server-side", "-f", "-", input=cm.replace(", labels: {a: b}", ""))
    obj = cluster.kjson("get", "cm", "lab", "-n", ns)
    assert obj["metadata"]["uid"] == uid and "labels" not in obj["metadata"]
    assert obj["data"] == {"key": "one"}


def test_server_side_apply_of_equal_values_shares_ownership(cluster: Cluster, ns: str) -> None:
    """A second applier of the same value co-owns it (saved although no value changed), so
    the first giving the field up does not remove it."""
    cm = textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: co-owned, namespace: {ns}}}
        data: {{key: one}}
        """)
    cluster.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=cm)
    cluster.kubectl("apply", "--server-side", "--field-manager=bob", "-f", "-", input=cm)
    obj = cluster.kjson("get", "cm", "co-owned", "-n", ns, "--show-managed-fields")
    owners = {e["manager"] for e in obj["metadata"]["managedFields"] if "f:data" in e["fieldsV1"]}
    assert owners == {"alice", "bob"}
    emptied = cm.replace("data: {key: one}\n", "")
    cluster.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=emptied)
    assert cluster.kjson("get", "cm", "co-owned", "-n", ns)["data"] == {"key": "one"}
