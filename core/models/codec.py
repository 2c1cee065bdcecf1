"""Decoding and encoding of request and stored bodies, with kube-apiserver's error wording.

The API server decodes every request body and every stored object through here, so the happy path
is a single cached ``msgspec`` decoder call; the work of building kube-style messages (which Go
struct, which field, which Go type) is done only once something has failed. Field-validation
warnings (``unknown field "spec.replicaz"``, ``duplicate field "metadata.name"``) are separate
passes the API server runs only when the request asks for them.
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any, TypeVar

import msgspec
import yaml as pyyaml
from kybern.models import schema

T = TypeVar("T", bound=msgspec.Struct)

__all__ = [
    "DecodeError",
    "convert",
    "decode",
    "duplicate_fields",
    "encode",
    "strict_field_errors",
    "to_builtins",
    "unknown_fields",
]


class DecodeError(ValueError):
    """A body that cannot be decoded into the model; ``message`` is worded like kube's JSON errors.

    ``path`` is the offending field as kube's field paths write it (``spec.containers[0].image``),
    empty when the document as a whole is at fault (syntax error, not an object).
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def encode(obj: Any) -> bytes:
    """JSON bytes of a model instance (or of plain builtins); unset (None) fields are left out."""
    return _encoder.encode(obj)


def to_builtins(obj: Any) -> Any:
    """The JSON-shaped dict/list/str/int... form of a model instance."""
    return msgspec.to_builtins(obj)


def decode(data: bytes | str, model: type[T], *, yaml: bool = False) -> T:
    """Decode a JSON (or YAML) document into ``model``; unknown fields are dropped, like kube.

    Raises :class:`DecodeError` for malformed documents and for values of the wrong type.
    """
    if yaml:
        return convert(_load_yaml(data), model)
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        if "got `null`" not in str(exc):
            raise _type_error(str(exc), model, lambda: msgspec.json.decode(data)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"json: {_syntax_message(str(exc))}") from None
    # a null where Go would store a zero value: the slow path through builtins
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"json: {_syntax_message(str(exc))}") from None
    return convert(raw, model)


def convert(d: Any, model: type[T]) -> T:
    """Build ``model`` from JSON-shaped builtins (a decoded dict), with the same errors as decode."""
    try:
        return msgspec.convert(d, model)
    except msgspec.ValidationError as exc:
        if "got `null`" not in str(exc):
            raise _type_error(str(exc), model, lambda: d) from None
    # Go decodes a null list item or map value to the zero value ("", 0, {}) instead of failing
    d = _zero_nulls(d, model)
    try:
        return msgspec.convert(d, model)
    except msgspec.ValidationError as exc:
        raise _type_error(str(exc), model, lambda: d) from None


def _zero_nulls(value: Any, tp: Any) -> Any:
    """A copy of JSON-shaped ``value`` with nulls inside lists and maps replaced by Go's zero values."""
    tp = _unwrap(tp)
    if value is None:
        return None
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if not isinstance(value, dict):
            return value
        fields = _struct_fields(tp)
        return {k: _zero_nulls(v, fields[k]) if k in fields else v for k, v in value.items()}
    origin = typing.get_origin(tp)
    if origin is list and isinstance(value, list):
        item_tp = typing.get_args(tp)[0]
        return [_zero_of(item_tp) if v is None else _zero_nulls(v, item_tp) for v in value]
    if origin is dict and isinstance(value, dict):
        item_tp = typing.get_args(tp)[1]
        return {k: _zero_of(item_tp) if v is None else _zero_nulls(v, item_tp) for k, v in value.items()}
    return value


def _zero_of(tp: Any) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return {}
    if tp in (str, int, float, bool):
        return tp()
    origin = typing.get_origin(tp)
    if origin in (list, dict):
        return origin()
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return 0 if set(typing.get_args(tp)) == {int, str} else "0"  # IntOrString / Quantity
    return None


# --- YAML -----------------------------------------------------------------------------------------

_YAMLBase: type = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)


class _YAMLLoader(_YAMLBase):  # type: ignore[misc, valid-type]
    """Safe loader that leaves timestamps as strings, as kube's YAML-to-JSON conversion does."""


_YAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in pyyaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_yaml(data: bytes | str) -> Any:
    try:
        return pyyaml.load(data, Loader=_YAMLLoader)
    except pyyaml.YAMLError as exc:
        raise DecodeError(f"yaml: {' '.join(str(exc).split())}") from None


# --- type errors ----------------------------------------------------------------------------------

_EXPECTED = re.compile(r"^Expected `(?P<expected>[^`]*)`, got `(?P<got>[^`]*)`")
_OUT_OF_RANGE = re.compile(r"^Expected `int` [<>]= -?\d+")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_GOT = {"str": "string", "int": "number", "float": "number", "bool": "bool", "null": "null"}
_SPECIAL_GO = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "resource.Quantity",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "runtime.RawExtension",
}


def _syntax_message(text: str) -> str:
    return text.replace("JSON is malformed: ", "")


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> X, ``Annotated[X, ...]`` -> X (constraints matter to msgspec, not here)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    if typing.get_origin(tp) is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    return tp


def _struct_fields(cls: type) -> dict[str, Any]:
    """encode name -> annotated type of a Struct's fields."""
    return {f.encode_name: f.type for f in msgspec.structs.fields(cls)}


def _go_type(tp: Any, prop: dict[str, Any] | None) -> str:
    """How Go would name the type of a field; the schema property refines int/bytes when known."""
    prop = prop or {}
    ref = prop.get("$ref", "")[len("#/$defs/") :]
    if ref in _SPECIAL_GO:
        return _SPECIAL_GO[ref]
    if ref.startswith("io.k8s.apimachinery.pkg.apis.meta.v1."):
        return "v1." + ref.rpartition(".")[2]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "v1." + tp.__name__
    origin = typing.get_origin(tp)
    if origin is list:
        return "[]" + _go_type(_unwrap(typing.get_args(tp)[0]), prop.get("items"))
    if origin is dict:
        extra = prop.get("additionalProperties")
        return "map[string]" + _go_type(
            _unwrap(typing.get_args(tp)[1]), extra if isinstance(extra, dict) else None
        )
    if tp is str:
        return "[]uint8" if prop.get("format") == "byte" else "string"
    if tp is int:
        return "int32" if prop.get("format") == "int32" else "int64"
    if tp is float:
        return "float64"
    if tp is bool:
        return "bool"
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return "intstr.IntOrString" if set(typing.get_args(tp)) == {int, str} else "resource.Quantity"
    return "interface {}"


def _properties(model: type) -> dict[str, Any]:
    name = schema.name_of_model(model)
    definition = schema.definitions().get(name, {}) if name else {}
    return definition.get("properties", {})


def _type_error(text: str, model: type, raw: typing.Callable[[], Any]) -> DecodeError:
    at = _AT.search(text)
    msgspec_path = at.group("path") if at else ""
    detail = text[: at.start()] if at else text
    tp: Any = model
    prop: dict[str, Any] | None = None
    struct: type | None = None
    go_fields: list[str] = []
    kube_path = ""
    value: Any = _Missing
    try:
        value = raw()
    except (msgspec.DecodeError, ValueError):
        value = _Missing
    for match in _SEGMENT.finditer(msgspec_path):
        field, index = match.groups()
        if field is not None:
            if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
                break  # inside free-form JSON: msgspec does not look there, so never reached
            struct = tp
            prop = _properties(tp).get(field)
            tp = _unwrap(_struct_fields(tp).get(field, Any))
            go_fields.append(field)
            kube_path = f"{kube_path}.{field}" if kube_path else field
            value = value.get(field, _Missing) if isinstance(value, dict) else _Missing
        elif index == "...":
            prop = prop.get("additionalProperties") if prop else None
            args = typing.get_args(tp)
            item_tp = args[1] if len(args) == 2 else Any
            key, value = _failing_item(value, item_tp)
            tp = _unwrap(item_tp)
            kube_path = f"{kube_path}.{key}"
        else:
            prop = prop.get("items") if prop else None
            args = typing.get_args(tp)
            tp = _unwrap(args[0]) if args else Any
            kube_path = f"{kube_path}[{index}]"
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else _Missing
    if detail.startswith("Expected `str` matching regex "):
        # the only pattern in the models is Quantity's; kube words this one itself
        pattern = detail[len("Expected `str` matching regex ") :]
        return DecodeError(f"quantities must match the regular expression {pattern}", kube_path)
    if _OUT_OF_RANGE.match(detail) and struct is not None:
        go_type = "int32" if "2147483" in detail else _go_type(tp, prop)
        where = f"{struct.__name__}.{'.'.join(go_fields)}"
        got = f"number {json.dumps(value)}" if value is not _Missing else "number"
        return DecodeError(
            f"json: cannot unmarshal {got} into Go struct field {where} of type {go_type}", kube_path
        )
    expected = _EXPECTED.match(detail)
    if expected is None:
        return DecodeError(f"json: {detail} at {kube_path or '<root>'}", kube_path)
    got = _GOT.get(expected.group("got"), expected.group("got"))
    if got == "number" and value is not _Missing and not isinstance(value, bool):
        got = f"number {json.dumps(value)}"
    go_type = _go_type(tp, prop)
    if struct is None:
        return DecodeError(f"json: cannot unmarshal {got} into Go value of type {go_type}", kube_path)
    where = f"{struct.__name__}.{'.'.join(go_fields)}"
    return DecodeError(
        f"json: cannot unmarshal {got} into Go struct field {where} of type {go_type}", kube_path
    )


class _MissingType:
    pass


_Missing: Any = _MissingType()


def _failing_item(mapping: Any, tp: Any) -> tuple[str, Any]:
    """msgspec hides map keys in its paths (``[...]``); find the entry that fails to convert."""
    if isinstance(mapping, dict):
        for key, item in mapping.items():
            try:
                msgspec.convert(item, tp)
            except msgspec.ValidationError:
                return str(key), item
    return "...", _Missing


# --- strict field validation ----------------------------------------------------------------------

#: per Struct class: encode name -> child spec; a child spec is None (scalar / free-form),
#: ("s", cls) a struct, ("l", spec) a list of spec, ("m", spec) a map of spec
_Spec = tuple[str, Any] | None
_shapes: dict[type, dict[str, _Spec]] = {}


def _spec_of(tp: Any) -> _Spec:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return ("s", tp)
    origin = typing.get_origin(tp)
    if origin is list:
        inner = _spec_of(typing.get_args(tp)[0])
        return ("l", inner) if inner is not None else None
    if origin is dict:
        inner = _spec_of(typing.get_args(tp)[1])
        return ("m", inner) if inner is not None else None
    return None


def _shape(cls: type) -> dict[str, _Spec]:
    shape = _shapes.get(cls)
    if shape is None:
        shape = _shapes[cls] = {f.encode_name: _spec_of(f.type) for f in msgspec.structs.fields(cls)}
    return shape


def unknown_fields(raw: Any, model: type[msgspec.Struct]) -> list[str]:
    """Paths of the fields in decoded JSON ``raw`` that ``model`` does not have, in document order.

    Formatted like kube-apiserver's strict decoding: ``spec.replicaz``,
    ``spec.template.spec.containers[0].imagez``, map entries as ``.key``.
    """
    if not isinstance(raw, dict):
        return []
    try:
        msgspec.convert(raw, _strict_model(model))
        return []
    except msgspec.ValidationError:
        pass  # an unknown field somewhere (or a type error): find them all, with their paths
    out: list[str] = []
    _walk_struct(raw, model, "", out)
    return out


def _walk_struct(raw: dict[str, Any], cls: type, path: str, out: list[str]) -> None:
    shape = _shape(cls)
    for key, value in raw.items():
        if key not in shape:
            out.append(f"{path}.{key}" if path else key)
            continue
        spec = shape[key]
        if spec is not None and value is not None:
            _walk(value, spec, f"{path}.{key}" if path else key, out)


def _walk(value: Any, spec: tuple[str, Any], path: str, out: list[str]) -> None:
    kind, inner = spec
    if kind == "s":
        if isinstance(value, dict):
            _walk_struct(value, inner, path, out)
    elif kind == "l":
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is not None:
                    _walk(item, inner, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if item is not None:
                _walk(item, inner, f"{path}.{key}", out)


#: model -> the same shape with forbid_unknown_fields, so the common clean case is checked in C
_strict_models: dict[Any, Any] = {}


def _strict_model(tp: Any) -> Any:
    strict = _strict_models.get(tp)
    if strict is not None:
        return strict
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        strict = msgspec.defstruct(
            tp.__name__,
            [
                (f.name, _strict_model(f.type), msgspec.field(default=None, name=f.encode_name))
                for f in msgspec.structs.fields(tp)
            ],
            kw_only=True,
            forbid_unknown_fields=True,
            module=__name__,
        )
    elif isinstance(tp, types.UnionType):
        args = [_strict_model(arg) for arg in typing.get_args(tp)]
        strict = args[0]
        for arg in args[1:]:
            strict = strict | arg
    elif typing.get_origin(tp) is list:
        strict = list[_strict_model(typing.get_args(tp)[0])]  # type: ignore[misc]
    elif typing.get_origin(tp) is dict:
        key, value = typing.get_args(tp)
        strict = dict[key, _strict_model(value)]  # type: ignore[valid-type]
    else:
        return tp
    _strict_models[tp] = strict
    return strict


def _may_have_duplicates(data: bytes | str, raw: Any) -> bool:
    """Cheap exact test for the common case of no repeated keys.

    Outside strings a colon only follows a key, so a document without repeated keys has exactly as
    many colons as its re-encoding (decoding keeps the last of repeated keys and so drops at least
    one colon). Escaped characters (``\\u003a``) could hide a colon: such documents take the slow path.
    """
    blob = data.encode() if isinstance(data, str) else data
    if b"\\u" in blob:
        return True
    return blob.count(b":") != _encoder.encode(raw).count(b":")


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""

    __slots__ = ()


def duplicate_fields(data: bytes | str) -> list[str]:
    """Paths of keys that occur more than once in one JSON object, as kube reports them.

    ``{"metadata": {"name": "a", "name": "b"}}`` -> ``["metadata.name"]``. Malformed JSON yields
    no paths (decoding reports it).
    """
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return []
    if not _may_have_duplicates(data, raw):
        return []
    tree = json.loads(data, object_pairs_hook=_Pairs)
    out: list[str] = []
    _dups(tree, "", out)
    return list(dict.fromkeys(out))


def _dups(node: Any, path: str, out: list[str]) -> None:
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            child = f"{path}.{key}" if path else key
            if key in seen:
                out.append(child)
            else:
                seen.add(key)
            if isinstance(value, list):
                _dups(value, child, out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, list):
                _dups(item, f"{path}[{i}]", out)


def strict_field_errors(data: bytes | str, model: type[msgspec.Struct]) -> list[str]:
    """kube's strict-decoding complaints about a JSON body, in document order, in one pass.

    Each entry is worded as kube-apiserver words them for ``fieldValidation=Strict`` (joined into
    the 400's message) or ``Warn`` (one warning each): ``unknown field "spec.replicaz"``,
    ``duplicate field "metadata.name"``. Malformed JSON yields nothing (decoding reports it).
    At most 100 entries, as in sigs.k8s.io/json.
    """
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return []
    if not _may_have_duplicates(data, raw):
        return [f'unknown field "{path}"' for path in unknown_fields(raw, model)][:100]
    tree = json.loads(data, object_pairs_hook=_Pairs)
    out: list[str] = []
    if type(tree) is _Pairs:
        _strict_struct(tree, model, "", out)
    return list(dict.fromkeys(out))[:100]


def _strict_struct(node: _Pairs, cls: type, path: str, out: list[str]) -> None:
    shape = _shape(cls)
    seen: set[str] = set()
    for key, value in node:
        child = f"{path}.{key}" if path else key
        if key not in shape:
            out.append(f'unknown field "{child}"')
            continue
        if key in seen:
            out.append(f'duplicate field "{child}"')
        else:
            seen.add(key)
        spec = shape[key]
        if spec is None:
            if isinstance(value, list):  # free-form JSON still may not repeat keys
                dups: list[str] = []
                _dups(value, child, dups)
                out.extend(f'duplicate field "{d}"' for d in dups)
        elif value is not None:
            _strict(value, spec, child, out)


def _strict(value: Any, spec: tuple[str, Any], path: str, out: list[str]) -> None:
    kind, inner = spec
    if kind == "s":
        if type(value) is _Pairs:
            _strict_struct(value, inner, path, out)
    elif kind == "l":
        if type(value) is list:
            for i, item in enumerate(value):
                if item is not None:
                    _strict(item, inner, f"{path}[{i}]", out)
    elif type(value) is _Pairs:
        seen: set[str] = set()
        for key, item in value:
            child = f"{path}.{key}"
            if key in seen:
                out.append(f'duplicate field "{child}"')
            else:
                seen.add(key)
            if item is not None:
                _strict(item, inner, child, out)
