"""Server-side apply and managed-fields tracking on the Kubernetes 1.32 schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kybern.plugins.apiserver.apply import (
    ApplyConflictError,
    ApplyError,
    fields_to_set,
    path_string,
    server_side_apply,
    set_to_fields,
    track_update,
)

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
T0, T1, T2, T3 = (f"2026-01-01T00:0{i}:00Z" for i in range(4))


def manifest(
    *, replicas: int = 2, env: list[dict] | None = None, labels: dict | None = None, **container: Any
) -> dict:
    c = {"name": "nginx", "image": "nginx:1.27", **container}
    if env is not None:
        c["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": labels if labels is not None else {"app": "web"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}},
        },
    }


def stored(obj: dict, rv: str = "7") -> dict:
    """What the server adds to an object when it stores it."""
    out = copy.deepcopy(obj)
    out["metadata"].update(uid="u-1", resourceVersion=rv, generation=1, creationTimestamp=T0)
    out.setdefault("status", {})["replicas"] = 0
    return out


def entries(obj: dict) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields", [])]


def entry(obj: dict, manager: str, operation: str) -> dict:
    for e in obj["metadata"]["managedFields"]:
        if e["manager"] == manager and e["operation"] == operation:
            return e
    raise AssertionError(f"no entry for {manager}/{operation}")


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


# --------------------------------------------------------------------------- field sets


def test_apply_create_records_the_applied_field_set() -> None:
    applied = manifest(ports=[{"containerPort": 80}], env=[{"name": "A", "value": "1"}])
    obj = server_side_apply(None, applied, "kubectl", False, DEPLOYMENT, T0)
    assert obj["spec"] == applied["spec"]
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"nginx"}': {
                                    ".": {},
                                    "f:env": {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}},
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def test_server_owned_metadata_and_status_are_never_owned_or_applied() -> None:
    applied = manifest()
    applied["metadata"].update(uid="forged", resourceVersion="1", generation=9, creationTimestamp=T3)
    applied["status"] = {"replicas": 99}
    live = stored(server_side_apply(None, manifest(), "kubectl", False, DEPLOYMENT, T0))
    obj = server_side_apply(live, applied, "kubectl", False, DEPLOYMENT, T1)
    assert obj["metadata"]["uid"] == "u-1" and obj["metadata"]["generation"] == 1
    assert obj["metadata"]["creationTimestamp"] == T0
    assert obj["status"] == {"replicas": 0}
    fields = entry(obj, "kubectl", "Apply")["fieldsV1"]
    assert set(fields) == {"f:metadata", "f:spec"}
    assert set(fields["f:metadata"]) == {"f:labels"}


def test_fieldsv1_round_trip_with_self_markers() -> None:
    fields = {
        "f:metadata": {
            "f:finalizers": {".": {}, 'v:"example.com/a"': {}},
            "f:labels": {".": {}, "f:app": {}},
        },
        "f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}},
    }
    paths = fields_to_set(fields)
    assert ("f:metadata", "f:labels") in paths
    assert ("f:metadata",) not in paths
    assert set_to_fields(paths) == fields


def test_path_strings_use_kube_notation() -> None:
    assert path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert (
        path_string(("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"nginx"}', "f:image"))
        == '.spec.template.spec.containers[name="nginx"].image'
    )
    assert (
        path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'))
        == '.spec.ports[port=80,protocol="TCP"]'
    )
    assert path_string(("f:metadata", "f:finalizers", 'v:"a/b"')) == '.metadata.finalizers[="a/b"]'


def test_set_and_atomic_lists() -> None:
    applied = manifest(args=["--a", "--b"])
    applied["metadata"]["finalizers"] = ["example.com/x"]
    applied["spec"]["template"]["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    obj = server_side_apply(None, applied, "kubectl", False, DEPLOYMENT, T0)
    paths = fields_to_set(entry(obj, "kubectl", "Apply")["fieldsV1"])
    assert ("f:metadata", "f:finalizers", 'v:"example.com/x"') in paths
    assert ("f:spec", "f:template", "f:spec", "f:tolerations") in paths
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"nginx"}', "f:args") in paths


# --------------------------------------------------------------------------- re-applying


def test_reapply_removes_fields_dropped_from_the_configuration() -> None:
    first = manifest(
        labels={"app": "web", "tier": "front"},
        ports=[{"containerPort": 80}, {"containerPort": 9090}],
        env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    )
    live = stored(server_side_apply(None, first, "kubectl", False, DEPLOYMENT, T0))
    second = manifest(ports=[{"containerPort": 80}], env=[{"name": "A", "value": "1"}])
    obj = server_side_apply(live, second, "kubectl", False, DEPLOYMENT, T1)
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert container(obj)["ports"] == [{"containerPort": 80}]
    assert container(obj)["env"] == [{"name": "A", "value": "1"}]
    assert entry(obj, "kubectl", "Apply")["time"] == T1
    # a field nobody applied (set by the server) survives the re-apply
    assert obj["metadata"]["uid"] == "u-1"


def test_reapply_without_a_field_keeps_it_when_another_manager_owns_it() -> None:
    live = stored(
        server_side_apply(
            None, manifest(labels={"app": "web", "team": "a"}), "kubectl", False, DEPLOYMENT, T0
        )
    )
    edited = copy.deepcopy(live)
    edited["metadata"]["labels"]["team"] = "b"
    track_update(live, edited, "kubectl-edit", "Update", DEPLOYMENT, T1)
    obj = server_side_apply(edited, manifest(labels={"app": "web"}), "kubectl", False, DEPLOYMENT, T2)
    assert obj["metadata"]["labels"] == {"app": "web", "team": "b"}


def test_shared_ownership_from_identical_values() -> None:
    live = stored(
        server_side_apply(None, manifest(labels={"app": "web", "x": "1"}), "alice", False, DEPLOYMENT, T0)
    )
    live = server_side_apply(live, manifest(labels={"app": "web", "x": "1"}), "bob", False, DEPLOYMENT, T1)
    assert entries(live) == [("alice", "Apply"), ("bob", "Apply")]
    obj = server_side_apply(live, manifest(labels={"app": "web"}), "alice", False, DEPLOYMENT, T2)
    assert obj["metadata"]["labels"] == {"app": "web", "x": "1"}
    obj = server_side_apply(obj, manifest(labels={"app": "web"}), "bob", False, DEPLOYMENT, T3)
    assert obj["metadata"]["labels"] == {"app": "web"}


def test_removing_a_whole_container() -> None:
    two = manifest()
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    live = stored(server_side_apply(None, two, "kubectl", False, DEPLOYMENT, T0))
    obj = server_side_apply(live, manifest(), "kubectl", False, DEPLOYMENT, T1)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_list_merge_keeps_live_only_items_in_place() -> None:
    live = stored(server_side_apply(None, manifest(), "kubectl", False, DEPLOYMENT, T0))
    updated = copy.deepcopy(live)
    updated["spec"]["template"]["spec"]["containers"].insert(0, {"name": "injected", "image": "proxy"})
    track_update(live, updated, "injector", "Update", DEPLOYMENT, T1)
    applied = manifest()
    applied["spec"]["template"]["spec"]["containers"].append({"name": "new", "image": "new"})
    obj = server_side_apply(updated, applied, "kubectl", False, DEPLOYMENT, T2)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["injected", "nginx", "new"]


def test_noop_reapply_keeps_the_time() -> None:
    live = stored(server_side_apply(None, manifest(), "kubectl", False, DEPLOYMENT, T0))
    obj = server_side_apply(live, manifest(), "kubectl", False, DEPLOYMENT, T1)
    assert entry(obj, "kubectl", "Apply")["time"] == T0
    assert {k: v for k, v in obj.items() if k != "metadata"} == {
        k: v for k, v in live.items() if k != "metadata"
    }


# --------------------------------------------------------------------------- conflicts


def client_side_applied() -> dict:
    """An object created by `kubectl apply` (client side): one Update manager owns everything."""
    new = stored(manifest())
    track_update(None, new, "kubectl-client-side-apply", "Update", DEPLOYMENT, T0)
    return new


def test_conflict_with_client_side_apply_manager() -> None:
    live = client_side_applied()
    with pytest.raises(ApplyConflictError) as err:
        server_side_apply(live, manifest(replicas=5), "kubectl", False, DEPLOYMENT, T1)
    assert str(err.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert err.value.conflicts == [("kubectl-client-side-apply", ".spec.replicas")]
    assert err.value.causes == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]


def with_last_applied(config: dict) -> dict:
    """An object `kubectl apply` (client side) created from ``config``, annotation included."""
    obj = copy.deepcopy(config)
    obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(config)}
    new = stored(obj)
    track_update(None, new, "kubectl-client-side-apply", "Update", DEPLOYMENT, T0)
    return new


def test_kubectl_takes_over_its_client_side_applied_fields() -> None:
    live = with_last_applied(manifest())
    obj = server_side_apply(live, manifest(replicas=5), "kubectl", False, DEPLOYMENT, T1)
    assert obj["spec"]["replicas"] == 5
    csa = fields_to_set(entry(obj, "kubectl-client-side-apply", "Update")["fieldsV1"])
    assert ("f:spec", "f:replicas") not in csa
    # the client-side apply annotation now records the server-side applied configuration
    assert json.loads(obj["metadata"]["annotations"][LAST_APPLIED]) == manifest(replicas=5)
    # another field manager gets no such allowance
    with pytest.raises(ApplyConflictError):
        server_side_apply(live, manifest(replicas=5), "other", False, DEPLOYMENT, T1)


def test_kubectl_still_conflicts_on_fields_it_never_applied() -> None:
    live = with_last_applied(manifest())
    scaled = copy.deepcopy(live)
    scaled["spec"]["paused"] = True
    track_update(live, scaled, "kubectl-patch", "Update", DEPLOYMENT, T1)
    applied = manifest(replicas=5)
    applied["spec"]["paused"] = False
    with pytest.raises(ApplyConflictError) as err:
        server_side_apply(scaled, applied, "kubectl", False, DEPLOYMENT, T2)
    assert err.value.conflicts == [("kubectl-patch", ".spec.paused")]


def test_same_values_do_not_conflict_and_become_shared() -> None:
    live = client_side_applied()
    obj = server_side_apply(live, manifest(), "kubectl", False, DEPLOYMENT, T1)
    assert entries(obj) == [("kubectl", "Apply"), ("kubectl-client-side-apply", "Update")]
    replicas = ("f:spec", "f:replicas")
    assert replicas in fields_to_set(entry(obj, "kubectl", "Apply")["fieldsV1"])
    assert replicas in fields_to_set(entry(obj, "kubectl-client-side-apply", "Update")["fieldsV1"])


def test_several_conflicts_are_listed_per_manager() -> None:
    live = client_side_applied()
    with pytest.raises(ApplyConflictError) as err:
        server_side_apply(live, manifest(replicas=5, image="nginx:2"), "kubectl", False, DEPLOYMENT, T1)
    assert str(err.value) == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image'
    )


def test_force_takes_ownership() -> None:
    live = client_side_applied()
    obj = server_side_apply(live, manifest(replicas=5), "kubectl", True, DEPLOYMENT, T1)
    assert obj["spec"]["replicas"] == 5
    assert ("f:spec", "f:replicas") not in fields_to_set(
        entry(obj, "kubectl-client-side-apply", "Update")["fieldsV1"]
    )
    assert ("f:spec", "f:replicas") in fields_to_set(entry(obj, "kubectl", "Apply")["fieldsV1"])


def test_conflict_between_two_appliers_names_the_apply_manager() -> None:
    live = stored(server_side_apply(None, manifest(), "alice", False, DEPLOYMENT, T0))
    with pytest.raises(ApplyConflictError) as err:
        server_side_apply(live, manifest(replicas=3), "bob", False, DEPLOYMENT, T1)
    assert str(err.value) == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'


def test_force_moving_the_last_field_drops_the_empty_entry() -> None:
    def cm(value: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "d", "uid": "u"},
            "data": {"k": value},
        }

    live = cm("1")
    track_update(None, live, "creator", "Update", CONFIGMAP, T0)
    edited = cm("2")
    edited["metadata"]["managedFields"] = live["metadata"]["managedFields"]
    track_update(live, edited, "editor", "Update", CONFIGMAP, T1)
    assert entry(edited, "editor", "Update")["fieldsV1"] == {"f:data": {"f:k": {}}}
    obj = server_side_apply(edited, cm("3"), "kubectl", True, CONFIGMAP, T2)
    assert entries(obj) == [("kubectl", "Apply"), ("creator", "Update")]
    assert obj["data"] == {"k": "3"}
    # the creator keeps the map itself (its "." member), like kube
    assert entry(obj, "creator", "Update")["fieldsV1"] == {"f:data": {}}


# --------------------------------------------------------------------------- updates


def test_update_on_create_owns_everything_but_server_metadata() -> None:
    new = stored(manifest(resources={}, ports=[{"containerPort": 80, "protocol": "TCP"}]))
    new["spec"]["template"]["spec"]["securityContext"] = {}
    track_update(None, new, "kubectl-create", "Update", DEPLOYMENT, T0)
    (only,) = new["metadata"]["managedFields"]
    assert {k: only[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    fields = only["fieldsV1"]
    assert set(fields["f:metadata"]) == {"f:labels"}
    assert fields["f:metadata"]["f:labels"] == {".": {}, "f:app": {}}
    assert "f:status" not in fields
    assert "." not in fields["f:spec"]
    item = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    # shaped like kube's record of a kubectl create: new list items and lists carry ".", empty
    # structs are leaves, structs with content are owned through their fields
    assert item == {
        ".": {},
        "f:image": {},
        "f:name": {},
        "f:ports": {
            ".": {},
            'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}},
        },
        "f:resources": {},
    }
    assert fields["f:spec"]["f:template"]["f:spec"]["f:securityContext"] == {}
    assert "." not in fields["f:spec"]["f:template"]


def test_update_takes_changed_fields_from_other_managers() -> None:
    live = client_side_applied()
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 4
    new["metadata"]["labels"]["extra"] = "x"
    track_update(live, new, "kubectl-scale", "Update", DEPLOYMENT, T1)
    scale = fields_to_set(entry(new, "kubectl-scale", "Update")["fieldsV1"])
    assert scale == {("f:spec", "f:replicas"), ("f:metadata", "f:labels", "f:extra")}
    csa = fields_to_set(entry(new, "kubectl-client-side-apply", "Update")["fieldsV1"])
    assert ("f:spec", "f:replicas") not in csa
    assert ("f:spec", "f:selector") in csa
    assert entries(new) == [("kubectl-client-side-apply", "Update"), ("kubectl-scale", "Update")]


def test_update_that_changes_nothing_adds_no_entry() -> None:
    live = client_side_applied()
    new = copy.deepcopy(live)
    new["metadata"]["resourceVersion"] = "8"
    track_update(live, new, "noop", "Update", DEPLOYMENT, T1)
    assert entries(new) == [("kubectl-client-side-apply", "Update")]
    assert entry(new, "kubectl-client-side-apply", "Update")["time"] == T0


def test_update_removing_fields_strips_them_from_owners() -> None:
    live = client_side_applied()
    new = copy.deepcopy(live)
    del new["metadata"]["labels"]
    track_update(live, new, "editor", "Update", DEPLOYMENT, T1)
    csa = fields_to_set(entry(new, "kubectl-client-side-apply", "Update")["fieldsV1"])
    assert not any(p[:2] == ("f:metadata", "f:labels") for p in csa)
    assert entries(new) == [("kubectl-client-side-apply", "Update")]


def test_status_subresource_updates_track_status_only() -> None:
    live = client_side_applied()
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 2, "readyReplicas": 2}
    track_update(live, new, "kube-controller-manager", "Update", DEPLOYMENT, T1, subresource="status")
    e = entry(new, "kube-controller-manager", "Update")
    assert e["subresource"] == "status"
    assert e["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    assert list(e) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"]


def test_main_resource_updates_do_not_own_status() -> None:
    live = client_side_applied()
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 3}
    new["spec"]["paused"] = True
    track_update(live, new, "editor", "Update", DEPLOYMENT, T1)
    assert entry(new, "editor", "Update")["fieldsV1"] == {"f:spec": {"f:paused": {}}}


def test_entries_are_ordered_apply_first_then_by_time() -> None:
    live = client_side_applied()
    later = copy.deepcopy(live)
    later["spec"]["paused"] = True
    track_update(live, later, "a-late-editor", "Update", DEPLOYMENT, T2)
    obj = server_side_apply(stored(later), manifest(), "zz-applier", False, DEPLOYMENT, T3)
    assert entries(obj) == [
        ("zz-applier", "Apply"),
        ("kubectl-client-side-apply", "Update"),
        ("a-late-editor", "Update"),
    ]


def test_supplied_managed_fields_replace_the_live_ones() -> None:
    live = client_side_applied()
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [
        {
            "manager": "rewritten",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    ]
    track_update(live, new, "editor", "Update", DEPLOYMENT, T1)
    assert entries(new) == [("rewritten", "Update")]


def test_applied_configuration_must_not_carry_managed_fields() -> None:
    applied = manifest()
    applied["metadata"]["managedFields"] = []
    with pytest.raises(ApplyError, match=r"metadata\.managedFields must be nil"):
        server_side_apply(None, applied, "kubectl", False, DEPLOYMENT, T0)


def test_status_subresource_apply_touches_status_only() -> None:
    live = client_side_applied()
    applied = manifest(replicas=9)
    applied["status"] = {"replicas": 2, "readyReplicas": 1}
    obj = server_side_apply(live, applied, "status-writer", False, DEPLOYMENT, T1, subresource="status")
    assert obj["spec"]["replicas"] == 2
    assert obj["status"] == {"replicas": 2, "readyReplicas": 1}
    e = entry(obj, "status-writer", "Apply")
    assert e["subresource"] == "status"
    assert e["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    # dropping a status field it applied removes it
    applied["status"] = {"replicas": 2}
    obj = server_side_apply(obj, applied, "status-writer", False, DEPLOYMENT, T2, subresource="status")
    assert obj["status"] == {"replicas": 2}


def test_dropping_the_last_metadata_field_keeps_metadata() -> None:
    def cm(**meta: Any) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "d", **meta},
            "data": {"k": "v"},
        }

    live = server_side_apply(
        None, cm(labels={"a": "b"}, annotations={"x": "y"}), "alice", False, CONFIGMAP, T0
    )
    live["metadata"].update(uid="u-1", resourceVersion="3", creationTimestamp=T0)
    obj = server_side_apply(live, cm(), "alice", False, CONFIGMAP, T1)
    assert {k: v for k, v in obj["metadata"].items() if k != "managedFields"} == {
        "name": "c",
        "namespace": "d",
        "uid": "u-1",
        "resourceVersion": "3",
        "creationTimestamp": T0,
    }
    assert obj["data"] == {"k": "v"}


def test_map_entries_are_members_struct_fields_are_not() -> None:
    applied = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "d", "labels": {"a": "b"}},
        "extra": {"nested": {"deep": 1}},
    }
    obj = server_side_apply(None, applied, "kubectl", False, CONFIGMAP, T0)
    assert entry(obj, "kubectl", "Apply")["fieldsV1"] == {
        "f:extra": {".": {}, "f:nested": {".": {}, "f:deep": {}}},
        "f:metadata": {"f:labels": {"f:a": {}}},
    }


@pytest.mark.parametrize(
    ("definition", "obj", "subresource"),
    [
        (CONFIGMAP, {"apiVersion": "v1", "metadata": {"name": "a"}, "data": {"k": "v"}}, ""),
        (CONFIGMAP, {"apiVersion": "v1", "metadata": {"name": "a"}, "data": {}}, ""),
        (CONFIGMAP, {"apiVersion": "v1", "metadata": {"name": "a", "labels": {}}}, ""),
        (DEPLOYMENT, stored(manifest()), ""),
        (DEPLOYMENT, stored(manifest(env=[{"name": "A", "value": "1"}], ports=[{"containerPort": 80}])), ""),
        (DEPLOYMENT, stored(manifest(labels={"x": "y", "z": ""})), "status"),
        (DEPLOYMENT, stored(manifest(replicas=0)), "scale"),
    ],
)
def test_create_tracking_matches_the_comparison(definition: str, obj: dict, subresource: str) -> None:
    """A create's managed fields come from a cache keyed by the object's shape; they must be
    exactly what comparing against an empty object gives, on the first and on a cached call,
    and an entry handed out must not be shared with the next object of that shape."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("resourceVersion", None)
    expected = copy.deepcopy(obj)
    track_update({}, expected, "writer", "Update", definition, T1, subresource)
    for _ in range(2):
        created = copy.deepcopy(obj)
        track_update(None, created, "writer", "Update", definition, T1, subresource)
        assert created == expected
    created["metadata"]["managedFields"][0]["fieldsV1"]["mutated"] = {}
    again = copy.deepcopy(obj)
    track_update(None, again, "writer", "Update", definition, T1, subresource)
    assert again == expected
