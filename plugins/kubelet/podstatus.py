"""Building a pod's status from what the runtime reports, the way the kubelet's
``generateAPIPodStatus`` does: container states, phase, conditions and addresses."""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kybern.quantity import parse_quantity
from kybern.runtime import ContainerStatus

#: second since the epoch -> its RFC 3339 text: a burst of pod starts writes the same few
#: seconds (now, containers' start times) several times a pod, and strftime is the dear part
_texts: dict[int, str] = {}


def _second_text(second: int) -> str:
    text = _texts.get(second)
    if text is None:
        if len(_texts) > 256:
            _texts.clear()
        text = _texts[second] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    return text


def rfc3339(value: datetime | None) -> str | None:
    """The time in UTC to the second (naive times taken as local, as astimezone does)."""
    if value is None:
        return None
    return _second_text(math.floor(value.timestamp()))


def now_rfc3339() -> str:
    return _second_text(int(time.time()))


def latest_two(
    containers: list[ContainerStatus], name: str
) -> tuple[ContainerStatus | None, ContainerStatus | None]:
    mine = [c for c in containers if c.name == name]
    if len(mine) < 2:
        return (mine[0] if mine else None), None
    mine.sort(key=_attempt, reverse=True)
    return mine[0], mine[1]


_attempt = operator.attrgetter("attempt")


def terminated(c: ContainerStatus, scheme: str) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": c.exit_code if c.exit_code is not None else 0,
        "reason": c.reason or ("Completed" if not c.exit_code else "Error"),
        "startedAt": rfc3339(c.started_at),
        "finishedAt": rfc3339(c.finished_at),
        "containerID": f"{scheme}://{c.id}",
    }
    if c.message:
        state["message"] = c.message
    return {"terminated": {k: v for k, v in state.items() if v is not None}}


def qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed when every container limits cpu and memory and requests equal limits,
    BestEffort with no requests or limits at all, Burstable otherwise."""
    spec = pod.get("spec") or {}
    ctrs = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for c in ctrs:
        res = c.get("resources") or {}
        limits = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        if limits or requests:
            any_set = True
        if set(limits) != {"cpu", "memory"}:
            guaranteed = False
            continue
        for k, v in requests.items():
            if parse_quantity(v) != parse_quantity(limits[k]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(
    type_: str, ok: bool, old: dict[str, dict[str, Any]], reason: str = "", message: str = ""
) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = old.get(type_)
    # no lastProbeTime: the kubelet leaves it out of pod conditions (it is never probed)
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "lastTransitionTime": prev.get("lastTransitionTime")
        if prev and prev.get("status") == status
        else now_rfc3339(),
    }
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def build_status(
    pod: dict[str, Any],
    containers: list[ContainerStatus],
    *,
    scheme: str,
    pod_ip: str | None,
    host_ip: str,
    sandbox_ready: bool,
    waiting: dict[str, tuple[str, str]],
    readiness: Callable[[str], bool],
    started: Callable[[str], bool],
) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    policy = spec.get("restartPolicy") or "Always"
    init_statuses: list[dict[str, Any]] = []
    init_done = True
    init_failed = False
    pending_init: list[str] = []
    for ic in spec.get("initContainers") or []:
        st = _container_status(ic, containers, scheme, waiting, readiness, started, init=True)
        latest, _ = latest_two(containers, ic["name"])
        done = latest is not None and latest.state == "exited" and latest.exit_code == 0
        if not done:
            if not init_done and latest is None:  # behind the one still to finish
                st["state"] = {"waiting": {"reason": "PodInitializing"}}
            init_done = False
            pending_init.append(ic["name"])
            if latest is not None and latest.state == "exited" and policy == "Never":
                init_failed = True
        init_statuses.append(st)
    statuses: list[dict[str, Any]] = []
    for c in spec.get("containers") or []:
        st = _container_status(c, containers, scheme, waiting, readiness, started, init=False)
        if not init_done and "waiting" in st["state"] and not st.get("lastState"):
            st["state"] = {"waiting": {"reason": "PodInitializing"}}
        statuses.append(st)

    phase = _phase(spec, statuses, init_done, init_failed, policy)
    old_conds = {c.get("type", ""): c for c in old.get("conditions") or []}
    unready = [s["name"] for s in statuses if not s["ready"]]
    all_ready = not unready and phase == "Running"
    terminal = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    ready_msg = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, old_conds),
        _condition(
            "Initialized",
            init_done,
            old_conds,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        _condition("Ready", all_ready, old_conds, ready_reason, ready_msg),
        _condition("ContainersReady", all_ready, old_conds, ready_reason, ready_msg),
        _condition("PodScheduled", True, old_conds),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or now_rfc3339(),
        "qosClass": old.get("qosClass") or qos_class(pod),
        "containerStatuses": statuses,
    }
    ip = pod_ip or old.get("podIP")
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


def _container_status(
    c: dict[str, Any],
    containers: list[ContainerStatus],
    scheme: str,
    waiting: dict[str, tuple[str, str]],
    readiness: Callable[[str], bool],
    started: Callable[[str], bool],
    init: bool,
) -> dict[str, Any]:
    name = c.get("name", "")
    latest, prev = latest_two(containers, name)
    w = waiting.get(name)
    st: dict[str, Any] = {
        "name": name,
        "image": c.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": latest.attempt if latest else 0,
        "started": False,
        "state": {},
        "lastState": {},
    }
    if latest is None:
        reason, message = w if w else ("ContainerCreating", "")
        st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return st
    st["containerID"] = f"{scheme}://{latest.id}"
    st["imageID"] = latest.image_id
    if latest.state == "running":
        st["state"] = {"running": {"startedAt": rfc3339(latest.started_at) or now_rfc3339()}}
        st["started"] = started(latest.id)
        st["ready"] = bool(st["started"] and (readiness(latest.id) if not init else False))
        if prev is not None and prev.state == "exited":
            st["lastState"] = terminated(prev, scheme)
    elif latest.state == "exited":
        if w:
            st["state"] = {"waiting": {"reason": w[0], **({"message": w[1]} if w[1] else {})}}
            st["lastState"] = terminated(latest, scheme)
        else:
            st["state"] = terminated(latest, scheme)
            if prev is not None and prev.state == "exited":
                st["lastState"] = terminated(prev, scheme)
    else:
        reason, message = w if w else ("ContainerCreating", "")
        st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return st


def _phase(
    spec: dict[str, Any], statuses: list[dict[str, Any]], init_done: bool, init_failed: bool, policy: str
) -> str:
    if init_failed:
        return "Failed"
    if not init_done:
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for st in statuses:
        state = st["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if st.get("lastState", {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"
