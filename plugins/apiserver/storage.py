"""Object lifecycle over the store: what kube-apiserver's generic registry does per write.

Create fills the system metadata (uid, creationTimestamp, generation, generateName), update
carries it over and guards resourceVersion, delete follows finalizers, graceful pod deletion
and propagation policies. Each write runs defaulting, admission hooks and validation in kube's
order, records managedFields, and only then touches the store. Objects are plain dicts in the
wire format; the kind's model is used for defaulting, validation and type checks.
"""

from __future__ import annotations

import copy
import functools
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from kybern.hooktypes import AdmissionRequest
from kybern.models import codec
from kybern.plugins.apiserver import apply as ssa
from kybern.plugins.apiserver import errors, saadmission
from kybern.plugins.apiserver.allocators import ServiceAllocator
from kybern.plugins.apiserver.bodies import dumps, from_model, loads
from kybern.plugins.apiserver.cache import WatchCache, decode_obj
from kybern.plugins.apiserver.registry import Registry
from kybern.resources import FieldError, ResourceType
from kybern.store import ConflictError, KeyExistsError, KeyNotFoundError, KeyValue, Store
from kybern.validation import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)
from loguru import logger

log = logger.bind(component="apiserver")

GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_RETRIES = 8

Transform = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


_last_second: list[Any] = [0, ""]


def now_rfc3339(offset_seconds: int = 0) -> str:
    """RFC 3339 UTC to the second, as kube writes timestamps (cached per second: it is hot)."""
    second = int(time.time()) + offset_seconds
    if offset_seconds == 0 and _last_second[0] == second:
        return _last_second[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    if offset_seconds == 0:
        _last_second[0], _last_second[1] = second, text
    return text


#: uids and generated names need uniqueness, not secrecy; os.urandom per object costs ~0.3 ms
#: on a busy VM (it showed at the top of a create profile), so a seeded PRNG serves them
_rng = random.Random(secrets.token_bytes(32))


def new_uid() -> str:
    """A version 4 (random) UUID string, formatted directly (uuid.UUID costs several times more)."""
    n = (_rng.getrandbits(128) & _UID_MASK) | _UID_BITS
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: the version (4) and variant (RFC 4122) bits of a random UUID
_UID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UID_BITS = (0x4000 << 64) | (0x8000 << 48)


def generate_name(base: str) -> str:
    return base[:58] + "".join(_rng.choice(GENERATE_ALPHABET) for _ in range(5))


def is_pod(rt: ResourceType) -> bool:
    return rt.group == "" and rt.kind == "Pod"


def is_service(rt: ResourceType) -> bool:
    return rt.group == "" and rt.kind == "Service"


def is_namespace(rt: ResourceType) -> bool:
    return rt.group == "" and rt.kind == "Namespace"


def _status_keeps_kind_rules(rt: ResourceType) -> bool:
    """Whether a status write runs the kind's validator. Kube's pod status strategy validates
    metadata and status only; the Pod and Node validators here hold spec rules alone, and a
    status write keeps the old spec (``_prepare_update``), so they could only repeat what the
    stored object already passed (a full pod validation is ~15% of a kubelet status PATCH)."""
    return not (rt.status_subresource and rt.group == "" and rt.kind in ("Pod", "Node"))


def name_validator(rt: ResourceType) -> Callable[[str], list[str]]:
    if rt.group == "" and rt.kind in ("Namespace",):
        return is_dns1123_label
    if rt.group == "" and rt.kind in ("Service",):
        return is_dns1035_label
    return is_dns1123_subdomain


#: the ObjectMeta fields validate_object_meta reads
_VALIDATED_META = (
    "name",
    "generateName",
    "namespace",
    "generation",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
)
#: encoded (rule, namespaced, those fields) of metadata found valid, oldest first
_VALID_META: dict[bytes, None] = {}
_VALID_META_MAX = 16384
_meta_key = msgspec.json.Encoder().encode


def _meta_errors(
    meta: dict[str, Any], namespaced: bool, validator: Callable[[str], list[str]]
) -> list[FieldError]:
    """validate_object_meta, remembering metadata it found valid: a pod's create, binding and
    status writes (and a node's lease renewals) carry the same metadata each time, and the
    answer depends on nothing else. Errors are never remembered (they are computed again)."""
    try:
        key = _meta_key([validator.__name__, namespaced, *[meta.get(f) for f in _VALIDATED_META]])
    except (TypeError, msgspec.EncodeError):  # not JSON (cannot come from a request body)
        return list(validate_object_meta(meta, namespaced, validator))
    if key in _VALID_META:
        return []
    errs = list(validate_object_meta(meta, namespaced, validator))
    if not errs:
        if len(_VALID_META) >= _VALID_META_MAX:
            del _VALID_META[next(iter(_VALID_META))]
        _VALID_META[key] = None
    return errs


def definition_of(rt: ResourceType) -> str:
    return _definition_name(rt.group, rt.version, rt.kind)


@functools.cache
def _definition_name(group: str, version: str, kind: str) -> str:
    """Looked up once per kind: every write asks (managed fields, patches)."""
    try:
        from kybern.models import schema

        return schema.definition_name(group, version, kind)
    except Exception:
        return ""


@dataclass
class WriteOptions:
    dry_run: bool = False
    manager: str = ""
    user: str = ""
    #: resourceVersion precondition (PUT bodies, DeleteOptions)
    subresource: str = ""
    operation: str = "Update"
    #: set by a create or update: the JSON of the object it returned, encoded once for both
    #: the response and the watch cache
    encoded: bytes | None = None


def _strip_rv(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata") or {}
    rv = meta.pop("resourceVersion", None)
    try:
        return dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


class Storage:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        cache: WatchCache,
        pm: Any,
        run: Callable[..., Awaitable[Any]],
        run_key: Callable[..., Awaitable[Any]] | None = None,
        run_write: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.cache = cache
        self.pm = pm
        self.run = run
        #: run the store's key reads (get) and writes (create, update, delete), see
        #: ApiServer.run_write
        self.run_key = run_key or run
        self.run_write = run_write or self._run_write
        #: ClusterIP/NodePort allocation for Services (set by the component)
        self.allocator: ServiceAllocator | None = None

    async def _run_write(
        self, fn: Callable[..., Any], *args: Any, then: Callable[[Any], None] | None = None
    ) -> Any:
        """ApiServer.run_write's contract on :attr:`run_key` (a Storage without a server)."""
        result = await self.run_key(fn, *args)
        if then is not None:
            then(result)
        return result

    def _allocate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self.allocator is None or not is_service(rt):
            return
        services = [o.obj for o in self.cache.cache_for(rt).objects.values()]
        self.allocator.allocate(rt, obj, old, services)

    # ----------------------------------------------------------------- reads

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = await self.get_or_none(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    async def get_or_none(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self.registry.key(rt, namespace, name)
        kv = await self.run_key(self.store.get, key)
        if kv is None:
            return None
        return decode_obj(kv.value, kv.mod_revision)

    async def namespace_state(self, namespace: str) -> dict[str, Any] | None:
        ns_rt = self.registry.namespace_type()
        if ns_rt is None:
            return {"metadata": {"name": namespace}}
        cached = self.cache.cache_for(ns_rt).objects.get(self.registry.key(ns_rt, None, namespace))
        if cached is not None and not (cached.obj.get("metadata") or {}).get("deletionTimestamp"):
            return cached.obj
        return await self.get_or_none(ns_rt, None, namespace)

    # ----------------------------------------------------------------- hooks

    def _default(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        return self._default_model(rt, obj)[0]

    def _default_model(self, rt: ResourceType, obj: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """Defaulted object, and its model when one was built (validation reuses it)."""
        if rt.default is None:
            return obj, None
        try:
            model = codec.convert(obj, rt.model)
        except (codec.DecodeError, ValueError) as exc:
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {exc}'
            ) from None
        rt.default(model)
        return from_model(model), model

    def _admit(self, req: AdmissionRequest) -> list[FieldError]:
        """Mutating then validating admission; pluggy is skipped when no plugin implements them."""
        hooks = self.pm.hook
        if hooks.kybern_admission_mutate.get_hookimpls():
            hooks.kybern_admission_mutate(request=req)
        errs: list[FieldError] = []
        if hooks.kybern_admission_validate.get_hookimpls():
            for batch in hooks.kybern_admission_validate(request=req):
                errs.extend(batch or [])
        return errs

    def _admission_mutates(self) -> bool:
        return bool(self.pm.hook.kybern_admission_mutate.get_hookimpls())

    def _validate(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        kind_rules: bool = True,
        model: Any = None,
    ) -> list[FieldError]:
        errs = _meta_errors(obj.get("metadata") or {}, rt.namespaced, name_validator(rt))
        if old is not None:
            errs.extend(validate_object_meta_update(obj.get("metadata"), old.get("metadata")))
        if rt.validate is not None and kind_rules:
            try:
                new_m = model if model is not None else codec.convert(obj, rt.model)
                old_m = codec.convert(old, rt.model) if old is not None else None
            except (codec.DecodeError, ValueError) as exc:
                raise errors.bad_request(str(exc)) from None
            errs.extend(rt.validate(new_m, old_m) or [])
        return errs

    def _track(
        self,
        rt: ResourceType,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        opts: WriteOptions,
    ) -> None:
        if not opts.manager or opts.operation == "Apply":
            return
        try:
            ssa.track_update(
                old, new, opts.manager, "Update", definition_of(rt), now_rfc3339(), opts.subresource
            )
        except Exception as exc:  # managedFields must never fail a write
            log.warning("managedFields tracking failed for {}: {}", rt.kind, exc)

    # ----------------------------------------------------------------- create

    async def create(
        self, rt: ResourceType, namespace: str | None, obj: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        opts.encoded = None
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace or body_ns or ""
            namespace = meta["namespace"]
        else:
            meta.pop("namespace", None)
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "uid"):
            meta.pop(k, None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        if rt.generation_fields:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.status_subresource:
            obj.pop("status", None)
        if is_pod(rt):
            obj.setdefault("status", {})["phase"] = "Pending"
        if is_namespace(rt):
            spec = obj.setdefault("spec", {})
            if not spec.get("finalizers"):
                spec["finalizers"] = ["kubernetes"]
            obj["status"] = {"phase": "Active"}
        if rt.namespaced and namespace:
            ns_obj = await self.namespace_state(namespace)
            if ns_obj is None:
                raise errors.namespace_not_found(namespace)
            if (ns_obj.get("metadata") or {}).get("deletionTimestamp"):
                raise errors.ApiStatusError(
                    403,
                    "Forbidden",
                    f'{errors.qualified(rt)} "{meta.get("name") or meta.get("generateName", "")}" '
                    "is forbidden: "
                    f"unable to create new content in namespace {namespace} because it is being terminated",
                    {
                        "name": meta.get("name") or "",
                        **({"group": rt.group} if rt.group else {}),
                        "kind": rt.plural,
                        "causes": [
                            {
                                "reason": "NamespaceTerminating",
                                "message": f"namespace {namespace} is being terminated",
                                "field": "metadata.namespace",
                            }
                        ],
                    },
                )
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = generate_name(str(meta["generateName"]))
        if is_pod(rt) and namespace:
            await saadmission.admit_pod(self, obj, namespace)
        obj, model = self._default_model(rt, obj)
        if is_service(rt):
            self._allocate(rt, obj, None)
            model = None
        meta = obj["metadata"]
        name = meta.get("name") or ""
        req = AdmissionRequest("CREATE", rt, namespace, name, obj, None, "", opts.user, opts.dry_run)
        errs = self._admit(req)
        if self._admission_mutates():
            model = None  # the dict may have changed: validate what will be stored
        obj = req.object or obj
        errs = self._validate(rt, obj, None, model=model) + errs
        if errs:
            raise errors.invalid(rt, name, errs)
        self._track(rt, None, obj, opts)
        if opts.dry_run:
            return obj
        key = self.registry.key(rt, namespace, name)
        for _attempt in range(MAX_RETRIES):
            try:
                await self.run_write(
                    self.store.create, key, _strip_rv(obj), then=partial(self._encoded, key, obj, opts)
                )
                break
            except KeyExistsError:
                if not generated:
                    raise errors.already_exists(rt, name) from None
                meta["name"] = name = generate_name(str(meta["generateName"]))
                key = self.registry.key(rt, namespace, name)
        else:
            raise errors.ApiStatusError(
                500, "AlreadyExists", f"could not generate a free name from {meta['generateName']!r}"
            )
        self.cache.drain()  # the write's event reaches the watchers before its answer leaves
        return obj

    def _encoded(self, key: str, obj: dict[str, Any], opts: WriteOptions, rev: int) -> None:
        """Set the new resourceVersion and encode the object once, for the response and the
        watch cache, as soon as the store gave the revision (before a group commit publishes
        the event, which the cache would otherwise decode and encode again). The
        resourceVersion goes last in metadata, where decoding the stored value puts it, so
        both see the same bytes."""
        meta = obj["metadata"]
        meta.pop("resourceVersion", None)
        meta["resourceVersion"] = str(rev)
        opts.encoded = raw = dumps(obj)
        # the cache may keep ``obj`` itself: callers only read (and encode) what a write returns
        self.cache.prime(key, rev, raw, obj)

    # ----------------------------------------------------------------- update

    def _prepare_update(
        self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str
    ) -> dict[str, Any]:
        new["kind"] = rt.kind
        new["apiVersion"] = rt.api_version
        old_meta = old.get("metadata") or {}
        if subresource == "status" and rt.status_subresource:
            if self._admission_mutates():  # a hook may change any part: it gets its own copy
                result = loads(dumps(old))  # a JSON round trip copies ~5x faster than deepcopy
            else:  # only top-level and metadata keys are set below and by the write
                result = dict(old)
                result["metadata"] = dict(old.get("metadata") or {})
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            nm = new.get("metadata") or {}
            rm = result["metadata"]
            for k in ("labels", "annotations", "finalizers"):
                if k in nm:
                    rm[k] = nm[k]
                else:
                    rm.pop(k, None)
            rm["resourceVersion"] = nm.get("resourceVersion", rm.get("resourceVersion"))
            new = result
        elif subresource == "finalize":
            result = copy.deepcopy(old)
            result.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            if not result["spec"]["finalizers"]:
                result["spec"].pop("finalizers")
            new = result
        elif subresource in ("", "scale") and (rt.status_subresource or is_namespace(rt)):
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if rt.namespaced:
            meta.setdefault("namespace", old_meta.get("namespace"))
        else:
            meta.pop("namespace", None)
        if not meta.get("uid") and old_meta.get("uid"):
            meta["uid"] = old_meta["uid"]
        if old_meta.get("creationTimestamp"):
            # clients re-serialise times (the Python client writes +00:00): same instant, old text
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta.pop("selfLink", None)
        if rt.generation_fields or "generation" in old_meta:
            generation = old_meta.get("generation") or 1
            if any(new.get(f) != old.get(f) for f in rt.generation_fields):
                generation += 1
            meta["generation"] = generation
        else:
            meta.pop("generation", None)
        return new

    async def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        transform: Transform,
        opts: WriteOptions,
        create: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        precondition: bool = False,
        from_cache: bool = False,
        copy_input: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """Read-modify-write with retries on store conflicts (kube's GuaranteedUpdate).

        ``transform`` gets a private copy of the current object and returns the desired one; a
        resourceVersion it leaves in metadata must still be current (else 409 Conflict). When
        the object is missing, ``create`` (if given) runs instead. ``precondition``: the client
        named the resourceVersion it read (a PUT body's, a patch that sets it), so a concurrent
        write is a 409 rather than a retry. ``from_cache``: the first attempt starts from the
        watch cache's copy instead of a store read, as kube's does from the cacher's (a stale
        copy fails the store's revision check, and the retry reads the store). ``copy_input``
        false: ``transform`` never modifies its argument (it ignores it, or copies what it
        changes), so it gets the current object itself, not a private copy. Returns
        (object, created).
        """
        opts.encoded = None
        key = self.registry.key(rt, namespace, name)
        # status writes (the kubelet's pod and node status) start from the cache too
        from_cache = from_cache or (opts.subresource == "status" and rt.status_subresource)
        cached = self.cache.cache_for(rt).objects.get(key) if from_cache else None
        for _attempt in range(MAX_RETRIES):
            # a cached copy may be stale: any conflict it meets is retried from the store, never
            # reported (the client's resourceVersion precondition is judged against the store)
            stale_ok = cached is not None
            if cached is not None:  # its JSON holds the resourceVersion decode_obj sets again
                kv, cached = KeyValue(key, cached.raw, cached.rev, 0), None
            else:
                kv = await self.run_key(self.store.get, key)
            if kv is None:
                if create is not None:
                    return await create(), True
                raise errors.not_found(rt, name)
            old = decode_obj(kv.value, kv.mod_revision)
            try:
                # a second decode of the value is the cheapest private copy
                result = transform(decode_obj(kv.value, kv.mod_revision) if copy_input else old)
                new = await result if isinstance(result, Awaitable) else result
            except errors.ApiStatusError:
                if stale_ok:  # judged against a stale copy perhaps (a JSON patch's test op)
                    continue
                raise
            if not isinstance(new, dict):
                raise errors.bad_request("the request body must be an object")
            meta = new.get("metadata")
            rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
            if rv not in (None, "") and str(rv) != str(kv.mod_revision):
                if stale_ok:
                    continue
                raise errors.conflict(rt, name)
            new = self._prepare_update(rt, old, new, opts.subresource)
            # a binding only sets nodeName, annotations and a condition on a pod already
            # defaulted at create: kube's BindingREST writes it straight to storage
            if opts.subresource not in ("status", "finalize", "binding"):
                self._allocate(rt, new, old)
                new = self._default(rt, new)
            req = AdmissionRequest(
                "UPDATE", rt, namespace, name, new, old, opts.subresource, opts.user, opts.dry_run
            )
            errs = self._admit(req)
            new = req.object or new
            # binding writes spec.nodeName, which a pod update may not change: kube's binding
            # storage checks only the binding itself (done by its handler)
            kind_rules = opts.subresource != "binding" and (
                opts.subresource != "status" or _status_keeps_kind_rules(rt)
            )
            errs = self._validate(rt, new, old, kind_rules) + errs
            if errs:
                if stale_ok:
                    continue
                raise errors.invalid(rt, name, errs)
            # an apply that only changes field ownership must still be saved (kube does)
            ownership_only = opts.operation == "Apply" and (new.get("metadata") or {}).get(
                "managedFields"
            ) != (old.get("metadata") or {}).get("managedFields")
            if not ownership_only and _comparable(new) == _comparable(old):
                if stale_ok:  # a no-op on the cached copy need not be one on the current object
                    continue
                return old, False
            if opts.subresource != "binding":  # kube's binding bypasses the field manager too
                self._track(rt, old, new, opts)
            new_meta = new["metadata"]
            if opts.dry_run:
                new_meta["resourceVersion"] = str(kv.mod_revision)
                return new, False
            try:
                if self._should_delete_during_update(rt, old, new):
                    last = await self.run_write(self.store.delete, key, kv.mod_revision)
                    self.cache.drain()
                    new_meta["resourceVersion"] = str(last.mod_revision)
                    return new, False
                await self.run_write(
                    self.store.update,
                    key,
                    _strip_rv(new),
                    kv.mod_revision,
                    then=partial(self._encoded, key, new, opts),
                )
            except ConflictError:
                if precondition and not stale_ok:
                    raise errors.conflict(rt, name) from None
                continue
            except KeyNotFoundError:
                continue
            self.cache.drain()
            return new, False
        raise errors.conflict(rt, name)

    def _should_delete_during_update(
        self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any]
    ) -> bool:
        nm, om = new.get("metadata") or {}, old.get("metadata") or {}
        if nm.get("finalizers") or not om.get("deletionTimestamp"):
            return False
        if is_namespace(rt):
            return not (new.get("spec") or {}).get("finalizers")
        if not om.get("finalizers"):
            return False
        return om.get("deletionGracePeriodSeconds") in (0, None)

    # ----------------------------------------------------------------- delete

    async def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: dict[str, Any],
        opts: WriteOptions,
    ) -> tuple[int, dict[str, Any]]:
        """Returns (HTTP code, body): the object while it waits for finalizers or grace, a Status
        (or the last object, for pods) once it is gone."""
        key = self.registry.key(rt, namespace, name)
        for _attempt in range(MAX_RETRIES):
            kv = await self.run_key(self.store.get, key)
            if kv is None:
                raise errors.not_found(rt, name)
            obj = decode_obj(kv.value, kv.mod_revision)
            meta = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.ApiStatusError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {errors.qualified(rt)} "{name}": Precondition failed: '
                    f"UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid', '')}",
                    {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural},
                )
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(kv.mod_revision):
                raise errors.ApiStatusError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {errors.qualified(rt)} "{name}": Precondition failed: '
                    f"ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {kv.mod_revision}",
                    {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural},
                )
            req = AdmissionRequest("DELETE", rt, namespace, name, None, obj, "", opts.user, opts.dry_run)
            errs = self._admit(req)
            if errs:
                raise errors.invalid(rt, name, errs)
            updated = self._deletion_update(rt, obj, options)
            if updated is not None:
                if updated is obj:  # already terminating, nothing new to record
                    return 200, obj
                if opts.dry_run:
                    return 200, updated
                try:
                    rev = await self.run_write(self.store.update, key, _strip_rv(updated), kv.mod_revision)
                except ConflictError:
                    continue
                except KeyNotFoundError:
                    raise errors.not_found(rt, name) from None
                self.cache.drain()
                updated["metadata"]["resourceVersion"] = str(rev)
                return 200, updated
            if opts.dry_run:
                return 200, self._deleted_body(rt, obj)
            try:
                last = await self.run_write(self.store.delete, key, kv.mod_revision)
            except ConflictError:
                continue
            except KeyNotFoundError:
                raise errors.not_found(rt, name) from None
            self.cache.drain()
            obj["metadata"]["resourceVersion"] = str(last.mod_revision)
            return 200, self._deleted_body(rt, obj)
        raise errors.conflict(rt, name)

    def _deleted_body(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if is_pod(rt) or is_namespace(rt):
            return obj
        meta = obj.get("metadata") or {}
        details: dict[str, Any] = {"name": meta.get("name", "")}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = meta.get("uid", "")
        return errors.success_status(details)

    def _deletion_update(
        self, rt: ResourceType, obj: dict[str, Any], options: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The object to write instead of deleting it (graceful/finalizers), or None to delete now.

        Returns ``obj`` itself when it is already terminating and this request changes nothing.
        """
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        if policy not in (None, "", "Background", "Foreground", "Orphan"):
            raise errors.bad_request(
                f'propagationPolicy: Unsupported value: "{policy}": supported values: "Foreground", '
                '"Background", "Orphan"'
            )
        added = False
        if not meta.get("deletionTimestamp"):
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
                added = True
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
                added = True
        if is_namespace(rt):
            if not finalizers and not (obj.get("spec") or {}).get("finalizers"):
                return None
            if meta.get("deletionTimestamp") and not added:
                return obj
            new = copy.deepcopy(obj)
            nm = new["metadata"]
            nm.setdefault("deletionTimestamp", now_rfc3339())
            nm.setdefault("deletionGracePeriodSeconds", 0)
            if finalizers:
                nm["finalizers"] = finalizers
            new.setdefault("status", {})["phase"] = "Terminating"
            return new
        grace = 0
        if is_pod(rt):
            spec = obj.get("spec") or {}
            phase = (obj.get("status") or {}).get("phase")
            requested = options.get("gracePeriodSeconds")
            if requested is None:
                requested = spec.get("terminationGracePeriodSeconds")
                if requested is None:
                    requested = 30
            if not isinstance(requested, int) or isinstance(requested, bool):
                raise errors.bad_request("gracePeriodSeconds must be an integer")
            grace = max(int(requested), 0)
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
            if meta.get("deletionTimestamp"):
                current = meta.get("deletionGracePeriodSeconds") or 0
                if grace == 0 and not finalizers:
                    return None
                if grace < current:
                    new = copy.deepcopy(obj)
                    new["metadata"]["deletionGracePeriodSeconds"] = grace
                    new["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
                    return new
                return obj
        elif meta.get("deletionTimestamp"):
            if added:
                new = copy.deepcopy(obj)
                new["metadata"]["finalizers"] = finalizers
                return new
            return obj
        if not finalizers and grace == 0:
            return None
        new = copy.deepcopy(obj)
        nm = new["metadata"]
        nm["deletionTimestamp"] = now_rfc3339(grace)
        nm["deletionGracePeriodSeconds"] = grace
        if "generation" in nm:
            nm["generation"] = nm["generation"] + 1
        if finalizers:
            nm["finalizers"] = finalizers
        return new
