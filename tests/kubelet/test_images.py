"""Images from a real registry (docker-registry on loopback): imagePullPolicy Always pulls
and re-pulls a re-pushed tag, IfNotPresent uses what is there, Never refuses to pull, a
missing image backs off; imagePullSecrets (the pod's and its ServiceAccount's, both secret
formats) log in to a registry with htpasswd auth."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .nodes import Cluster
from .registry import Registry, registry_problem, running_registry

pytestmark = pytest.mark.podman

USER = ("kybern", "pull-s3cret")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    problem = registry_problem()
    if problem:
        pytest.skip(problem)
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    problem = registry_problem()
    if problem:
        pytest.skip(problem)
    with running_registry(tmp_path_factory.mktemp("private-registry"), user=USER) as reg:
        yield reg


def pod(name: str, image: str, policy: str, extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: node-a
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
{extra}
  containers:
  - name: app
    image: {image}
    imagePullPolicy: {policy}
    command: ["cat", "/version"]
---
"""


def succeeded(cluster: Cluster, name: str) -> dict[str, Any] | None:
    status = cluster.pod(name).get("status") or {}
    return status if status.get("phase") == "Succeeded" else None


def waiting(cluster: Cluster, name: str, reason: str) -> dict[str, Any] | None:
    state = cluster.container_status(name).get("state") or {}
    got = state.get("waiting") or {}
    return got if got.get("reason") == reason else None


def reasons(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e.get("message", "")) for e in cluster.events(name)]


def test_pull_policies_against_a_registry(cluster: Cluster, registry: Registry, tmp_path: Path) -> None:
    image = registry.push(registry.build(tmp_path, "v1"), "kybern/versioned:1")
    cluster.apply(pod("always-1", image, "Always"))
    first = cluster.wait_for("always-1 to finish", lambda: succeeded(cluster, "always-1"), timeout=90)
    assert cluster.kubectl("logs", "always-1").stdout == "v1\n"
    events = reasons(cluster, "always-1")
    assert ("Normal", "Pulling", f'Pulling image "{image}"') in events
    assert any(r == "Pulled" and m.startswith(f'Successfully pulled image "{image}"') for _, r, m in events)

    # the same tag with new content: Always pulls again and runs the new image
    registry.push(registry.build(tmp_path, "v2"), "kybern/versioned:1")
    cluster.apply(pod("always-2", image, "Always") + pod("present", image, "IfNotPresent"))
    second = cluster.wait_for("always-2 to finish", lambda: succeeded(cluster, "always-2"), timeout=90)
    assert cluster.kubectl("logs", "always-2").stdout == "v2\n"
    first_id = first["containerStatuses"][0]["imageID"]
    second_id = second["containerStatuses"][0]["imageID"]
    assert first_id and second_id and first_id != second_id
    assert ("Normal", "Pulling", f'Pulling image "{image}"') in reasons(cluster, "always-2")

    # IfNotPresent: the image is there (whichever version the node has), nothing is pulled
    cluster.wait_for("present to finish", lambda: succeeded(cluster, "present"), timeout=90)
    assert cluster.kubectl("logs", "present").stdout in ("v1\n", "v2\n")
    events = reasons(cluster, "present")
    assert ("Normal", "Pulled", f'Container image "{image}" already present on machine') in events
    assert not [e for e in events if e[1] == "Pulling"]

    # Never with an image the node lacks (though the registry has it): no pull, ErrImageNeverPull
    never_image = registry.push(registry.build(tmp_path, "v3"), "kybern/never:1")
    missing = registry.ref("kybern/missing:1")
    cluster.apply(pod("never", never_image, "Never") + pod("missing", missing, "IfNotPresent"))
    state = cluster.wait_for("ErrImageNeverPull", lambda: waiting(cluster, "never", "ErrImageNeverPull"))
    assert state["message"] == f'Container image "{never_image}" is not present with pull policy of Never'
    assert ("Warning", "ErrImageNeverPull", state["message"]) in reasons(cluster, "never")
    assert not [e for e in reasons(cluster, "never") if e[1] == "Pulling"]

    # not in the registry: ErrImagePull, then ImagePullBackOff, with the events kubectl shows
    def backing_off() -> bool:
        state = (cluster.container_status("missing").get("state") or {}).get("waiting") or {}
        return state.get("reason") == "ImagePullBackOff"

    cluster.wait_for("ImagePullBackOff", backing_off, timeout=60, interval=0.2)
    events = reasons(cluster, "missing")
    failed = [m for t, r, m in events if (t, r) == ("Warning", "Failed")]
    assert any(m.startswith(f'Failed to pull image "{missing}": ') for m in failed), events
    assert "Error: ErrImagePull" in failed
    assert ("Normal", "BackOff", f'Back-off pulling image "{missing}"') in events
    assert cluster.pod("missing")["status"]["phase"] == "Pending"
    cluster.kubectl(
        "delete", "pod", "always-1", "always-2", "present", "never", "missing", "--wait=true", timeout=90
    )


def docker_config_json(host: str, user: tuple[str, str]) -> str:
    auth = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return json.dumps({"auths": {host: {"username": user[0], "password": user[1], "auth": auth}}})


def test_image_pull_secrets_log_in(cluster: Cluster, private_registry: Registry, tmp_path: Path) -> None:
    reg = private_registry
    image = reg.push(reg.build(tmp_path, "secret"), "private/app:1")
    legacy = {f"http://{reg.host}/private": {"auth": base64.b64encode(":".join(USER).encode()).decode()}}
    legacy_cfg = base64.b64encode(json.dumps(legacy).encode()).decode()
    wrong = base64.b64encode(docker_config_json("other.example:5000", USER).encode()).decode()
    # the way a user makes one: kubectl writes the dockerconfigjson
    cluster.kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server={reg.host}",
                    f"--docker-username={USER[0]}", f"--docker-password={USER[1]}")  # fmt: skip
    assert cluster.json("get", "secret", "regcred")["type"] == "kubernetes.io/dockerconfigjson"
    cluster.apply(
        f"""
apiVersion: v1
kind: Secret
metadata: {{name: legacy-regcred}}
type: kubernetes.io/dockercfg
data: {{.dockercfg: {legacy_cfg}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: elsewhere}}
type: kubernetes.io/dockerconfigjson
data: {{.dockerconfigjson: {wrong}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: puller}}
imagePullSecrets: [{{name: legacy-regcred}}]
"""
    )
    cluster.apply(
        pod("anonymous", image, "Always", "  imagePullSecrets: [{name: elsewhere}, {name: no-such-secret}]")
        + pod("with-secret", image, "Always", "  imagePullSecrets: [{name: regcred}]")
        + pod("with-account", image, "Always", "  serviceAccountName: puller")
    )
    cluster.wait_for("with-secret to finish", lambda: succeeded(cluster, "with-secret"), timeout=90)
    assert cluster.kubectl("logs", "with-secret").stdout == "secret\n"
    cluster.wait_for("with-account to finish", lambda: succeeded(cluster, "with-account"), timeout=90)
    assert cluster.kubectl("logs", "with-account").stdout == "secret\n"

    def refused() -> list[str]:
        events = reasons(cluster, "anonymous")
        return [m for t, r, m in events if (t, r) == ("Warning", "Failed") and m.startswith("Failed to pull")]

    failed = cluster.wait_for("the anonymous pull to fail", refused, timeout=60)
    assert any("unauthorized" in m or "authentication required" in m for m in failed), failed
    state = (cluster.container_status("anonymous").get("state") or {}).get("waiting") or {}
    assert state.get("reason") in ("ErrImagePull", "ImagePullBackOff")
    unretrieved = "Unable to retrieve some image pull secrets (no-such-secret); attempting to pull the image"
    assert ("Warning", "FailedToRetrieveImagePullSecret", unretrieved + " may not succeed.") in reasons(
        cluster, "anonymous"
    )
    # the password reaches Podman, never the logs (kybern's, or the Podman service's it started)
    logs = [cluster.server.log_path, cluster.nodes[0].data_dir / "podman" / "service.log"]
    for path in logs:
        text = path.read_text(errors="replace") if path.exists() else ""
        assert USER[1] not in text and base64.b64encode(":".join(USER).encode()).decode() not in text, path
    cluster.kubectl("delete", "pod", "anonymous", "with-secret", "with-account", "--wait=true", timeout=90)
    cluster.kubectl("delete", "secret", "regcred", "legacy-regcred", "elsewhere")
    cluster.kubectl("delete", "serviceaccount", "puller")
