"""The PATCH engine: JSON patch, merge patch and strategic merge patch on real definitions.

Strategic merge patch cases are modelled on apimachinery's strategicpatch test vectors and on
the three-way patches ``kubectl apply`` sends (``$setElementOrder``, ``$retainKeys``,
``$deleteFromPrimitiveList``, ``$patch``), applied against the Kubernetes 1.32 schemas.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kybern.plugins.apiserver.patching import (
    INVALID_GENERIC,
    UNSUPPORTED_SMP,
    PatchError,
    apply_patch,
)

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
SERVICE = "io.k8s.api.core.v1.Service"
POD = "io.k8s.api.core.v1.Pod"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONP = "application/json-patch+json"


def smp(original: dict, patch: Any, definition: str | None = DEPLOYMENT) -> dict:
    before = copy.deepcopy(original)
    result = apply_patch(original, json.dumps(patch).encode(), SMP, definition)
    assert original == before, "apply_patch must not modify its input"
    return result


def deployment(containers: list[dict], **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
            **spec,
        },
    }


def containers_of(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def pod_spec_patch(**fields: Any) -> dict:
    return {"spec": {"template": {"spec": fields}}}


# --------------------------------------------------------------------------- merge keys


def test_containers_merge_by_name() -> None:
    live = deployment(
        [{"name": "app", "image": "app:1", "args": ["a"]}, {"name": "sidecar", "image": "sc:1"}]
    )
    out = smp(live, pod_spec_patch(containers=[{"name": "sidecar", "image": "sc:2"}]))
    assert containers_of(out) == [
        {"name": "app", "image": "app:1", "args": ["a"]},
        {"name": "sidecar", "image": "sc:2"},
    ]


def test_new_list_item_without_order_directive_goes_before_server_only_items() -> None:
    # kube's normalizeElementOrder puts patch items whose place the live list cannot tell first
    live = deployment([{"name": "a"}, {"name": "b"}])
    out = smp(live, pod_spec_patch(containers=[{"name": "c", "image": "c:1"}]))
    assert [c["name"] for c in containers_of(out)] == ["c", "a", "b"]


def test_patch_order_is_preserved_relative_to_live_order() -> None:
    # apimachinery vector "preserve the order from the patch in a merging list 2"
    live = deployment([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}])
    out = smp(live, pod_spec_patch(containers=[{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]))
    assert containers_of(out) == [
        {"name": "2", "image": "b"},
        {"name": "3", "image": "c"},
        {"name": "1", "image": "a"},
    ]


def test_container_ports_merge_by_container_port_and_delete_directive() -> None:
    live = deployment(
        [
            {
                "name": "app",
                "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}],
            }
        ]
    )
    patch = pod_spec_patch(
        **{
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {
                    "name": "app",
                    "$setElementOrder/ports": [{"containerPort": 80}],
                    "ports": [
                        {"containerPort": 443, "$patch": "delete"},
                        {"containerPort": 80, "protocol": "TCP"},
                    ],
                }
            ],
        }
    )
    out = smp(live, patch)
    assert containers_of(out)[0]["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]


def test_env_var_removed_by_three_way_patch() -> None:
    # what kubectl apply sends after env B was dropped from the manifest
    live = deployment([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
    patch = pod_spec_patch(
        **{
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {
                    "name": "app",
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                }
            ],
        }
    )
    out = smp(live, patch)
    assert containers_of(out)[0]["env"] == [{"name": "A", "value": "1"}]


def test_env_var_changed_and_added_in_set_element_order() -> None:
    live = deployment([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]}])
    patch = pod_spec_patch(
        **{
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {
                    "name": "app",
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                    "env": [{"name": "B", "value": "2"}, {"name": "C", "value": "30"}],
                }
            ],
        }
    )
    out = smp(live, patch)
    assert containers_of(out)[0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "C", "value": "30"},
    ]


def test_set_element_order_reorders_without_content_changes() -> None:
    live = deployment([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}])
    out = smp(
        live, pod_spec_patch(**{"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]})
    )
    assert [c["name"] for c in containers_of(out)] == ["c", "a", "b"]
    assert containers_of(out)[0] == {"name": "c", "image": "c"}


def test_set_element_order_keeps_server_only_items_in_place() -> None:
    # apimachinery vector "merge lists of maps": server-only items interleave by live order
    live = deployment([{"name": "1", "image": "x"}, {"name": "2", "image": "y"}])
    patch = pod_spec_patch(
        **{
            "$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "4", "image": "four"}, {"name": "3", "image": "three"}],
        }
    )
    out = smp(live, patch)
    assert [c["name"] for c in containers_of(out)] == ["4", "1", "2", "3"]


def test_set_element_order_mismatching_patch_list_is_rejected() -> None:
    live = deployment([{"name": "1"}, {"name": "3"}, {"name": "2"}])
    patch = pod_spec_patch(
        **{
            "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3", "image": "x"}, {"name": "1", "image": "y"}],
        }
    )
    with pytest.raises(PatchError) as err:
        smp(live, patch)
    assert err.value.code == 400
    assert "doesn't match" in err.value.message


def test_list_item_without_merge_key_is_rejected() -> None:
    live = deployment([{"name": "a"}])
    with pytest.raises(PatchError) as err:
        smp(live, pod_spec_patch(containers=[{"image": "x"}]))
    assert err.value.code == 400
    assert "does not contain declared merge key: name" in err.value.message


def test_service_ports_merge_by_port() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "name": "https"}]},
    }
    out = smp(live, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, SERVICE)
    assert out["spec"]["ports"] == [
        {"port": 80, "targetPort": 9090, "name": "http"},
        {"port": 443, "name": "https"},
    ]


def test_volumes_retain_keys_switch_volume_source() -> None:
    live = deployment([{"name": "app"}])
    live["spec"]["template"]["spec"]["volumes"] = [
        {"name": "data", "emptyDir": {"medium": "Memory"}},
        {"name": "other", "emptyDir": {}},
    ]
    patch = pod_spec_patch(
        **{
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "other"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}],
        }
    )
    out = smp(live, patch)
    assert out["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "cfg"}},
        {"name": "other", "emptyDir": {}},
    ]


def test_retain_keys_rejects_patch_fields_outside_the_list() -> None:
    live = deployment([{"name": "app"}], strategy={"type": "RollingUpdate"})
    with pytest.raises(PatchError) as err:
        smp(live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}})
    assert (err.value.code, err.value.message) == (400, "invalid patch format of retainKeys")


def test_deployment_strategy_rolling_update_to_recreate_clears_rolling_update() -> None:
    live = deployment(
        [{"name": "app"}],
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
    )
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    out = smp(live, patch)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    # without the directive (an old client) the map is merged and rollingUpdate survives
    out = smp(live, {"spec": {"strategy": {"type": "Recreate"}}})
    assert out["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 1}


def test_tolerations_are_replaced_whole() -> None:
    live = deployment([{"name": "app"}])
    live["spec"]["template"]["spec"]["tolerations"] = [
        {"key": "a", "operator": "Exists"},
        {"key": "b", "operator": "Equal", "value": "x"},
    ]
    out = smp(live, pod_spec_patch(tolerations=[{"key": "c", "operator": "Exists"}]))
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "c", "operator": "Exists"}]


def test_container_args_without_strategy_are_replaced() -> None:
    live = deployment([{"name": "app", "args": ["a", "b"]}])
    out = smp(live, pod_spec_patch(containers=[{"name": "app", "args": ["c"]}]))
    assert containers_of(out)[0]["args"] == ["c"]


# --------------------------------------------------------------------------- maps and directives


def test_nested_maps_merge_and_null_deletes() -> None:
    live = deployment([{"name": "app"}])
    live["metadata"]["annotations"] = {"a": "1", "b": "2"}
    out = smp(live, {"metadata": {"labels": {"tier": None, "env": "prod"}, "annotations": {"a": None}}})
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}
    assert out["metadata"]["annotations"] == {"b": "2"}
    out = smp(live, {"spec": {"template": {"spec": {"containers": [{"name": "app", "resources": None}]}}}})
    assert containers_of(out) == [{"name": "app"}]
    # a null for a field that does not exist is dropped, not stored
    out = smp(live, {"spec": {"paused": None, "minReadySeconds": 5}})
    assert "paused" not in out["spec"] and out["spec"]["minReadySeconds"] == 5


def test_new_subtree_is_taken_without_nulls_or_directives() -> None:
    live = deployment([{"name": "app"}])
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd", "gone": None}}}}}
    out = smp(live, patch)
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}


def test_patch_replace_directive_in_map() -> None:
    live = deployment([{"name": "app"}])
    live["spec"]["template"]["spec"]["nodeSelector"] = {"a": "1", "b": "2"}
    patch = pod_spec_patch(nodeSelector={"$patch": "replace", "c": "3"})
    out = smp(live, patch)
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {"c": "3"}


def test_patch_delete_directive_in_map() -> None:
    live = deployment([{"name": "app"}])
    live["spec"]["template"]["spec"]["nodeSelector"] = {"a": "1"}
    out = smp(live, pod_spec_patch(nodeSelector={"$patch": "delete"}))
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {}


def test_patch_replace_directive_in_list_replaces_the_list() -> None:
    live = deployment([{"name": "a", "image": "a"}, {"name": "b"}])
    out = smp(live, pod_spec_patch(containers=[{"name": "x", "image": "x"}, {"$patch": "replace"}]))
    assert containers_of(out) == [{"name": "x", "image": "x"}]


def test_unknown_and_unsupported_directives_are_rejected() -> None:
    live = deployment([{"name": "a"}], strategy={"type": "Recreate"})
    with pytest.raises(PatchError) as err:
        smp(live, {"spec": {"strategy": {"$patch": "frobnicate"}}})
    assert err.value.code == 400 and "unknown patch type: frobnicate" in err.value.message
    with pytest.raises(PatchError) as err:
        smp(live, pod_spec_patch(containers=[{"name": "a", "$patch": "merge"}]))
    assert err.value.message == "merging lists cannot yet be specified in the patch"
    # a directive inside a value that does not exist yet is dropped with it (kube's removeDirectives)
    out = smp(deployment([{"name": "a"}]), {"spec": {"strategy": {"$patch": "frobnicate"}}})
    assert "strategy" not in out["spec"]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    live = deployment([{"name": "app"}])
    live["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    out = smp(live, {"metadata": {"finalizers": ["example.com/b", "example.com/c"]}})
    assert sorted(out["metadata"]["finalizers"]) == ["example.com/a", "example.com/b", "example.com/c"]
    assert len(out["metadata"]["finalizers"]) == 3
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": ["example.com/a"],
            "$deleteFromPrimitiveList/finalizers": ["example.com/b", "example.com/zz"],
        }
    }
    out = smp(live, patch)
    assert out["metadata"]["finalizers"] == ["example.com/a"]


def test_delete_from_primitive_list_never_adds() -> None:
    live = deployment([{"name": "app"}])
    out = smp(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert "finalizers" not in out["metadata"]


def test_malformed_directive_keys_are_rejected() -> None:
    live = deployment([{"name": "app"}])
    with pytest.raises(PatchError) as err:
        smp(live, {"metadata": {"$deleteFromPrimitiveList": ["x"]}})
    assert (err.value.code, err.value.message) == (400, "invalid patch format of primitive list")
    with pytest.raises(PatchError) as err:
        smp(live, {"metadata": {"$setElementOrder/finalizers": "x"}})
    assert (err.value.code, err.value.message) == (400, "invalid patch format of setElementOrder list")


def test_kubectl_three_way_patch_after_manifest_edits() -> None:
    """A patch shaped like kubectl apply's after a label, a port and an env var left the manifest."""
    live = deployment(
        [
            {
                "name": "app",
                "image": "app:1",
                "imagePullPolicy": "IfNotPresent",
                "ports": [
                    {"containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 9090, "protocol": "TCP"},
                ],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ],
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
    )
    live["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"new": true}'},
            "labels": {"tier": None},
        },
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "A"}],
                            "$setElementOrder/ports": [{"containerPort": 80}],
                            "env": [{"$patch": "delete", "name": "B"}],
                            "image": "app:2",
                            "name": "app",
                            "ports": [{"$patch": "delete", "containerPort": 9090}],
                        }
                    ],
                }
            }
        },
    }
    out = smp(live, patch)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": '{"new": true}'
    }
    assert containers_of(out) == [
        {
            "name": "app",
            "image": "app:2",
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}],
        }
    ]
    assert out["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}


def test_type_change_replaces_value() -> None:
    live = deployment([{"name": "app"}])
    out = smp(live, {"spec": {"replicas": "3"}})
    assert out["spec"]["replicas"] == "3"


# --------------------------------------------------------------------------- schemas and media types


def test_fields_outside_the_schema_merge_maps_and_replace_lists() -> None:
    live = {"metadata": {"name": "x"}, "spec": {"extra": {"a": 1, "b": [1, 2]}}}
    out = smp(live, {"spec": {"extra": {"c": 3, "b": [3]}}})
    assert out["spec"]["extra"] == {"a": 1, "b": [3], "c": 3}


def test_strategic_merge_on_a_kind_without_schema_is_unsupported_media_type() -> None:
    # like a custom resource on kube-apiserver: no patch strategies known, no strategic merge
    with pytest.raises(PatchError) as err:
        apply_patch({"spec": {}}, b'{"spec": {"a": 1}}', SMP, "io.example.v1.Widget")
    assert (err.value.code, err.value.message) == (415, UNSUPPORTED_SMP)


def test_strategic_merge_without_definition_is_unsupported_media_type() -> None:
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b'{"a": 2}', SMP, None)
    assert (err.value.code, err.value.reason, err.value.message) == (
        415,
        "UnsupportedMediaType",
        UNSUPPORTED_SMP,
    )


def test_strategic_merge_body_must_be_an_object() -> None:
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b"[1]", SMP, DEPLOYMENT)
    assert err.value.code == 400
    assert "cannot unmarshal array" in err.value.message
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b"{not json", SMP, DEPLOYMENT)
    assert err.value.code == 400


def test_content_type_parameters_are_ignored_and_unknown_types_rejected() -> None:
    out = apply_patch({"a": 1}, b'{"b": 2}', "application/merge-patch+json; charset=utf-8", None)
    assert out == {"a": 1, "b": 2}
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b"{}", "text/plain", None)
    assert err.value.code == 415


# --------------------------------------------------------------------------- merge patch


def test_merge_patch_merges_maps_deletes_nulls_replaces_lists() -> None:
    live = deployment([{"name": "a", "image": "a"}, {"name": "b"}])
    patch = {
        "metadata": {"labels": {"tier": None, "x": "y"}},
        "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}},
    }
    before = copy.deepcopy(live)
    out = apply_patch(live, json.dumps(patch).encode(), MERGE, DEPLOYMENT)
    assert live == before
    assert out["metadata"]["labels"] == {"app": "web", "x": "y"}
    assert containers_of(out) == [{"name": "c"}]
    out = apply_patch(live, b'{"spec": {"replicas": 5, "selector": null}}', MERGE, None)
    assert out["spec"]["replicas"] == 5 and "selector" not in out["spec"]


def test_merge_patch_rejects_non_objects() -> None:
    for body, fragment in (
        (b"[1]", "cannot unmarshal array"),
        (b"null", "Invalid JSON Patch"),
        (b"{", "Invalid JSON"),
    ):
        with pytest.raises(PatchError) as err:
            apply_patch({"a": 1}, body, MERGE, None)
        assert err.value.code == 400
        assert fragment in err.value.message


# --------------------------------------------------------------------------- JSON patch


def test_json_patch_operations() -> None:
    live = deployment([{"name": "a", "image": "a"}])
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/new", "value": "v"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "b"}},
        {"op": "copy", "from": "/spec/replicas", "path": "/spec/minReadySeconds"},
        {"op": "move", "from": "/metadata/labels/new", "path": "/metadata/labels/moved"},
        {"op": "test", "path": "/spec/replicas", "value": 5},
    ]
    before = copy.deepcopy(live)
    out = apply_patch(live, json.dumps(ops).encode(), JSONP, DEPLOYMENT)
    assert live == before
    assert out["spec"]["replicas"] == 5 and out["spec"]["minReadySeconds"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "moved": "v"}
    assert [c["name"] for c in containers_of(out)] == ["a", "b"]


def test_json_patch_failed_test_is_invalid_with_kube_wording() -> None:
    live = deployment([{"name": "a"}])
    body = json.dumps([{"op": "test", "path": "/spec/replicas", "value": 7}]).encode()
    with pytest.raises(PatchError) as err:
        apply_patch(live, body, JSONP, DEPLOYMENT)
    assert (err.value.code, err.value.reason, err.value.message) == (422, "Invalid", INVALID_GENERIC)
    assert err.value.detail == "testing value /spec/replicas failed: test failed"


def test_json_patch_on_missing_path_is_invalid() -> None:
    for op in (
        {"op": "remove", "path": "/metadata/labels/nope"},
        {"op": "replace", "path": "/spec/nope/deeper", "value": 1},
        {"op": "add", "path": "/spec/nope/deeper", "value": 1},
    ):
        with pytest.raises(PatchError) as err:
            apply_patch(deployment([]), json.dumps([op]).encode(), JSONP, None)
        assert err.value.code == 422


def test_json_patch_must_be_an_array_of_operations() -> None:
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b'{"op": "add"}', JSONP, None)
    assert err.value.code == 400
    assert err.value.message == (
        "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
    )
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b"[1]", JSONP, None)
    assert err.value.code == 400


def test_json_patch_replacing_the_root_with_a_non_object_is_invalid() -> None:
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, b'[{"op": "replace", "path": "", "value": [1]}]', JSONP, None)
    assert err.value.code == 422


def test_json_patch_operation_limit() -> None:
    body = json.dumps([{"op": "test", "path": "/a", "value": 1}] * 10001).encode()
    with pytest.raises(PatchError) as err:
        apply_patch({"a": 1}, body, JSONP, None)
    assert err.value.code == 413
