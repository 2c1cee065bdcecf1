"""The Deployment controller (kube's pkg/controller/deployment): rollouts over ReplicaSets.

A Deployment owns ReplicaSets; the one whose pod template equals the Deployment's (ignoring
the ``pod-template-hash`` label) is the *new* one, the others are old. A rollout scales the new
one up and the old ones down within maxSurge/maxUnavailable (RollingUpdate), or scales the old
ones to zero first and waits for their pods to be gone (Recreate). Revisions live in the
``deployment.kubernetes.io/revision`` annotation of each ReplicaSet; ``kubectl rollout undo``
patches the template back, which makes an old ReplicaSet the new one again: it gets the next
revision and is scaled up. Status and the Progressing/Available conditions follow kube's
rules so that ``kubectl rollout status`` behaves the same.

The arithmetic (rounding of percentages, proportional scaling, which ReplicaSets go first)
mirrors kube's deployment/util on purpose: users' expectations come from there.
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

from kybern import events, hookimpl
from kybern.client import ApiError
from kybern.controllers import ControllerContext, ControllerSpec
from kybern.labels import selector_from_dict
from kybern.plugins.controllers import util
from kybern.plugins.controllers.base import QueueController

DEPLOYMENTS = "deployments.apps"
REPLICASETS = "replicasets.apps"

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
#: Deployment annotations that are not copied onto its ReplicaSets
SKIP_COPY = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}

# condition reasons (kube's deployment/util)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

MAX_INT32 = 2**31 - 1
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

Obj = dict[str, Any]


# --- pure helpers -----------------------------------------------------------------------------


def replicas_of(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def annotations(obj: Obj) -> dict[str, str]:
    return util.meta(obj).get("annotations") or {}


def revision_of(rs: Obj) -> int:
    try:
        return int(annotations(rs).get(REVISION) or 0)
    except ValueError:
        return 0


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An IntOrString as a count: ``"25%"`` of ``total``, rounded up or down (kube's rules)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        return int(text)
    pct = int(text[:-1])
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as counts; both zero would deadlock, so unavailable is 1."""
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas_of(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas_of(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas_of(d))


def template_hash(template: Obj, collision_count: int | None) -> str:
    """A stable, label-safe hash of a pod template (FNV-1a 32 of its canonical JSON, encoded
    with kube's SafeEncodeString alphabet, so it never looks like a word or a number)."""
    data = json.dumps(_normalized(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in str(h).encode())


def _normalized(value: Any) -> Any:
    """Null and empty values dropped: Go's omitempty makes them equal to absent, and kubectl's
    undo patch carries ``creationTimestamp: null`` in the template's metadata."""
    if isinstance(value, dict):
        out = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _without_hash(template: Obj | None) -> Obj:
    t = _normalized(template or {})
    meta = t.get("metadata")
    if isinstance(meta, dict):
        labels = dict(meta.get("labels") or {})
        labels.pop(HASH_LABEL, None)
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
        if not meta:
            t.pop("metadata")
    return t


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    return _without_hash(a) == _without_hash(b)


def by_creation(rs: Obj) -> tuple[str, str]:
    return (util.meta(rs).get("creationTimestamp") or "", util.name_of(rs))


def active(rss: list[Obj]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas_of(rs) > 0]


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (kube's FindNewReplicaSet)."""
    template = (d.get("spec") or {}).get("template")
    for rs in sorted(rss, key=by_creation):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def get_condition(status: Obj, type_: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def new_condition(type_: str, status: str, reason: str, message: str) -> Obj:
    now = util.now_iso()
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    """kube's SetDeploymentCondition: same status and reason is no change at all."""
    current = get_condition(status, cond["type"])
    if (
        current is not None
        and current.get("status") == cond["status"]
        and current.get("reason") == cond["reason"]
    ):
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [
        cond
    ]


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def has_progress_deadline(d: Obj) -> bool:
    pds = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return pds is not None and int(pds) != MAX_INT32


def deployment_complete(d: Obj, status: Obj) -> bool:
    n = replicas_of(d)
    return (
        int(status.get("updatedReplicas") or 0) == n
        and int(status.get("replicas") or 0) == n
        and int(status.get("availableReplicas") or 0) == n
        and int(status.get("observedGeneration") or 0) >= int(util.meta(d).get("generation") or 0)
    )


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = d.get("status") or {}

    def g(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or new_old < old_old
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )


def deployment_timed_out(d: Obj, status: Obj) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = util.parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    return since + int(d["spec"]["progressDeadlineSeconds"]) < time.time()


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    meta = rs.setdefault("metadata", {})
    ann = meta.setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Copy the Deployment's annotations, bump the revision (keeping the old one in
    revision-history when an old ReplicaSet comes back), set replica annotations on create."""
    meta = rs.setdefault("metadata", {})
    ann = meta.setdefault("annotations", {})
    changed = False
    for key, value in annotations(d).items():
        if key in SKIP_COPY or ann.get(key) == value:
            continue
        ann[key] = value
        changed = True
    old = ann.get(REVISION, "")
    try:
        old_int = int(old) if old else 0
    except ValueError:
        return changed
    if old_int < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old:
            history = ann.get(REVISION_HISTORY)
            ann[REVISION_HISTORY] = f"{history},{old}" if history else old
    if not exists and set_replicas_annotations(rs, replicas_of(d), replicas_of(d) + max_surge(d)):
        changed = True
    return changed


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How big the new ReplicaSet may be now (kube's NewRSNewReplicas)."""
    if not is_rolling(d):
        return replicas_of(d)
    surge = resolve_fenceposts(d)[0]
    current = sum(replicas_of(rs) for rs in all_rss if rs is not None)
    new_current = replicas_of(new_rs) if new_rs is not None else 0
    max_total = replicas_of(d) + surge
    if current >= max_total:
        return new_current
    scale_up = min(max_total - current, replicas_of(d) - new_current)
    return new_current + scale_up


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = annotations(rs).get(DESIRED_REPLICAS)
    return (
        desired == str(replicas_of(d))
        and replicas_of(rs) == replicas_of(d)
        and status_int(rs, "availableReplicas") == replicas_of(d)
    )


def rs_fraction(rs: Obj, d: Obj) -> int:
    if replicas_of(d) == 0:
        return -replicas_of(rs)
    deployment_replicas = replicas_of(d) + max_surge(d)
    try:
        annotated = int(annotations(rs)[MAX_REPLICAS])
    except (KeyError, ValueError):
        annotated = status_int(d, "replicas")
    if annotated == 0:
        return 0
    size = replicas_of(rs) * deployment_replicas / annotated
    return math.floor(size + 0.5) - replicas_of(rs)


def proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# --- the controller ---------------------------------------------------------------------------


class DeploymentController(QueueController):
    component = "deployment-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.d_informer = ctx.informers.informer(DEPLOYMENTS)
        self.rs_informer = ctx.informers.informer(REPLICASETS)
        self.pod_informer = ctx.informers.informer("pods")
        self.d_informer.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._enqueue
        )
        self.rs_informer.add_event_handler(
            on_add=self._rs_added, on_update=self._rs_updated, on_delete=self._rs_deleted
        )
        self.pod_informer.add_event_handler(on_delete=self._pod_deleted)

    # --- handlers -----------------------------------------------------------------------------

    def _enqueue(self, d: Obj) -> None:
        self.queue.add(util.key_of(util.namespace_of(d), util.name_of(d)))

    def _owner(self, namespace: str | None, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.d_informer.store.get_by_name(namespace, ref.get("name", ""))
        if d is None or util.uid_of(d) != ref.get("uid"):
            return None
        return d

    def _matching(self, rs: Obj) -> list[Obj]:
        labels = util.meta(rs).get("labels") or {}
        out = []
        for d in self.d_informer.store.list(util.namespace_of(rs) or ""):
            sel = (d.get("spec") or {}).get("selector")
            if sel and selector_from_dict(sel).matches(labels):
                out.append(d)
        return out

    def _rs_added(self, rs: Obj) -> None:
        d = self._owner(util.namespace_of(rs), util.controller_ref(rs))
        if d is not None:
            self._enqueue(d)
        elif util.controller_ref(rs) is None:
            for d in self._matching(rs):
                self._enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if util.meta(old).get("resourceVersion") == util.meta(new).get("resourceVersion"):
            return
        old_ref, new_ref = util.controller_ref(old), util.controller_ref(new)
        if old_ref is not None and (new_ref is None or new_ref.get("uid") != old_ref.get("uid")):
            d = self._owner(util.namespace_of(old), old_ref)
            if d is not None:
                self._enqueue(d)
        if new_ref is not None:
            d = self._owner(util.namespace_of(new), new_ref)
            if d is not None:
                self._enqueue(d)
            return
        if old_ref is not None or util.meta(old).get("labels") != util.meta(new).get("labels"):
            for d in self._matching(new):
                self._enqueue(d)

    def _rs_deleted(self, rs: Obj) -> None:
        d = self._owner(util.namespace_of(rs), util.controller_ref(rs))
        if d is not None:
            self._enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        """Recreate waits for old pods to be gone: their deletion is worth a look."""
        ref = util.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.store.get_by_name(util.namespace_of(pod), ref.get("name", ""))
        if rs is None:
            return
        d = self._owner(util.namespace_of(rs), util.controller_ref(rs))
        if d is not None and not is_rolling(d):
            self._enqueue(d)

    # --- API writes ---------------------------------------------------------------------------

    async def _update_status(self, d: Obj, status: Obj) -> None:
        body = {**d, "status": {k: v for k, v in status.items() if v not in (None, 0, [])}}
        updated = await self.client.update(DEPLOYMENTS, body, util.namespace_of(d), subresource="status")
        d["metadata"] = updated.get("metadata", d["metadata"])
        d["status"] = updated.get("status") or {}

    async def _set_revision(self, d: Obj, revision: str) -> None:
        if annotations(d).get(REVISION) == revision:
            return
        updated = await self.client.patch(
            DEPLOYMENTS,
            util.name_of(d),
            {"metadata": {"annotations": {REVISION: revision}}},
            namespace=util.namespace_of(d),
        )
        d["metadata"] = updated.get("metadata", d["metadata"])

    async def _scale(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        """Resize one ReplicaSet (and its replica annotations); event when the size changed."""
        size_changes = replicas_of(rs) != new_scale
        desired, max_replicas = replicas_of(d), replicas_of(d) + max_surge(d)
        if not size_changes and not replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = replicas_of(rs)
        body = copy.deepcopy(rs)
        body.setdefault("spec", {})["replicas"] = new_scale
        set_replicas_annotations(body, desired, max_replicas)
        updated = await self.client.update(REPLICASETS, body, util.namespace_of(rs))
        if size_changes:
            op = "up" if old_scale < new_scale else "down"
            self.recorder.event(
                d,
                events.NORMAL,
                events.SCALING_REPLICA_SET,
                f"Scaled {op} replica set {util.name_of(rs)} from {old_scale} to {new_scale}",
            )
        return size_changes, updated

    # --- sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.d_informer.store.get(key)
        if cached is None:
            return
        d: Obj = {"kind": "Deployment", "apiVersion": "apps/v1", **copy.deepcopy(cached)}
        d.setdefault("status", {})
        spec = d.get("spec") or {}
        selector = selector_from_dict(spec.get("selector"))
        if selector.empty:
            self.recorder.event(
                d,
                events.WARNING,
                events.SELECTING_ALL,
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            if int(d["status"].get("observedGeneration") or 0) < int(util.meta(d).get("generation") or 0):
                await self._update_status(
                    d, {**d["status"], "observedGeneration": util.meta(d).get("generation")}
                )
            return
        rs_list = await self._claim_replicasets(d, selector)
        if util.meta(d).get("deletionTimestamp"):
            new_rs, old_rss = await self._get_all(d, rs_list, create=False)
            await self._sync_status(old_rss + ([new_rs] if new_rs else []), new_rs, d)
            return
        await self._check_paused_conditions(d)
        if spec.get("paused") or await self._is_scaling_event(d, rs_list):
            await self._sync_scale(d, rs_list)
            return
        if is_rolling(d):
            await self._rollout_rolling(d, rs_list)
        else:
            await self._rollout_recreate(d, rs_list, selector)

    async def _claim_replicasets(self, d: Obj, selector: Any) -> list[Obj]:
        candidates = self.rs_informer.store.list(util.namespace_of(d))
        ns, name = util.namespace_of(d), util.name_of(d)

        async def fresh() -> Obj | None:
            try:
                return await self.client.get(DEPLOYMENTS, name, ns)
            except ApiError as exc:
                if exc.not_found:
                    return None
                raise

        claimed = await util.claim(
            self.client, REPLICASETS, d, "Deployment", "apps/v1", selector, candidates, fresh
        )
        return [copy.deepcopy(rs) for rs in claimed]

    async def _check_paused_conditions(self, d: Obj) -> None:
        if not has_progress_deadline(d):
            return
        status = copy.deepcopy(d.get("status") or {})
        cond = get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused = bool((d.get("spec") or {}).get("paused"))
        paused_cond = cond is not None and cond.get("reason") == PAUSED
        if paused and not paused_cond:
            set_condition(status, new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused"))
        elif not paused and paused_cond:
            set_condition(status, new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed"))
        else:
            return
        await self._update_status(d, status)

    async def _get_all(self, d: Obj, rs_list: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        """(new ReplicaSet or None, old ones), syncing the revision annotations on the way.
        ``rs_list`` is updated in place with what the API returned."""
        existing = find_new_rs(d, rs_list)
        old_rss = [rs for rs in rs_list if rs is not existing]
        max_old = max([revision_of(rs) for rs in old_rss] or [0])
        new_revision = max_old + 1
        if existing is not None:
            rs_copy = copy.deepcopy(existing)
            changed = set_new_rs_annotations(d, rs_copy, new_revision, exists=True)
            mrs = (d.get("spec") or {}).get("minReadySeconds") or 0
            if changed or ((rs_copy.get("spec") or {}).get("minReadySeconds") or 0) != mrs:
                rs_copy["spec"]["minReadySeconds"] = mrs
                updated = await self.client.update(REPLICASETS, rs_copy, util.namespace_of(d))
                rs_list[rs_list.index(existing)] = updated
                return updated, old_rss
            await self._set_revision(d, annotations(rs_copy).get(REVISION, ""))
            if has_progress_deadline(d) and get_condition(d["status"], "Progressing") is None:
                status = copy.deepcopy(d["status"])
                msg = f'Found new replica set "{util.name_of(rs_copy)}"'
                set_condition(status, new_condition("Progressing", "True", FOUND_NEW_RS, msg))
                await self._update_status(d, status)
            return existing, old_rss
        if not create:
            return None, old_rss
        return await self._create_new_rs(d, rs_list, old_rss, new_revision), old_rss

    async def _create_new_rs(self, d: Obj, rs_list: list[Obj], old_rss: list[Obj], revision: int) -> Obj:
        spec = d.get("spec") or {}
        collision = (d.get("status") or {}).get("collisionCount")
        hash_ = template_hash(spec.get("template") or {}, collision)
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{util.name_of(d)}-{hash_}",
                "namespace": util.namespace_of(d),
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [util.controller_reference(d, "Deployment", "apps/v1")],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds") or 0,
                "selector": selector,
                "template": template,
            },
        }
        new_replicas = new_rs_new_replicas(d, old_rss, rs)
        rs["spec"]["replicas"] = new_replicas
        set_new_rs_annotations(d, rs, revision, exists=False)
        already_exists = False
        try:
            created = await self.client.create(REPLICASETS, rs, util.namespace_of(d))
        except ApiError as exc:
            if not exc.already_exists:
                raise
            current = await self.client.get(REPLICASETS, rs["metadata"]["name"], util.namespace_of(d))
            ref = util.controller_ref(current)
            if (
                ref is not None
                and ref.get("uid") == util.uid_of(d)
                and equal_ignore_hash((current.get("spec") or {}).get("template"), spec.get("template"))
            ):
                created, already_exists = current, True
            else:
                # a different template hashed to the same name: try another hash next time
                status = copy.deepcopy(d["status"])
                status["collisionCount"] = int(collision or 0) + 1
                await self._update_status(d, status)
                raise
        rs_list.append(created)
        if not already_exists and new_replicas > 0:
            self.recorder.event(
                d,
                events.NORMAL,
                events.SCALING_REPLICA_SET,
                f"Scaled up replica set {util.name_of(created)} from 0 to {new_replicas}",
            )
        await self._set_revision(d, str(revision))
        if not already_exists and has_progress_deadline(d):
            status = copy.deepcopy(d["status"])
            msg = f'Created new replica set "{util.name_of(created)}"'
            set_condition(status, new_condition("Progressing", "True", NEW_RS_CREATED, msg))
            await self._update_status(d, status)
        return created

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        new_rs, old_rss = await self._get_all(d, rs_list, create=False)
        for rs in active([*old_rss, new_rs] if new_rs else old_rss):
            desired = annotations(rs).get(DESIRED_REPLICAS)
            if desired is None:
                continue
            if desired != str(replicas_of(d)):
                return True
        return False

    # --- scaling (paused deployments and scale events) ----------------------------------------

    async def _sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._get_all(d, rs_list, create=False)
        await self._proportional_scale(d, new_rs, old_rss)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(old_rss, d)
        await self._sync_status([*old_rss, new_rs] if new_rs else old_rss, new_rs, d)

    async def _proportional_scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        target = self._active_or_latest(new_rs, old_rss)
        if target is not None:
            if replicas_of(target) != replicas_of(d):
                await self._scale(target, replicas_of(d), d)
            return
        if is_saturated(d, new_rs):
            for old in active(old_rss):
                await self._scale(old, 0, d)
            return
        if not is_rolling(d):
            return
        all_rss = active([*old_rss, new_rs] if new_rs else old_rss)
        current = sum(replicas_of(rs) for rs in all_rss)
        allowed = replicas_of(d) + max_surge(d) if replicas_of(d) > 0 else 0
        to_add = allowed - current
        if to_add > 0:  # bigger first; among equals newer first
            all_rss.sort(key=by_creation, reverse=True)
            all_rss.sort(key=lambda rs: -replicas_of(rs))
        elif to_add < 0:  # bigger first; among equals older first
            all_rss.sort(key=by_creation)
            all_rss.sort(key=lambda rs: -replicas_of(rs))
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rss:
            if to_add != 0:
                p = proportion(rs, d, to_add, added)
                sizes[util.name_of(rs)] = replicas_of(rs) + p
                added += p
            else:
                sizes[util.name_of(rs)] = replicas_of(rs)
        for i, rs in enumerate(all_rss):
            name = util.name_of(rs)
            if i == 0 and to_add != 0:
                sizes[name] = max(0, sizes[name] + to_add - added)
            await self._scale(rs, sizes[name], d)

    @staticmethod
    def _active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
        if new_rs is None and not old_rss:
            return None
        olds = sorted(old_rss, key=by_creation, reverse=True)
        candidates = active([*olds, new_rs] if new_rs else olds)
        if len(candidates) == 0:
            return new_rs if new_rs is not None else olds[0]
        if len(candidates) == 1:
            return candidates[0]
        return None

    # --- RollingUpdate ------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._get_all(d, rs_list, create=True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        if await self._reconcile_new_rs(all_rss, new_rs, d):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if await self._reconcile_old_rss(all_rss, active(old_rss), new_rs, d):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(old_rss, d)
        await self._sync_rollout_status(all_rss, new_rs, d)

    async def _reconcile_new_rs(self, all_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        if replicas_of(new_rs) == replicas_of(d):
            return False
        if replicas_of(new_rs) > replicas_of(d):
            scaled, _ = await self._scale(new_rs, replicas_of(d), d)
            return scaled
        scaled, _ = await self._scale(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)
        return scaled

    async def _reconcile_old_rss(self, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        if sum(replicas_of(rs) for rs in old_rss) == 0:
            return False
        all_pods = sum(replicas_of(rs) for rs in all_rss)
        min_available = replicas_of(d) - max_unavailable(d)
        new_unavailable = replicas_of(new_rs) - status_int(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old_rss, cleaned = await self._cleanup_unhealthy(old_rss, d, max_scaled_down)
        scaled = await self._scale_down_old_rolling([*old_rss, new_rs], old_rss, d)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, old_rss: list[Obj], d: Obj, max_cleanup: int) -> tuple[list[Obj], int]:
        """Scale down old ReplicaSets' unavailable pods first: they serve nobody."""
        old_rss = sorted(old_rss, key=by_creation)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            if replicas_of(rs) == 0:
                continue
            healthy = status_int(rs, "availableReplicas")
            if replicas_of(rs) == healthy:
                continue
            count = min(max_cleanup - total, replicas_of(rs) - healthy)
            _, old_rss[i] = await self._scale(rs, replicas_of(rs) - count, d)
            total += count
        return old_rss, total

    async def _scale_down_old_rolling(self, all_rss: list[Obj], old_rss: list[Obj], d: Obj) -> int:
        min_available = replicas_of(d) - max_unavailable(d)
        available = sum(status_int(rs, "availableReplicas") for rs in all_rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in sorted(old_rss, key=by_creation):
            if total >= to_scale_down:
                break
            if replicas_of(rs) == 0:
                continue
            count = min(replicas_of(rs), to_scale_down - total)
            await self._scale(rs, replicas_of(rs) - count, d)
            total += count
        return total

    # --- Recreate -----------------------------------------------------------------------------

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj], selector: Any) -> None:
        new_rs, old_rss = await self._get_all(d, rs_list, create=False)
        all_rss = [*old_rss, new_rs] if new_rs else list(old_rss)
        scaled_down = False
        for rs in active(old_rss):
            scaled, _ = await self._scale(rs, 0, d)
            scaled_down = scaled_down or scaled
        if scaled_down or self._old_pods_running(new_rs, old_rss, d, selector):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self._get_all(d, rs_list, create=True)
            all_rss = [*old_rss, new_rs] if new_rs else list(old_rss)
        if new_rs is not None:
            await self._scale(new_rs, replicas_of(d), d)
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(old_rss, d)
        await self._sync_rollout_status(all_rss, new_rs, d)

    def _old_pods_running(self, new_rs: Obj | None, old_rss: list[Obj], d: Obj, selector: Any) -> bool:
        if sum(status_int(rs, "replicas") for rs in old_rss) > 0:
            return True
        old_uids = {util.uid_of(rs) for rs in old_rss}
        for pod in self.pod_informer.store.list(util.namespace_of(d)):
            ref = util.controller_ref(pod)
            if ref is None or ref.get("uid") not in old_uids:
                continue
            if not selector.matches(util.meta(pod).get("labels") or {}):
                continue
            if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
        return False

    # --- history and status -------------------------------------------------------------------

    async def _cleanup(self, old_rss: list[Obj], d: Obj) -> None:
        """Delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old_rss if not util.meta(rs).get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        alive.sort(key=lambda rs: (revision_of(rs), by_creation(rs)))
        for rs in alive[:diff]:
            if (
                status_int(rs, "replicas") != 0
                or replicas_of(rs) != 0
                or int(util.meta(rs).get("generation") or 0) > status_int(rs, "observedGeneration")
            ):
                continue
            try:
                await self.client.delete(REPLICASETS, util.name_of(rs), util.namespace_of(rs))
            except ApiError as exc:
                if not exc.not_found:
                    raise

    def _calculate_status(self, all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> Obj:
        available = sum(status_int(rs, "availableReplicas") for rs in all_rss)
        total = sum(replicas_of(rs) for rs in all_rss)
        old = d.get("status") or {}
        status: Obj = {
            "observedGeneration": util.meta(d).get("generation"),
            "replicas": sum(status_int(rs, "replicas") for rs in all_rss),
            "updatedReplicas": status_int(new_rs, "replicas"),
            "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
            "collisionCount": old.get("collisionCount"),
            "conditions": copy.deepcopy(old.get("conditions") or []),
        }
        if available >= replicas_of(d) - max_unavailable(d):
            cond = new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.")
        else:
            cond = new_condition(
                "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability."
            )
        set_condition(status, cond)
        return status

    @staticmethod
    def _same(a: Obj, b: Obj) -> bool:
        def norm(s: Obj) -> Obj:
            return {k: v for k, v in s.items() if v not in (None, 0, [])}

        return norm(a) == norm(b)

    async def _sync_status(self, all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> None:
        status = self._calculate_status(all_rss, new_rs, d)
        if not self._same(d.get("status") or {}, status):
            await self._update_status(d, status)

    async def _sync_rollout_status(self, all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> None:
        status = self._calculate_status(all_rss, new_rs, d)
        if has_progress_deadline(d):
            current = get_condition(status, "Progressing")
            complete_already = (
                status.get("replicas") == status.get("updatedReplicas")
                and current is not None
                and current.get("reason") == NEW_RS_AVAILABLE
            )
            if not complete_already:
                name = util.name_of(new_rs) if new_rs else None
                if deployment_complete(d, status):
                    msg = (
                        f'ReplicaSet "{name}" has successfully progressed.'
                        if name
                        else f'Deployment "{util.name_of(d)}" has successfully progressed.'
                    )
                    set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg))
                elif deployment_progressing(d, status):
                    msg = (
                        f'ReplicaSet "{name}" is progressing.'
                        if name
                        else f'Deployment "{util.name_of(d)}" is progressing.'
                    )
                    cond = new_condition("Progressing", "True", RS_UPDATED, msg)
                    if current is not None:
                        if current.get("status") == "True":
                            cond["lastTransitionTime"] = current.get("lastTransitionTime")
                        remove_condition(status, "Progressing")
                    status["conditions"] = [*(status.get("conditions") or []), cond]
                elif deployment_timed_out(d, status):
                    msg = (
                        f'ReplicaSet "{name}" has timed out progressing.'
                        if name
                        else f'Deployment "{util.name_of(d)}" has timed out progressing.'
                    )
                    set_condition(status, new_condition("Progressing", "False", TIMED_OUT, msg))
        failure = self._replica_failure(all_rss, new_rs)
        if failure is not None:
            set_condition(status, failure)
        else:
            remove_condition(status, "ReplicaFailure")
        if self._same(d.get("status") or {}, status):
            self._requeue_stuck(d, status)
            return
        await self._update_status(d, status)

    @staticmethod
    def _replica_failure(all_rss: list[Obj], new_rs: Obj | None) -> Obj | None:
        for rs in ([new_rs] if new_rs else []) + all_rss:
            for c in (rs.get("status") or {}).get("conditions") or []:
                if c.get("type") == "ReplicaFailure":
                    return {
                        "type": "ReplicaFailure",
                        "status": c.get("status"),
                        "lastUpdateTime": c.get("lastTransitionTime"),
                        "lastTransitionTime": c.get("lastTransitionTime"),
                        "reason": c.get("reason"),
                        "message": c.get("message"),
                    }
        return None

    def _requeue_stuck(self, d: Obj, status: Obj) -> None:
        """Look again when the progress deadline would pass (no event will say so)."""
        cond = get_condition(status, "Progressing")
        if not has_progress_deadline(d) or cond is None:
            return
        if cond.get("reason") == TIMED_OUT or deployment_complete(d, status):
            return
        since = util.parse_time(cond.get("lastUpdateTime"))
        if since is None:
            return
        after = since + int(d["spec"]["progressDeadlineSeconds"]) - time.time()
        key = util.key_of(util.namespace_of(d), util.name_of(d))
        self.queue.add_after(key, max(after, 0.0) + 1.0)


@hookimpl
def kybern_controllers() -> list[ControllerSpec]:
    return [
        ControllerSpec(
            name="deployment",
            factory=DeploymentController,
            description="rolls Deployments out over ReplicaSets (RollingUpdate, Recreate, rollback)",
            workers=5,
        )
    ]
