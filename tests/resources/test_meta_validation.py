"""Name/label helpers and validate_object_meta, with apimachinery's exact messages."""

from kybern.validation import (
    is_c_identifier,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    validate_object_meta,
    validate_object_meta_update,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def test_dns1123() -> None:
    assert is_dns1123_subdomain("example.com") == []
    assert is_dns1123_subdomain("Example") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert is_dns1123_label("web-1") == []
    assert is_dns1123_label("-web") == [LABEL_MSG]
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


def test_dns1035() -> None:
    assert is_dns1035_label("svc-1") == []
    assert is_dns1035_label("1svc") == [
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
        "start with an alphabetic character, and end with an alphanumeric character "
        "(e.g. 'my-name',  or 'abc-123', regex used for "
        "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    ]


def test_qualified_names_and_label_values() -> None:
    assert is_qualified_name("app") == []
    assert is_qualified_name("app.kubernetes.io/name") == []
    assert is_qualified_name("-app") == [QNAME_NAME_MSG]
    assert is_qualified_name("/app") == ["prefix part must be non-empty"]
    assert is_qualified_name("Example.com/app") == ["prefix part " + SUBDOMAIN_MSG]
    assert is_qualified_name("a/b/c")[0].startswith("a qualified name must consist of")
    assert is_qualified_name("x" * 64) == ["name part must be no more than 63 characters"]
    assert is_valid_label_value("") == []
    assert is_valid_label_value("v1.2_3") == []
    assert is_valid_label_value("bad value") == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
        "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
        "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    ]


def test_misc_formats() -> None:
    assert is_c_identifier("MY_VAR") == []
    assert is_c_identifier("1x") != []
    assert is_env_var_name("my.env-name") == []
    assert is_env_var_name("1abc")[0].startswith("a valid environment variable name must consist of")
    assert is_env_var_name("..x") == ["must not start with '..'"]
    assert is_config_map_key("key.name") == []
    assert is_config_map_key("a b")[0].startswith(
        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', "
    )
    assert is_config_map_key("..") == ["must not be '..'"]
    assert is_valid_port_num(80) == []
    assert is_valid_port_num(0) == ["must be between 1 and 65535, inclusive"]
    assert is_valid_port_name("http") == []
    assert is_valid_port_name("80") == ["must contain at least one letter (a-z)"]
    assert is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]


def messages(errs: list) -> list[str]:
    return [f"{e.field}: {e.message()}" for e in errs]


def test_object_meta_ok() -> None:
    meta = {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"A/b": "x"}}
    assert validate_object_meta(meta, namespaced=True) == []
    assert validate_object_meta({"name": "node-1"}, namespaced=False) == []


def test_object_meta_errors() -> None:
    errs = validate_object_meta({"namespace": "default"}, namespaced=True)
    assert messages(errs) == ["metadata.name: Required value: name or generateName is required"]
    errs = validate_object_meta({"name": "Web"}, namespaced=True)
    assert messages(errs) == [
        f'metadata.name: Invalid value: "Web": {SUBDOMAIN_MSG}',
        "metadata.namespace: Required value",
    ]
    errs = validate_object_meta({"name": "n", "namespace": "x"}, namespaced=False)
    assert messages(errs) == ["metadata.namespace: Forbidden: not allowed on this type"]
    errs = validate_object_meta({"name": "a.b"}, namespaced=False, name_validator=is_dns1123_label)
    assert messages(errs) == ['metadata.name: Invalid value: "a.b": must not contain dots']
    errs = validate_object_meta({"name": "ok", "labels": {"-x": "y z"}}, namespaced=False)
    assert [e.value for e in errs] == ["-x", "y z"]
    assert errs[0].field == "metadata.labels"
    errs = validate_object_meta({"name": "ok", "annotations": {"a": "x" * 262144}}, namespaced=False)
    assert messages(errs) == ["metadata.annotations: Too long: must have at most 262144 bytes"]


def test_generate_name_keeps_trailing_dash() -> None:
    assert validate_object_meta({"name": "web-abcde", "generateName": "web-"}, namespaced=False) == []
    errs = validate_object_meta({"name": "x", "generateName": "Web-"}, namespaced=False)
    assert [e.field for e in errs] == ["metadata.generateName"]


def test_owner_references_and_finalizers() -> None:
    refs = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": True},
        {"apiVersion": "", "kind": "", "name": "", "uid": ""},
    ]
    errs = validate_object_meta({"name": "p", "ownerReferences": refs}, namespaced=False)
    fields = [e.field for e in errs]
    assert fields == [
        "metadata.ownerReferences",
        "metadata.ownerReferences.apiVersion",
        "metadata.ownerReferences.kind",
        "metadata.ownerReferences.name",
        "metadata.ownerReferences.uid",
    ]
    assert errs[0].detail == (
        'Only one reference can have Controller set to true. Found "true" in references for '
        "ReplicaSet/a and ReplicaSet/b"
    )
    errs = validate_object_meta(
        {"name": "p", "finalizers": ["orphan", "foregroundDeletion"]}, namespaced=False
    )
    assert errs[0].detail == "finalizer orphan and foregroundDeletion cannot be both set"


def test_object_meta_update() -> None:
    old = {"name": "a", "uid": "u1", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x/y"]}
    new = {"name": "b", "uid": "u1", "finalizers": ["x/y", "x/z"]}
    assert messages(validate_object_meta_update(new, old)) == [
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, "
        'found new finalizers []string{"x/z"}',
        'metadata.name: Invalid value: "b": field is immutable',
    ]
