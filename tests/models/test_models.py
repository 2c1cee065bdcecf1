"""Generated models: round trips, agreement with the official 1.32 schema, codec behaviour."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import msgspec
import pytest
from kybern.models import apps_v1, codec, core_v1, meta_v1, schema
from kybern.models._generate import generate

from .samples import DEPLOYMENT, NODE, POD, REALISTIC, SERVICE, full_sample, realistic_lists

MODELS_DIR = Path(schema.__file__).parent
OFFICIAL = json.loads(
    (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / "v1.32.0-local-strict"
        / "_definitions.json"
    ).read_text()
)["$defs"]


def top_level_kinds() -> list[str]:
    """Every shipped definition that is an API kind (has a group-version-kind) and has a model."""
    names = []
    for name, definition in sorted(schema.definitions().items()):
        if definition.get("x-kubernetes-group-version-kind"):
            try:
                schema.model_by_name(name)
            except KeyError:
                continue
            names.append(name)
    return names


KINDS = top_level_kinds()
ALL_REALISTIC = {**REALISTIC, **realistic_lists()}


def validate_official(obj: dict[str, Any], name: str) -> None:
    """Strict validation against the official definitions (plus kybern's hand-written meta types)."""
    defs = {**schema.definitions(), **OFFICIAL}
    validator_cls = jsonschema.validators.validator_for(
        {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )
    validator = validator_cls({"$defs": defs, "$ref": "#/$defs/" + name})
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_the_served_kinds_are_all_there() -> None:
    assert len(KINDS) >= 50
    for gvk in REALISTIC:
        assert schema.definition_name(*gvk) in KINDS, gvk


@pytest.mark.parametrize("name", KINDS)
def test_full_sample_round_trips_and_matches_the_schema(name: str) -> None:
    """Every property of every kind, recursively, survives decode -> encode unchanged."""
    model = schema.model_by_name(name)
    sample = full_sample(name)
    obj = codec.decode(json.dumps(sample).encode(), model)
    assert json.loads(codec.encode(obj)) == sample
    assert codec.unknown_fields(sample, model) == []
    assert codec.to_builtins(obj) == sample
    assert codec.convert(sample, model) == obj
    validate_official(json.loads(codec.encode(obj)), name)


@pytest.mark.parametrize("gvk", sorted(ALL_REALISTIC), ids="/".join)
def test_realistic_sample_round_trips(gvk: tuple[str, str, str]) -> None:
    sample = ALL_REALISTIC[gvk]
    model = schema.model_for(*gvk)
    obj = codec.decode(json.dumps(sample), model)
    assert json.loads(codec.encode(obj)) == _without_nulls(sample)
    assert codec.unknown_fields(sample, model) == []
    validate_official(json.loads(codec.encode(obj)), schema.definition_name(*gvk))


def _without_nulls(value: Any) -> Any:
    """kube drops null fields on the way in; so do the models (None means unset)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("sample", [DEPLOYMENT, POD, SERVICE, NODE], ids=lambda s: s["kind"])
def test_representative_objects_validate_with_kubernetes_validate(sample: dict[str, Any]) -> None:
    model = schema.model_for(*_gvk(sample))
    encoded = json.loads(codec.encode(codec.decode(json.dumps(sample).encode(), model)))
    kubernetes_validate.validate(encoded, "1.32.0", strict=True)


def test_kubernetes_validate_catches_what_the_models_drop() -> None:
    """The validation above has teeth: an unknown field is refused by the official schema."""
    broken = json.loads(json.dumps(POD))
    broken["spec"]["containers"][0]["imagez"] = "nginx"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.32.0", strict=True)
    assert codec.unknown_fields(broken, core_v1.Pod) == ["spec.containers[0].imagez"]
    assert "imagez" not in codec.encode(codec.decode(json.dumps(broken).encode(), core_v1.Pod)).decode()


def _gvk(obj: dict[str, Any]) -> tuple[str, str, str]:
    group, _, version = obj["apiVersion"].rpartition("/")
    return group, version, obj["kind"]


def test_struct_options_and_attribute_names() -> None:
    assert apps_v1.Deployment.__struct_config__.omit_defaults
    with pytest.raises(TypeError):
        apps_v1.Deployment("apps/v1")  # kw_only
    pod = core_v1.Pod()
    assert all(getattr(pod, f) is None for f in pod.__struct_fields__)
    status = core_v1.PodStatus(podIP="10.0.0.1")
    assert codec.encode(status) == b'{"podIP":"10.0.0.1"}'
    assert codec.encode(meta_v1.ListMeta(continue_="abc", resourceVersion="7")) == (
        b'{"continue":"abc","resourceVersion":"7"}'
    )
    assert codec.decode(b'{"continue":"tok"}', meta_v1.ListMeta).continue_ == "tok"
    port = core_v1.ServicePort(port=80, targetPort="http")
    assert codec.decode(codec.encode(port), core_v1.ServicePort).targetPort == "http"
    assert codec.decode(b'{"port":80,"targetPort":8080}', core_v1.ServicePort).targetPort == 8080
    limits = codec.decode(b'{"limits":{"cpu":1,"memory":"1Gi","x":0.5}}', core_v1.ResourceRequirements).limits
    assert limits == {"cpu": 1, "memory": "1Gi", "x": 0.5}


def test_meta_table_types() -> None:
    table = meta_v1.Table(
        apiVersion="meta.k8s.io/v1",
        kind="Table",
        metadata=meta_v1.ListMeta(resourceVersion="5"),
        columnDefinitions=[
            meta_v1.TableColumnDefinition(name="Name", type="string", format="name", priority=0)
        ],
        rows=[meta_v1.TableRow(cells=["web", 3, None], object={"kind": "PartialObjectMetadata"})],
    )
    out = json.loads(codec.encode(table))
    assert out["columnDefinitions"][0] == {"name": "Name", "type": "string", "format": "name", "priority": 0}
    assert out["rows"] == [{"cells": ["web", 3, None], "object": {"kind": "PartialObjectMetadata"}}]
    assert (
        schema.model_for("meta.k8s.io", "v1", "PartialObjectMetadataList")
        is meta_v1.PartialObjectMetadataList
    )


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            {"spec": {"replicas": "3"}},
            "spec.replicas",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "image": 5}]}}}},
            "spec.template.spec.containers[1].image",
            "json: cannot unmarshal number 5 into Go struct field"
            " Container.spec.template.spec.containers.image of type string",
        ),
        (
            {"metadata": {"labels": {"app": "web", "replicas": 3}}},
            "metadata.labels.replicas",
            "json: cannot unmarshal number 3 into Go struct field ObjectMeta.metadata.labels of type string",
        ),
        (
            {"spec": {"paused": "yes"}},
            "spec.paused",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool",
        ),
        (
            {"spec": {"template": {"spec": {"containers": {"name": "a"}}}}},
            "spec.template.spec.containers",
            "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers"
            " of type []v1.Container",
        ),
        (
            {"metadata": {"generation": 1.5}},
            "metadata.generation",
            "json: cannot unmarshal number 1.5 into Go struct field"
            " ObjectMeta.metadata.generation of type int64",
        ),
        (["not", "an", "object"], "", "json: cannot unmarshal array into Go value of type v1.Deployment"),
        (
            {"spec": {"replicas": 2**31}},
            "spec.replicas",
            "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas"
            " of type int32",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "lots"}}}]}}}},
            "spec.template.spec.containers[0].resources.limits.cpu",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    ],
)
def test_wrong_types_raise_decode_error_with_a_path(body: Any, path: str, message: str) -> None:
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(json.dumps(body).encode(), apps_v1.Deployment)
    assert info.value.path == path
    assert info.value.message == message
    with pytest.raises(codec.DecodeError) as info:
        codec.convert(body, apps_v1.Deployment)
    assert info.value.path == path


def test_malformed_json_and_yaml() -> None:
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(b'{"metadata": {', core_v1.Pod)
    assert info.value.path == ""
    with pytest.raises(codec.DecodeError):
        codec.decode(b"a: [unclosed", core_v1.Pod, yaml=True)


def test_yaml_decoding_keeps_timestamps_and_dates_as_strings() -> None:
    text = b"""
apiVersion: v1
kind: Pod
metadata:
  name: web
  creationTimestamp: 2024-05-06T07:08:09Z
  labels:
    released: 2024-05-06
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - containerPort: 80
"""
    pod = codec.decode(text, core_v1.Pod, yaml=True)
    assert pod.metadata.creationTimestamp == "2024-05-06T07:08:09Z"
    assert pod.metadata.labels == {"released": "2024-05-06"}
    assert pod.spec.containers[0].ports[0].containerPort == 80
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(b"spec:\n  containers:\n  - name: [1]\n", core_v1.Pod, yaml=True)
    assert info.value.path == "spec.containers[0].name"


def test_unknown_fields() -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"anything": "goes"}, "nmae": "x"},
        "spec": {
            "replicaz": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "x"},
                        {"name": "b", "imagez": "y", "ports": [{"prot": 1}]},
                    ]
                },
            },
        },
        "extra": {"deep": 1},
    }
    assert codec.unknown_fields(body, apps_v1.Deployment) == [
        "metadata.nmae",
        "spec.replicaz",
        "spec.template.spec.containers[1].imagez",
        "spec.template.spec.containers[1].ports[0].prot",
        "extra",
    ]
    assert codec.unknown_fields(DEPLOYMENT, apps_v1.Deployment) == []
    # free-form values (RawExtension, FieldsV1) have no unknown fields; maps of structs are walked
    event = {"type": "ADDED", "object": {"whatever": {"x": 1}}}
    assert codec.unknown_fields(event, meta_v1.WatchEvent) == []
    status = {"containerStatuses": [{"name": "a", "allocatedResourcesStatus": [{"name": "x", "bogus": 1}]}]}
    assert codec.unknown_fields(status, core_v1.PodStatus) == [
        "containerStatuses[0].allocatedResourcesStatus[0].bogus"
    ]


def test_duplicate_fields() -> None:
    data = (
        b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"x":"1","x":"2"},"name":"b"},'
        b'"spec":{"containers":[{"name":"c","image":"i"},{"name":"d","image":"i","image":"j"}]},"kind":"Pod"}'
    )
    assert codec.duplicate_fields(data) == [
        "metadata.labels.x",
        "metadata.name",
        "spec.containers[1].image",
        "kind",
    ]
    assert codec.duplicate_fields(json.dumps(POD).encode()) == []
    assert codec.duplicate_fields(b"{not json") == []
    # the value kept is the last one, as with kube
    assert codec.decode(data, core_v1.Pod).metadata.name == "b"


def test_generator_output_is_up_to_date() -> None:
    """Regenerating into a scratch directory reproduces the committed modules byte for byte."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        written = generate(out)
        assert len(written) == 10
        for path in [*written, out / "definitions.json.gz"]:
            assert path.read_bytes() == (MODELS_DIR / path.name).read_bytes(), path.name


def test_decoding_10k_pods_is_fast() -> None:
    data = json.dumps(POD).encode()
    decoder_warmup = codec.decode(data, core_v1.Pod)
    start = time.perf_counter()
    for _ in range(10_000):
        codec.decode(data, core_v1.Pod)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10_000):
        codec.encode(decoder_warmup)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(1_000):
        assert codec.strict_field_errors(data, core_v1.Pod) == []
    strict_s = time.perf_counter() - start
    raw = msgspec.json.decode(data)
    start = time.perf_counter()
    for _ in range(1_000):
        codec.unknown_fields(raw, core_v1.Pod)
    unknown_s = time.perf_counter() - start
    print(
        f"\n{len(data)}-byte Pod, per object: decode {decode_s * 100:.1f} us, encode {encode_s * 100:.1f} us,"
        f" strict_field_errors {strict_s * 1000:.1f} us, unknown_fields {unknown_s * 1000:.1f} us"
    )


def test_duplicate_detection_is_not_fooled_by_colons_or_escapes() -> None:
    assert codec.duplicate_fields(b'{"a":"x:y:z","b":{"c":"::"}}') == []
    assert codec.duplicate_fields(b'{"a":"x:y","b":{"c":1,"c":{"d":":"}}}') == ["b.c"]
    assert codec.duplicate_fields(b'{"a":"\\u003a","a":1}') == ["a"]
    assert codec.duplicate_fields(b'{"a":"\\u003a\\u003a","b":1}') == []
    assert codec.duplicate_fields('{"é":1,"é":2}') == ["é"]
    assert codec.duplicate_fields(b'{"a":[{"b":1},{"b":2,"b":3}]}') == ["a[1].b"]


def test_strict_field_errors_in_kube_wording_and_document_order() -> None:
    data = (
        b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"x":"1","x":"2"},"name":"b",'
        b'"nmae":1,"nmae":2},"spec":{"containers":[{"name":"c","imagez":"i"},{"name":"d","image":"i","image":"j"}],'
        b'"overhead":{"cpu":"1","cpu":"2"}},"kind":"Pod"}'
    )
    assert codec.strict_field_errors(data, core_v1.Pod) == [
        'duplicate field "metadata.labels.x"',
        'duplicate field "metadata.name"',
        'unknown field "metadata.nmae"',
        'unknown field "spec.containers[0].imagez"',
        'duplicate field "spec.containers[1].image"',
        'duplicate field "spec.overhead.cpu"',
        'duplicate field "kind"',
    ]
    clean = json.dumps(DEPLOYMENT).encode()
    assert codec.strict_field_errors(clean, apps_v1.Deployment) == []
    unknown_only = json.dumps({**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicaz": 2}}).encode()
    assert codec.strict_field_errors(unknown_only, apps_v1.Deployment) == ['unknown field "spec.replicaz"']
    # a wrong type is decode's business, not a strict-field complaint
    assert codec.strict_field_errors(b'{"spec":{"replicas":"x"}}', apps_v1.Deployment) == []
    assert codec.strict_field_errors(b"{nope", apps_v1.Deployment) == []


def test_nulls_inside_lists_and_maps_decode_to_zero_values_as_in_go() -> None:
    data = (
        b'{"metadata":{"labels":{"a":null,"b":"x"}},"spec":{"nodeSelector":null,"containers":[null,'
        b'{"name":"c","args":["a",null],"ports":[{"containerPort":null}],"resources":{"limits":{"cpu":null}}}]}}'
    )
    for pod in (codec.decode(data, core_v1.Pod), codec.convert(json.loads(data), core_v1.Pod)):
        assert pod.metadata.labels == {"a": "", "b": "x"}
        assert pod.spec.nodeSelector is None
        assert pod.spec.containers[0] == core_v1.Container()
        assert pod.spec.containers[1].args == ["a", ""]
        assert pod.spec.containers[1].ports == [core_v1.ContainerPort()]
        assert pod.spec.containers[1].resources.limits == {"cpu": "0"}
    # a real type error after a null is still reported, with its path
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(b'{"spec":{"containers":[null,{"name":5}]}}', core_v1.Pod)
    assert info.value.path == "spec.containers[1].name"
