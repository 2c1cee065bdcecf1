"""The Pod kind's strategy: validation on update, ``kubectl get pods`` rows, field selectors."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from kybern.plugins.resources.common import (
    AGE_COLUMN,
    JSON,
    NAME_COLUMN,
    age_of,
    dig,
    name_of,
    parse_time,
    since,
)
from kybern.plugins.resources.pod_validation import validate_pod_spec
from kybern.resources import FieldError, TableColumn
from kybern.validation import forbidden, invalid, required

UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def validate_pod(new: JSON, old: JSON | None) -> list[FieldError]:
    errs = validate_pod_spec(new.get("spec"), "spec")
    if old is None and (new.get("spec") or {}).get("ephemeralContainers"):
        # ephemeral containers are added later through the ephemeralcontainers subresource
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if old is not None:
        errs.extend(validate_pod_spec_update(new.get("spec") or {}, old.get("spec") or {}))
    return errs


def _toleration_key(t: JSON) -> tuple[Any, ...]:
    return (t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "", t.get("effect") or "")


def _only_added_tolerations(new: list[JSON], old: list[JSON]) -> bool:
    remaining = list(new)
    for old_tol in old:
        match = None
        for candidate in remaining:
            if _toleration_key(candidate) != _toleration_key(old_tol):
                continue
            old_secs, new_secs = old_tol.get("tolerationSeconds"), candidate.get("tolerationSeconds")
            if old_secs == new_secs or (
                old_tol.get("effect") == "NoExecute"
                and new_secs is not None
                and (old_secs is None or new_secs <= old_secs)
            ):
                match = candidate
                break
        if match is None:
            return False
        remaining.remove(match)
    return True


def validate_pod_spec_update(new: JSON, old: JSON) -> list[FieldError]:
    """ValidatePodUpdate: a pod's spec is fixed once created, bar a few fields."""
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        for i, container in enumerate(new.get(key) or []):
            if not container.get("image"):
                errs.append(required(f"spec.{key}[{i}].image"))
    new_deadline, old_deadline = new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    if new_deadline is None and old_deadline is not None:
        errs.append(
            invalid(
                "spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"
            )
        )
    elif new_deadline is not None and old_deadline is not None and new_deadline > old_deadline:
        errs.append(
            invalid(
                "spec.activeDeadlineSeconds", new_deadline, "must be less than or equal to previous value"
            )
        )
    new_tolerations, old_tolerations = new.get("tolerations") or [], old.get("tolerations") or []
    if not _only_added_tolerations(new_tolerations, old_tolerations):
        errs.append(
            forbidden(
                "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
            )
        )

    munged = copy.deepcopy(new)
    for key in ("containers", "initContainers"):
        new_list, old_list = munged.get(key) or [], old.get(key) or []
        if len(new_list) == len(old_list):
            for mc, oc in zip(new_list, old_list, strict=True):
                if "image" in oc:
                    mc["image"] = oc["image"]
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in old:
            munged[key] = old[key]
        else:
            munged.pop(key, None)
    old_grace = old.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    gates_new, gates_old = munged.get("schedulingGates") or [], old.get("schedulingGates") or []
    if all(g in gates_old for g in gates_new):
        # removing scheduling gates is how a gated pod is released
        if "schedulingGates" in old:
            munged["schedulingGates"] = gates_old
        else:
            munged.pop("schedulingGates", None)
    if munged != old:
        errs.append(forbidden("spec", f"pod updates may not change fields other than {UPDATABLE_POD_FIELDS}"))
    return errs


# --------------------------------------------------------------------------- table

POD_COLUMNS = (
    NAME_COLUMN,
    TableColumn("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic."),
    TableColumn("Status", "string", "", "The aggregate status of the containers in this pod."),
    TableColumn(
        "Restarts",
        "string",
        "",
        "The number of times the containers in this pod have been restarted and when the last container in "
        "this pod has restarted.",
    ),
    AGE_COLUMN,
    TableColumn(
        "IP", "string", "", "podIP address allocated to the pod. Routable at least within the cluster.", 1
    ),
    TableColumn("Node", "string", "", "NodeName indicates in which node this pod is scheduled.", 1),
    TableColumn(
        "Nominated Node", "string", "", "nominatedNodeName is set when this pod preempts other pods.", 1
    ),
    TableColumn("Readiness Gates", "string", "", "If specified, all readiness gates will be evaluated.", 1),
)


def _condition_true(conditions: list[JSON], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _later(current: datetime | None, value: str | None) -> datetime | None:
    when = parse_time(value)
    if when is None:
        return current
    return when if current is None or when > current else current


def pod_status_text(pod: JSON) -> tuple[str, int, int, int, datetime | None]:
    """printPod's STATUS logic: (reason, ready, total, restarts, last restart time)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or [])
    total += sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions):
        reason = "SchedulingGated"

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount") or 0
        last_terminated = dig(cs, "lastState", "terminated", "finishedAt")
        last_restart = _later(last_restart, last_terminated)
        sidecar = (init_specs.get(cs.get("name")) or {}).get("restartPolicy") == "Always"
        if sidecar:
            sidecar_restarts += cs.get("restartCount") or 0
            last_sidecar_restart = _later(last_sidecar_restart, last_terminated)
        terminated = dig(cs, "state", "terminated")
        waiting = dig(cs, "state", "waiting")
        if terminated is not None and (terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if not terminated.get("reason"):
                if terminated.get("signal"):
                    reason = f"Init:Signal:{terminated['signal']}"
                else:
                    reason = f"Init:ExitCode:{terminated.get('exitCode') or 0}"
            else:
                reason = "Init:" + terminated["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount") or 0
            last_restart = _later(last_restart, dig(cs, "lastState", "terminated", "finishedAt"))
            waiting = dig(cs, "state", "waiting")
            terminated = dig(cs, "state", "terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode') or 0}"
            elif cs.get("ready") and dig(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if dig(pod, "metadata", "deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def pod_row(pod: JSON) -> list[Any]:
    reason, ready, total, restarts, last_restart = pod_status_text(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({since(last_restart.isoformat(), datetime.now(UTC))} ago)"
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    pod_ip = dig(status, "podIPs", 0, "ip") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            for condition in status.get("conditions") or []:
                if condition.get("type") == gate.get("conditionType"):
                    true_count += condition.get("status") == "True"
                    break
        gates_text = f"{true_count}/{len(gates)}"
    return [
        name_of(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        age_of(pod),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


POD_FIELD_SELECTORS = {
    "spec.nodeName": lambda p: dig(p, "spec", "nodeName", default=""),
    "spec.restartPolicy": lambda p: dig(p, "spec", "restartPolicy", default=""),
    "spec.schedulerName": lambda p: dig(p, "spec", "schedulerName", default=""),
    "spec.serviceAccountName": lambda p: dig(p, "spec", "serviceAccountName", default=""),
    "spec.hostNetwork": lambda p: "true" if dig(p, "spec", "hostNetwork") else "false",
    "status.phase": lambda p: dig(p, "status", "phase", default=""),
    "status.podIP": lambda p: (
        dig(p, "status", "podIPs", 0, "ip", default="") or dig(p, "status", "podIP", default="")
    ),
    "status.nominatedNodeName": lambda p: dig(p, "status", "nominatedNodeName", default=""),
}
