"""Pure helpers of the API server: durations, field selectors, protobuf bodies, Status shapes."""

from __future__ import annotations

import pytest
from kybern.plugins.apiserver import errors, protobuf, tables
from kybern.plugins.apiserver.selectors import parse_field_selector


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (123, "2m3s"),
        (300, "5m"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600 + 120, "3h2m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (5 * 86400, "5d"),
        (400 * 86400, "400d"),
        (2 * 365 * 86400, "2y"),
        (3 * 365 * 86400 + 86400 * 10, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_field_selector_parsing() -> None:
    reqs = parse_field_selector("metadata.name=a,status.phase!=Running,spec.nodeName==n1")
    assert [(r.field, r.op, r.value) for r in reqs] == [
        ("metadata.name", "=", "a"),
        ("status.phase", "!=", "Running"),
        ("spec.nodeName", "=", "n1"),
    ]
    assert parse_field_selector(r"metadata.name=a\,b")[0].value == "a,b"
    assert parse_field_selector("spec.nodeName=")[0].value == ""
    for bad in ("nonsense", "=x", "a=b\\"):
        with pytest.raises(errors.ApiStatusError) as info:
            parse_field_selector(bad)
        assert info.value.code == 400


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_namespace_and_configmap() -> None:
    meta = _field(1, b"demo") + _field(11, _field(1, b"team") + _field(2, b"a"))
    ns = _field(1, meta) + _field(2, b"") + _field(3, b"")
    envelope = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(2, ns)
    obj = protobuf.decode(envelope, "io.k8s.api.core.v1.Namespace")
    assert obj == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "demo", "labels": {"team": "a"}},
        "spec": {},
        "status": {},
    }
    cm = (
        _field(1, _field(1, b"c"))
        + _field(2, _field(1, b"k") + _field(2, b"v"))
        + _field(3, _field(1, b"bin") + _field(2, b"\x00\x01"))
    )
    envelope = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, cm)
    obj = protobuf.decode(envelope, "io.k8s.api.core.v1.ConfigMap")
    assert obj["data"] == {"k": "v"} and obj["binaryData"] == {"bin": "AAE="}


def test_protobuf_rejects_what_it_cannot_read() -> None:
    with pytest.raises(errors.ApiStatusError) as info:
        protobuf.decode(b"nope", "io.k8s.api.core.v1.Namespace")
    assert info.value.code == 400
    unknown = protobuf.MAGIC + _field(1, b"") + _field(2, _field(99, b"surprise"))
    with pytest.raises(errors.ApiStatusError) as info:
        protobuf.decode(unknown, "io.k8s.api.core.v1.Namespace")
    assert info.value.code == 415
    with pytest.raises(errors.ApiStatusError) as info:
        protobuf.decode(protobuf.MAGIC + b"\xff\xff", "io.k8s.api.core.v1.Namespace")
    assert info.value.code == 400


def test_status_shapes() -> None:
    st = errors.bad_request("nope").status()
    assert st == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "nope",
        "reason": "BadRequest",
        "code": 400,
    }
    assert errors.success_status({"name": "x"})["status"] == "Success"


@pytest.mark.parametrize(
    ("body", "warnings"),
    [
        (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v:w"}}', []),
        (b'{"metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"v"},"immutable":true}', []),
        (b'{"kind":"ConfigMap","metadata":{"name":"a"},"datax":{"k":"v"}}', ['unknown field "datax"']),
        (b'{"metadata":{"name":"a","name":"b"}}', ['duplicate field "metadata.name"']),
        (b'{"metadata":{"name":"a","namespace":null},"data":null}', []),
        (b'{"metadata":{"name":"a"},"da\\u0074a":{"k":"v"},"x":1}', ['unknown field "x"']),
        (b'{"metadata":{"name":"a"},"data":{"k\\u003a":"v"},"y":{"z":1}}', ['unknown field "y"']),
    ],
)
def test_one_pass_decode_matches_the_full_path(body: bytes, warnings: list[str]) -> None:
    """The one-decode fast path for plain JSON must give exactly what the full path gives:
    the typed round trip, and the unknown/duplicate field warnings of fieldValidation=Warn."""
    import msgspec
    from kybern.models import core_v1
    from kybern.plugins.apiserver import bodies
    from kybern.resources import ResourceType

    rt = ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", True, core_v1.ConfigMap)
    decoded = bodies.decode_object(rt, body, "application/json", "Warn")
    full = bodies.typed_roundtrip(rt, msgspec.json.decode(body))
    assert decoded.obj == full
    assert decoded.warnings == warnings
    if warnings:
        with pytest.raises(errors.ApiStatusError) as info:
            bodies.decode_object(rt, body, "application/json", "Strict")
        assert "strict decoding error" in info.value.message
    else:
        assert bodies.decode_object(rt, body, "application/json", "Strict").obj == full
