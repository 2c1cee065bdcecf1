"""Request bodies in, response bodies out: content types, size limits, strict decoding.

kube-apiserver refuses bodies over 3 MiB, accepts JSON and YAML, and with
``fieldValidation=Strict`` refuses unknown or duplicate fields (kubectl sends Strict by
default); with Warn (the server's default) the same findings become ``Warning: 299`` headers.
Everything here raises :class:`ApiStatusError` so a bad body is a 4xx, never a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import yaml
from kybern.models import codec
from kybern.plugins.apiserver import errors, protobuf
from kybern.resources import ResourceType

MAX_BODY_BYTES = 3 * 1024 * 1024

JSON = "application/json"
YAML = "application/yaml"
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml")
#: octet-stream: client-go's scale client sends JSON under that type
_DOCUMENT_TYPES = frozenset({"", JSON, "*/*", "application/octet-stream", *_YAML_TYPES, *PATCH_TYPES})

_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()


def dumps(obj: Any) -> bytes:
    return _json_encoder.encode(obj)


def loads(data: bytes) -> Any:
    return _json_decoder.decode(data)


@dataclass(frozen=True)
class MediaType:
    type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def is_table(self) -> bool:
        return self.params.get("as") == "Table" and self.params.get("g") == "meta.k8s.io"

    @property
    def is_partial_metadata(self) -> bool:
        return self.params.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList") and (
            self.params.get("g") == "meta.k8s.io"
        )


def parse_accept(header: str | None) -> list[MediaType]:
    """The media types of an Accept header, in the client's order (q values ignored)."""
    out: list[MediaType] = []
    for part in (header or "").split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        params = {}
        for b in bits[1:]:
            if "=" in b:
                k, v = b.split("=", 1)
                params[k.strip()] = v.strip()
        out.append(MediaType(bits[0].lower(), params))
    return out


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_document(body: bytes, content_type: str | None) -> Any:
    """JSON or YAML bytes to Python data; 400 for anything malformed."""
    mt = media_type(content_type)
    if len(body) > MAX_BODY_BYTES:
        raise errors.too_large(MAX_BODY_BYTES)
    if mt in (protobuf.CONTENT_TYPE, "application/cbor"):
        raise errors.unsupported_media_type(mt)
    if mt not in _DOCUMENT_TYPES:
        raise errors.unsupported_media_type(mt)
    if not body.strip():
        raise errors.bad_request("the body of the request is empty; expected a JSON or YAML object")
    if mt in _YAML_TYPES:
        try:
            data = yaml.safe_load(body)
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
            raise errors.bad_request(f"error converting YAML to JSON: {_one_line(exc)}") from None
        return _jsonable(data)
    try:
        return loads(body)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {_one_line(exc)}") from None


def _jsonable(data: Any) -> Any:
    """YAML may produce dates, sets or non-string keys; round-trip through JSON to normalise."""
    try:
        return json.loads(json.dumps(data, default=str))
    except (TypeError, ValueError) as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]


def duplicate_fields(body: bytes, content_type: str | None) -> list[str]:
    """Keys given twice in one JSON object (kube's strict decoder reports them)."""
    mt = media_type(content_type)
    if mt not in (JSON, "", "application/merge-patch+json", "application/strategic-merge-patch+json"):
        return []
    return codec.duplicate_fields(body)


def unknown_fields(raw: Any, model: type) -> list[str]:
    """Paths of fields the kind's schema does not know (``spec.replicaz``)."""
    return codec.unknown_fields(raw, model)


def to_model(rt: ResourceType, obj: dict[str, Any]) -> Any:
    return msgspec.convert(obj, rt.model)


def from_model(model: Any) -> dict[str, Any]:
    return msgspec.to_builtins(model)


def typed_roundtrip(rt: ResourceType, obj: dict[str, Any], what: str | None = None) -> dict[str, Any]:
    """Check field types against the kind's model; drop unknown fields (as decoding does)."""
    try:
        return from_model(codec.convert(obj, rt.model))
    except (codec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        raise errors.bad_request(
            what or f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {_one_line(exc)}'
        ) from None


@dataclass
class Decoded:
    obj: dict[str, Any]
    warnings: list[str]


def field_problems(rt: ResourceType, raw: dict[str, Any], body: bytes, content_type: str | None) -> list[str]:
    problems = [f'duplicate field "{d}"' for d in duplicate_fields(body, content_type)]
    problems += [f'unknown field "{u}"' for u in unknown_fields(raw, rt.model)]
    return problems


def check_field_validation(
    rt: ResourceType, problems: list[str], mode: str, patch: bool = False
) -> list[str]:
    """Strict: 400 for any problem; Warn: the problems become warnings; Ignore: nothing."""
    if not problems or mode == "Ignore":
        return []
    if mode == "Strict":
        text = "strict decoding error: " + ", ".join(problems)
        if not patch:
            text = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {text}'
        raise errors.bad_request(text)
    return problems


def field_validation_mode(value: str | None) -> str:
    if value is None or value == "":
        return "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f"fieldValidation parameter unsupported: {value}, valid values are Ignore, Warn, Strict"
        )
    return value


_model_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def _fast_decode(rt: ResourceType, body: bytes) -> dict[str, Any] | None:
    """The typed round trip of a plain JSON body in one decode, or None when the full path
    must decide (type errors, nulls, unknown or duplicate fields, escapes, a foreign kind).

    Decoding into the model drops what the model does not hold (unknown fields, nulls, the
    first of repeated keys) and never adds anything, so when its encoding has as many colons
    as the body, nothing was dropped: outside strings a colon only follows a key, and strings
    come back as they went in unless an escape (``\\u003a``) hid a colon.
    """
    decoder = _model_decoders.get(rt.model)
    if decoder is None:
        decoder = _model_decoders[rt.model] = msgspec.json.Decoder(rt.model)
    try:
        model = decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
        return None
    if getattr(model, "kind", None) not in (None, rt.kind):
        return None
    if getattr(model, "apiVersion", None) not in (None, rt.api_version):
        return None
    encoded = _json_encoder.encode(model)
    if encoded.count(b":") != body.count(b":") or b"\\u" in body:
        return None
    obj: dict[str, Any] = msgspec.to_builtins(model)
    return obj


def decode_object(rt: ResourceType, body: bytes, content_type: str | None, field_validation: str) -> Decoded:
    """A create/update body for ``rt``: checked kind, types and fields."""
    mt = media_type(content_type)
    if mt in (JSON, "") and 0 < len(body) <= MAX_BODY_BYTES:
        obj = _fast_decode(rt, body)
        if obj is not None:
            return Decoded(obj, [])
    if mt == protobuf.CONTENT_TYPE:
        if len(body) > MAX_BODY_BYTES:
            raise errors.too_large(MAX_BODY_BYTES)
        from kybern.plugins.apiserver.storage import definition_of

        data = protobuf.decode(body, definition_of(rt))
        check_kind(rt, data)
        return Decoded(typed_roundtrip(rt, data), [])
    data = parse_document(body, content_type)
    if not isinstance(data, dict):
        raise errors.bad_request(
            f"couldn't get version/kind; json parse error: cannot unmarshal {type(data).__name__} into Object"
        )
    check_kind(rt, data)
    problems = field_problems(rt, data, body, content_type)
    warnings = check_field_validation(rt, problems, field_validation)
    return Decoded(typed_roundtrip(rt, data), warnings)


def check_kind(
    rt: ResourceType, data: dict[str, Any], kind: str | None = None, api_version: str | None = None
) -> None:
    want_kind = kind or rt.kind
    want_av = api_version or rt.api_version
    got_kind = data.get("kind")
    got_av = data.get("apiVersion")
    if (got_kind is not None and not isinstance(got_kind, str)) or (
        got_av is not None and not isinstance(got_av, str)
    ):
        raise errors.bad_request(
            "couldn't get version/kind; json parse error: kind and apiVersion must be strings"
        )
    if got_kind and got_kind != want_kind:
        raise errors.bad_request(
            f"the API version in the data ({got_av or ''}) does not match the expected API version "
            f"({want_av})"
            if got_av and got_av != want_av
            else f'{got_kind} in version "{(got_av or want_av).split("/")[-1]}" cannot be handled as a '
            f'{want_kind}: no kind "{got_kind}" is registered for version "{want_av}"'
        )
    if got_av and got_av != want_av:
        raise errors.bad_request(
            f"the API version in the data ({got_av}) does not match the expected API version ({want_av})"
        )
    meta = data.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise errors.bad_request(
            f'{want_kind} in version "{want_av.split("/")[-1]}" cannot be handled as a {want_kind}: '
            "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta"
        )
