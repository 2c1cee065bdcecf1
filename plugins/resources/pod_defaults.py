"""Pod and pod-template defaulting, as kube-apiserver applies it.

Two layers exist in Kubernetes and both are reproduced: ``SetDefaults_PodSpec`` and friends
(pkg/apis/core/v1/defaults.go) run on every PodSpec, including the templates inside
Deployments, Jobs and so on; ``SetDefaults_Pod``, the pod registry's PrepareForCreate and the
always-on admission plugins (ServiceAccount, Priority, DefaultTolerationSeconds) only touch real
Pods. Quantities are re-serialised in canonical form, as a Go round trip does.
"""

from __future__ import annotations

from typing import Any

from kybern.plugins.resources.common import DECODE, JSON, dig, ensure, json_key, spec_key
from kybern.quantity import format_quantity

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_TOLERATION_SECONDS = 300
FILE_MODE_0644 = 420
SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}

_MODE_VOLUME_SOURCES = ("configMap", "secret", "downwardAPI", "projected")


def image_tag(image: str) -> tuple[str, bool]:
    """(tag, has_digest) of an image reference; the tag is "latest" when neither is given."""
    digest = "@" in image
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1], digest
    return ("" if digest else "latest"), digest


def default_image_pull_policy(image: str) -> str:
    tag, _ = image_tag(image or "")
    return "Always" if tag == "latest" else "IfNotPresent"


def canonical_resources(resources: JSON | None) -> None:
    """Re-serialise requests/limits/claims quantities the way a Go round trip does."""
    if not resources:
        return
    for key in ("requests", "limits"):
        values = resources.get(key)
        if isinstance(values, dict):
            for name, value in list(values.items()):
                try:
                    values[name] = format_quantity(value)
                except ValueError:
                    pass  # validation reports it


def _default_http_get(action: JSON | None) -> None:
    if action is None:
        return
    if not action.get("path"):
        action["path"] = "/"
    if not action.get("scheme"):
        action["scheme"] = "HTTP"


def default_probe(probe: JSON | None) -> None:
    if not probe:
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        if not probe.get(key):
            probe[key] = value
    _default_http_get(probe.get("httpGet"))
    grpc = probe.get("grpc")
    if isinstance(grpc, dict) and grpc.get("service") is None:
        grpc["service"] = ""


def _default_lifecycle(lifecycle: JSON | None) -> None:
    for hook in ("postStart", "preStop"):
        _default_http_get(dig(lifecycle, hook, "httpGet"))


def _default_field_ref(holder: JSON | None) -> None:
    ref = dig(holder, "fieldRef")
    if isinstance(ref, dict) and not ref.get("apiVersion"):
        ref["apiVersion"] = "v1"


def default_container(container: JSON) -> None:
    """SetDefaults_Container plus the nested port, probe, env and lifecycle defaults."""
    if not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = default_image_pull_policy(container.get("image") or "")
    if not container.get("terminationMessagePath"):
        container["terminationMessagePath"] = "/dev/termination-log"
    if not container.get("terminationMessagePolicy"):
        container["terminationMessagePolicy"] = "File"
    for port in container.get("ports") or []:
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        default_probe(container.get(key))
    _default_lifecycle(container.get("lifecycle"))
    for env in container.get("env") or []:
        _default_field_ref(env.get("valueFrom"))
    canonical_resources(container.get("resources"))


def default_volume(volume: JSON) -> None:
    if not any(value is not None for key, value in volume.items() if key != "name"):
        volume["emptyDir"] = {}
    for key in _MODE_VOLUME_SOURCES:
        source = volume.get(key)
        if isinstance(source, dict) and source.get("defaultMode") is None:
            source["defaultMode"] = FILE_MODE_0644
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    for item in dig(volume, "downwardAPI", "items", default=[]):
        _default_field_ref(item)
    for projection in dig(volume, "projected", "sources", default=[]):
        for item in dig(projection, "downwardAPI", "items", default=[]):
            _default_field_ref(item)
        token = projection.get("serviceAccountToken")
        if isinstance(token, dict) and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
    empty_dir = volume.get("emptyDir")
    if isinstance(empty_dir, dict) and empty_dir.get("sizeLimit") is not None:
        try:
            empty_dir["sizeLimit"] = format_quantity(empty_dir["sizeLimit"])
        except ValueError:
            pass


def _default_host_network_ports(containers: list[JSON]) -> None:
    for container in containers:
        for port in container.get("ports") or []:
            if not port.get("hostPort"):
                port["hostPort"] = port.get("containerPort")


def default_pod_spec(spec: JSON) -> None:
    """SetDefaults_PodSpec and everything nested in it; runs for Pods and pod templates."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = DEFAULT_TERMINATION_GRACE_PERIOD
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    # the deprecated serviceAccount field mirrors serviceAccountName in both directions
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            default_container(container)
    for volume in spec.get("volumes") or []:
        default_volume(volume)


def default_pod_template(template: JSON | None) -> None:
    if template is None:
        return
    default_pod_spec(ensure(template, "spec"))


def _requests_from_limits(containers: list[JSON]) -> None:
    for container in containers:
        resources = container.get("resources")
        if not isinstance(resources, dict):
            continue
        limits = resources.get("limits") or {}
        if not limits:
            continue
        requests = ensure(resources, "requests")
        for name, value in limits.items():
            requests.setdefault(name, value)


def _has_toleration_for(tolerations: list[JSON], key: str) -> bool:
    """The admission plugin's test: same (or empty) key, NoExecute (or empty) effect."""
    return any(
        (t.get("key") or "") in ("", key) and (t.get("effect") or "") in ("", "NoExecute")
        for t in tolerations
    )


def add_default_tolerations(spec: JSON) -> None:
    """The DefaultTolerationSeconds admission plugin: tolerate not-ready/unreachable for 300s."""
    tolerations: list[JSON] = spec.get("tolerations") or []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not _has_toleration_for(tolerations, key):
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
                }
            )
    spec["tolerations"] = tolerations


def qos_class(spec: JSON) -> str:
    """GetPodQOS: Guaranteed when every container's cpu and memory requests equal limits."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for container in containers:
        res = container.get("resources") or {}
        c_req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        c_lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests.update(c_req)
        limits.update(c_lim)
        if set(c_lim) != {"cpu", "memory"}:
            guaranteed = False
        else:
            for name, value in c_req.items():
                if format_quantity(value) != format_quantity(c_lim[name]):
                    guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and limits:
        return "Guaranteed"
    return "Burstable"


def default_pod(pod: JSON) -> None:
    """Everything a Pod gets on create: SetDefaults_Pod, PrepareForCreate and admission defaults.

    The result depends on the spec alone, and every pod of a template (a ReplicaSet's, a
    benchmark's) sends the same one: the defaulted spec is kept, encoded, per spec sent."""
    spec = ensure(pod, "spec")
    key = spec_key(spec)
    hit = _DEFAULTED.get(key.key) if key is not None else None
    if key is not None and hit is not None:
        spec.clear()
        spec.update(DECODE(key.restore(hit[0])))  # a fresh copy: the caller owns (and may change) it
        qos = hit[1]
    else:
        default_pod_spec_admitted(spec)
        try:
            qos = qos_class(spec)
        except ValueError:
            qos = None  # bad quantities: validation reports them
        done = json_key(spec) if key is not None else None
        if key is not None and done is not None:
            if len(_DEFAULTED) >= _DEFAULTED_MAX:
                _DEFAULTED.clear()
            _DEFAULTED[key.key] = (key.generalize(done), qos)
    status = ensure(pod, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"
    if not status.get("qosClass") and qos is not None:
        status["qosClass"] = qos


#: a pod spec as sent (compact JSON) -> (the defaulted spec's JSON, its QoS class)
_DEFAULTED: dict[bytes, tuple[bytes, str | None]] = {}
_DEFAULTED_MAX = 256  # specs of a few KB: a bounded, small memory


def default_pod_spec_admitted(spec: JSON) -> None:
    """A Pod's spec defaults: SetDefaults_Pod, SetDefaults_PodSpec and the admission plugins'."""
    _requests_from_limits(spec.get("containers") or [])
    _requests_from_limits(spec.get("initContainers") or [])
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork"):
        _default_host_network_ports(spec.get("containers") or [])
        _default_host_network_ports(spec.get("initContainers") or [])
    default_pod_spec(spec)
    # ServiceAccount admission
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = "default"
        spec["serviceAccount"] = "default"
    # Priority admission: kybern serves no PriorityClass objects, so only the two built-in
    # system classes resolve; every other pod gets the no-default-class priority 0
    if spec.get("priority") is None:
        spec["priority"] = SYSTEM_PRIORITY_CLASSES.get(spec.get("priorityClassName") or "", 0)
    if spec.get("preemptionPolicy") is None:
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    add_default_tolerations(spec)
