"""The shipped schema subset and the kind -> model index."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
from kybern.models import apps_v1, core_v1, events_v1, meta_v1, policy_v1, schema

SOURCE = (
    Path(kubernetes_validate.__file__).parent
    / "kubernetes-json-schema"
    / "v1.32.0-local-strict"
    / "_definitions.json"
)


def test_definitions_are_the_official_ones_unchanged() -> None:
    official = json.loads(SOURCE.read_text())["$defs"]
    defs = schema.definitions()
    shipped = [name for name in defs if name in official]
    assert len(shipped) > 250
    for name in shipped:
        assert defs[name] == official[name], name
    # only the hand-written meta.k8s.io types are not in the official file
    extra = sorted(set(defs) - set(official))
    assert all(name.startswith("io.k8s.apimachinery.pkg.apis.meta.v1.") for name in extra)
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.Table" in extra


def test_every_ref_resolves_inside_the_subset() -> None:
    defs = schema.definitions()
    text = json.dumps(defs)
    refs = set(part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:])
    assert refs and refs <= set(defs)


def test_merge_hints_are_kept() -> None:
    containers = schema.definitions()["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]


@pytest.mark.parametrize(
    ("gvk", "name", "model"),
    [
        (("apps", "v1", "Deployment"), "io.k8s.api.apps.v1.Deployment", apps_v1.Deployment),
        (("", "v1", "Pod"), "io.k8s.api.core.v1.Pod", core_v1.Pod),
        (("", "v1", "Event"), "io.k8s.api.core.v1.Event", core_v1.Event),
        (("events.k8s.io", "v1", "Event"), "io.k8s.api.events.v1.Event", events_v1.Event),
        (("policy", "v1", "Eviction"), "io.k8s.api.policy.v1.Eviction", policy_v1.Eviction),
        (("", "v1", "Status"), "io.k8s.apimachinery.pkg.apis.meta.v1.Status", meta_v1.Status),
        (("meta.k8s.io", "v1", "Table"), "io.k8s.apimachinery.pkg.apis.meta.v1.Table", meta_v1.Table),
        (
            ("apps", "v1", "DeleteOptions"),
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            meta_v1.DeleteOptions,
        ),
    ],
)
def test_definition_name_and_model_for(gvk: tuple[str, str, str], name: str, model: type) -> None:
    assert schema.definition_name(*gvk) == name
    assert schema.model_for(*gvk) is model
    assert schema.name_of_model(model) == name


def test_unknown_kind() -> None:
    assert schema.definition_name("rbac.authorization.k8s.io", "v1", "Role") == "io.k8s.api.rbac.v1.Role"
    with pytest.raises(KeyError):
        schema.model_for("rbac.authorization.k8s.io", "v1", "Role")
    assert schema.name_of_model(dict) is None


def test_the_schema_only_kinds_ship_with_the_models() -> None:
    """The self-reviews and TokenRequest have no model classes, but OpenAPI and protobuf
    bodies need their schemas on an install without the test extras (kubernetes-validate)."""
    defs = schema.definitions()
    for name in (
        "io.k8s.api.authentication.v1.SelfSubjectReview",
        "io.k8s.api.authentication.v1.TokenRequest",
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
    ):
        assert name in defs, name
        refs = json.dumps(defs[name])
        assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in refs
