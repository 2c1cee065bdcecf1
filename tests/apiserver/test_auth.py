"""Static tokens and the admin kubeconfig, loaded by the official Python client."""

from __future__ import annotations

import stat
from pathlib import Path

import kubernetes
import pytest
import yaml
from kybern.plugins.apiserver.auth import Tokens, authenticate, ensure_tokens, write_kubeconfig
from kybern.plugins.apiserver.pki import ensure_pki


def test_tokens_created_once_and_private(tmp_path: Path) -> None:
    tokens = ensure_tokens(tmp_path)
    assert len(tokens.admin) >= 32 and len(tokens.node) >= 32
    assert tokens.admin != tokens.node
    for name in ("token", "node-token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    again = ensure_tokens(tmp_path)
    assert (again.admin, again.node) == (tokens.admin, tokens.node)
    assert tokens.admin not in repr(tokens)


@pytest.mark.parametrize(
    ("header", "user"),
    [
        ("Bearer ADMIN", "admin"),
        ("bearer ADMIN", "admin"),
        ("Bearer   ADMIN  ", "admin"),
        ("Bearer NODE", "system:node"),
        ("Bearer ADMINX", None),
        ("Bearer ", None),
        ("Basic ADMIN", None),
        ("ADMIN", None),
        ("", None),
        (None, None),
    ],
)
def test_authenticate(header: str | None, user: str | None) -> None:
    assert authenticate(header, Tokens(admin="ADMIN", node="NODE")) == user


def test_kubeconfig_loads_with_official_client(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, [])
    tokens = ensure_tokens(tmp_path)
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, "https://127.0.0.1:6443", pki.ca_pem(), tokens.admin, name="dev")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "dev"
    assert "namespace" not in doc["contexts"][0]["context"]

    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(path), client_configuration=config)
    assert config.host == "https://127.0.0.1:6443"
    # client v32 files the token under "authorization", later ones under "BearerToken"
    assert f"Bearer {tokens.admin}" in config.api_key.values()
    assert Path(config.ssl_ca_cert).read_bytes() == pki.ca_pem()
    _contexts, active = kubernetes.config.list_kube_config_contexts(config_file=str(path))
    assert active["name"] == "dev"

    # overwriting keeps the mode and replaces the content atomically
    write_kubeconfig(path, "https://10.0.0.1:6443", pki.ca_pem(), tokens.admin, name="dev")
    assert yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"] == "https://10.0.0.1:6443"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
