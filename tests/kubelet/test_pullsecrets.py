"""Which imagePullSecret entry applies to which image (the kubelet keyring's matching rules),
and both secret formats; the registry round trip is in test_images."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from kybern.client import ApiError
from kybern.plugins.kubelet.pullsecrets import (
    Credential,
    credentials_of,
    key_matches,
    matching,
    pod_credentials,
    split_image,
)


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


def test_split_image_normalises_like_docker() -> None:
    assert split_image("busybox") == ("docker.io", "library/busybox")
    assert split_image("busybox:1.36") == ("docker.io", "library/busybox")
    assert split_image("me/app:2") == ("docker.io", "me/app")
    assert split_image("index.docker.io/me/app") == ("docker.io", "me/app")
    assert split_image("127.0.0.1:5000/team/app:1") == ("127.0.0.1:5000", "team/app")
    assert split_image("localhost/app@sha256:abc") == ("localhost", "app")
    assert split_image("Registry.Example.com/a/b:c") == ("registry.example.com", "a/b")


def test_keys_match_host_port_wildcards_and_path_prefix() -> None:
    assert key_matches("https://index.docker.io/v1/", "busybox:1")
    assert key_matches("docker.io", "me/app")
    assert key_matches("127.0.0.1:5000", "127.0.0.1:5000/team/app:1")
    assert key_matches("http://127.0.0.1:5000/team", "127.0.0.1:5000/team/app:1")
    assert not key_matches("127.0.0.1:5000/team", "127.0.0.1:5000/teamx/app:1")
    assert not key_matches("127.0.0.1:5001", "127.0.0.1:5000/team/app:1")
    assert not key_matches("127.0.0.1", "127.0.0.1:5000/team/app:1")
    assert key_matches("*.example.com", "eu.example.com/app")
    assert not key_matches("*.example.com", "a.eu.example.com/app")
    assert not key_matches("example.com", "busybox")


def test_both_secret_formats_and_most_specific_first() -> None:
    new = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64({"auths": {
            "reg.example:5000": {"username": "u1", "password": "p1"},
            "reg.example:5000/team": {"auth": b64(b"u2:p:2")},
            "other.example": {"username": "u3", "password": "p3"},
        }})},
    }  # fmt: skip
    legacy = {"type": "kubernetes.io/dockercfg",
              "data": {".dockercfg": b64({"https://reg.example:5000": {"auth": b64(b"u4:p4")}})}}  # fmt: skip
    creds = credentials_of(new) + credentials_of(legacy)
    assert [(c.username, c.password) for c in creds] == [
        ("u1", "p1"),
        ("u2", "p:2"),
        ("u3", "p3"),
        ("u4", "p4"),
    ]
    picked = matching(creds, "reg.example:5000/team/app:1")
    assert [c.username for c in picked] == ["u2", "u1", "u4"]
    assert [c.username for c in matching(creds, "reg.example:5000/solo:1")] == ["u1", "u4"]
    assert (
        credentials_of({"type": "Opaque", "data": {".dockerconfigjson": new["data"][".dockerconfigjson"]}})
        == []
    )
    assert (
        credentials_of(
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}
        )
        == []
    )
    assert "p1" not in repr(creds[0]) and "p1" not in str(creds[0])
    assert Credential("k", "u", "p").auth_config("h:1") == {
        "username": "u",
        "password": "p",
        "serveraddress": "h:1",
    }


class Objects:
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert namespace == "team"
        if name == "forbidden":
            raise ApiError({"code": 403, "reason": "Forbidden", "message": "no"})
        return self.objects.get((resource, name))


def test_pod_secrets_come_before_the_service_account_ones_and_unreadable_ones_are_skipped() -> None:
    def secret(user: str) -> dict[str, Any]:
        auths = {"auths": {"r.example": {"username": user, "password": "x" + user}}}
        return {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(auths)}}

    source = Objects({
        ("secrets", "mine"): secret("pod"),
        ("secrets", "shared"): secret("account"),
        ("serviceaccounts", "builder"): {"imagePullSecrets": [{"name": "shared"}, {"name": "gone"}]},
    })  # fmt: skip
    refs = [{"name": "mine"}, {"name": "absent"}, {"name": "forbidden"}]
    pod = {
        "metadata": {"namespace": "team"},
        "spec": {"serviceAccountName": "builder", "imagePullSecrets": refs},
    }
    missing: list[str] = []
    found = asyncio.run(pod_credentials(source, pod, "r.example/app:1", missing))
    assert [c.username for c in found] == ["pod", "account"]
    assert missing == ["absent", "forbidden", "gone"]
    assert asyncio.run(pod_credentials(source, pod, "elsewhere.example/app:1")) == []
