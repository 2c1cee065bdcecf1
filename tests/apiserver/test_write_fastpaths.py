"""The write path's shortcuts give what the general code gives (issue #5: server CPU per write).

- ``set_to_fields`` renders FieldsV1 like the tree walk it replaced;
- ``_compare`` of a new value (``_added``) finds the fields structured-merge-diff's Compare finds;
- a managedFields entry kept as stored (``_Entry.holds`` on the unparsed FieldsV1) answers
  membership like the parsed set, and a write whose fields did not change leaves the entry as
  re-rendering it would;
- merge patch (which now shares untouched subtrees) gives RFC 7386's result without changing
  its inputs;
- end to end over HTTP: the scheduler benchmark's writes (create, binding, kubelet status merge
  patches, lease renewals) store the same objects and managedFields with the shortcuts as
  without them, and a field-selector watch sees every transition;
- writes that share a group commit prime the watch cache before their events are published.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from kybern.pluginmanager import load_plugins
from kybern.plugins.apiserver import apply, handlers_rest, patching, storage
from kybern.plugins.apiserver.app import ApiServer
from kybern.plugins.apiserver.auth import Tokens
from kybern.plugins.apiserver.registry import collect_resource_types
from kybern.plugins.apiserver.schemawalk import FieldMeta
from kybern.plugins.sqlstore import SqlStore

POD = "io.k8s.api.core.v1.Pod"

# --------------------------------------------------------------------------- references


def _reference_set_to_fields(paths: set[tuple[str, ...]]) -> dict[str, Any]:
    """The tree walk set_to_fields used before (prefix tuples rebuilt at every node)."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})

    def render(node: dict[str, Any], prefix: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node and prefix in paths:
            out["."] = {}
        for key in sorted(node, key=apply._element_order):
            out[key] = render(node[key], (*prefix, key))
        return out

    return render(tree, ())


def _reference_compare(lhs: Any, rhs: Any, meta: Any, path: tuple[str, ...], res: Any, item: bool) -> None:
    """structured-merge-diff's Compare as one two-sided walk (no shortcut for new values)."""
    if lhs is None and rhs is None:
        return
    if lhs is rhs or (type(lhs) is type(rhs) and lhs == rhs):
        return
    mode = apply._mode(rhs if rhs is not None else lhs, meta)
    if lhs is not None and rhs is not None and apply._mode(lhs, meta) != apply._mode(rhs, meta):
        mode = "leaf"
    if mode == "map" and not item and apply._is_struct(meta):
        if lhs is None and rhs:
            lhs = {}
        elif rhs is None and lhs:
            rhs = {}
    if mode != "leaf" and apply._empty(lhs) and apply._empty(rhs):
        mode = "leaf"
    if mode == "leaf":
        if not path:
            return
        if lhs is None:
            res.added.add(path)
        elif rhs is None:
            res.removed.add(path)
        elif not apply._equal(lhs, rhs):
            res.modified.add(path)
        return
    if mode == "map":
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for key in {**left, **right}:
            child = apply._child_meta(meta, key)
            _reference_compare(left.get(key), right.get(key), child, (*path, "f:" + key), res, False)
    else:
        item_meta = apply._item_meta(meta)
        left_elements, left_items = apply._index_items(lhs or [], meta, mode)
        right_elements, right_items = apply._index_items(rhs or [], meta, mode)
        for element in dict.fromkeys(left_elements + right_elements):
            _reference_compare(
                left_items.get(element), right_items.get(element), item_meta, (*path, element), res, True
            )
    if path:
        if lhs is None:
            res.added.add(path)
        elif rhs is None:
            res.removed.add(path)


def _reference_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 on private deep copies."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _reference_merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------- random documents

_KEYS = ["containers", "conditions", "status", "spec", "labels", "podIPs", "ports", "name", "x"]
_KEYS += ["selector", "phase", "nodeName", "image", "type", "ip", "containerStatuses", "hostIP"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.35:
        return rng.choice([1, "x", None, True, "", 0, [], {}, 2.5])
    if r < 0.6:
        items: list[Any] = []
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.5:
                items.append(_value(rng, depth + 1))
            else:
                items.append(
                    {
                        "name": rng.choice("ab"),
                        "type": rng.choice(["Ready", "PodScheduled"]),
                        "ip": rng.choice(["10.0.0.1", "10.0.0.2"]),
                        "containerPort": rng.choice([80, 81]),
                        "v": _value(rng, depth + 2),
                    }
                )
        return items
    return {rng.choice(_KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _pod(rng: random.Random) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "labels": {"app": rng.choice("ab")}},
        "spec": _value(rng, 1),
        "status": _value(rng, 1),
    }


# --------------------------------------------------------------------------- unit checks


def test_set_to_fields_renders_like_the_tree_walk() -> None:
    rng = random.Random(1)
    elements = ["f:a", "f:b", 'k:{"x":1}', "v:2", "i:0", "f:spec", 'k:{"type":"Ready"}', "zz", "f:"]
    for _ in range(3000):
        paths = {
            tuple(rng.choice(elements) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(0, 12))
        }
        # json.dumps keeps key order: the order is part of what must match
        assert json.dumps(apply.set_to_fields(paths)) == json.dumps(_reference_set_to_fields(paths)), paths


def test_compare_of_new_values_matches_the_two_sided_walk() -> None:
    rng = random.Random(2)
    meta_root = apply._root_meta(POD)
    for _ in range(3000):
        old, new = _pod(rng), _pod(rng)
        if rng.random() < 0.3:
            old = None  # type: ignore[assignment]
        elif rng.random() < 0.5:
            new["spec"] = copy.deepcopy(old["spec"])
        fast, slow = apply._Comparison(), apply._Comparison()
        apply._compare(old, new, meta_root, (), fast, False)
        _reference_compare(old, new, meta_root, (), slow, False)
        assert (fast.added, fast.modified, fast.removed) == (slow.added, slow.modified, slow.removed)


def test_unparsed_entry_answers_membership_like_the_parsed_set() -> None:
    rng = random.Random(3)
    meta_root = apply._root_meta(POD)
    for _ in range(1000):
        paths: set[tuple[str, ...]] = set()
        apply._to_set(_pod(rng), meta_root, (), paths)
        raw = apply.set_to_fields(paths)
        entry = apply._Entry(None, "v1", None, raw)
        probes = list(paths) + [p[:-1] for p in paths if len(p) > 1] + [("f:nope",), ("f:spec", "f:zz")]
        parsed = apply.fields_to_set(raw)
        for probe in probes:
            assert entry.holds(probe) == (probe in parsed), probe
        assert entry.nonempty() == bool(parsed)
        assert entry.fields is None, "membership must not parse the entry"


def test_unchanged_entries_are_written_back_as_rendering_them_gives() -> None:
    """track_update on a stored object: entries kept as stored (the fast path) equal the ones
    re-rendered from parsed sets (the slow path), whoever writes and whatever changes."""
    rng = random.Random(4)
    for _ in range(1500):
        base = _pod(rng)
        apply.track_update(None, base, "creator", "Update", POD, "2026-01-01T00:00:00Z")
        for manager in ("kubelet", "creator", "kubelet", "other"):
            sub = rng.choice(["", "status"])
            new = copy.deepcopy(base)
            if rng.random() < 0.6:
                new["status"] = _value(rng, 1) if rng.random() < 0.5 else new["status"]
            if rng.random() < 0.4 and isinstance(new.get("spec"), dict) and new["spec"]:
                new["spec"].pop(next(iter(new["spec"])))
            if rng.random() < 0.3:
                new["metadata"].pop("managedFields", None)
            slow = copy.deepcopy(new)
            apply.track_update(copy.deepcopy(base), new, manager, "Update", POD, "2026-01-01T00:00:01Z", sub)
            live = (base.get("metadata") or {}).get("managedFields")
            # the slow path: every entry parsed, encoded from its set
            managers = apply._parse_managed(live)
            assert all(e.fields is not None and e.raw is None for e in managers.values())
            _slow_track(base, slow, manager, sub, managers)
            assert json.dumps(new) == json.dumps(slow), (base, new, slow)
            base = new


def _slow_track(old: dict[str, Any], new: dict[str, Any], manager: str, sub: str, live: Any) -> None:
    supplied = new["metadata"].get("managedFields")
    managers = apply._parse_managed(supplied) if supplied and not sub else live
    meta_root = apply._root_meta(POD)
    has_status = apply._has_status(meta_root)
    res = apply._Comparison()
    _reference_compare(
        apply._tracked_view(old, has_status, sub),
        apply._tracked_view(new, has_status, sub),
        meta_root,
        (),
        res,
        False,
    )
    changed = apply._filter(res.added | res.modified, has_status, sub)
    removed = apply._filter(res.removed, has_status, sub)
    key = apply._Manager(manager, "Update", "v1", sub)
    for other, entry in managers.items():
        entry.fields -= removed
        if other != key:
            entry.fields -= changed
    if changed:
        entry = managers.get(key)
        if entry is None:
            managers[key] = apply._Entry(set(changed), "v1", "2026-01-01T00:00:01Z")
        else:
            entry.fields |= changed
            entry.api_version, entry.time = "v1", "2026-01-01T00:00:01Z"
    apply._store_managed(new, managers)


def _kubelet_status(rng: random.Random) -> dict[str, Any]:
    """A status as the kubelet (or the scheduler, or a test) writes it, varied."""
    status: dict[str, Any] = {}
    if rng.random() < 0.9:
        status["phase"] = rng.choice(["Pending", "Running", "Succeeded"])
    types = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    conditions = []
    for kind in rng.sample(types, rng.randint(0, len(types))):
        cond: dict[str, Any] = {"type": kind, "status": rng.choice(["True", "False"])}
        if rng.random() < 0.8:
            cond["lastTransitionTime"] = rng.choice(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"])
        if rng.random() < 0.2:
            cond["lastProbeTime"] = None
        if rng.random() < 0.1:
            cond["reason"] = "R"
        conditions.append(cond)
    if conditions or rng.random() < 0.3:
        status["conditions"] = conditions
    if rng.random() < 0.7:
        status["containerStatuses"] = [
            {
                "name": name,
                "ready": rng.random() < 0.5,
                "restartCount": rng.randint(0, 1),
                "state": rng.choice([{}, {"running": {"startedAt": "2026-01-01T00:00:00Z"}}]),
            }
            for name in rng.sample("abc", rng.randint(0, 2))
        ]
    for key in ("hostIP", "podIP"):
        if rng.random() < 0.6:
            ips = rng.sample(["10.0.0.1", "10.0.0.2", "fd00::1"], rng.randint(1, 2))
            status[key] = ips[0]
            status[key + "s"] = [{"ip": ip} for ip in ips] if rng.random() < 0.9 else []
    for key, value in (("qosClass", "Burstable"), ("startTime", "2026-01-01T00:00:00Z"), ("message", "")):
        if rng.random() < 0.5:
            status[key] = rng.choice([value, None]) if rng.random() < 0.2 else value
    return status


def test_status_writes_track_like_the_general_path() -> None:
    """Pods through realistic status writes (kubelet, scheduler) and spec writes: the entries
    track_update stores equal the ones of the reference comparison with every entry parsed,
    filtered and rendered again (no shortcut for status paths, for entries that cannot hold a
    path, for new values or for field sets seen before)."""
    rng = random.Random(7)
    for _ in range(600):
        base: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "pause"}], "nodeName": rng.choice(["", "n1"])},
        }
        if rng.random() < 0.5:
            base["status"] = _kubelet_status(rng)
        apply.track_update(None, base, "bench", "Update", POD, "2026-01-01T00:00:00Z")
        for _ in range(4):
            manager, sub = rng.choice(
                [("kubelet", "status"), ("scheduler", "status"), ("bench", ""), ("kubelet", "")]
            )
            new = copy.deepcopy(base)
            if sub == "status" or rng.random() < 0.3:
                new["status"] = _kubelet_status(rng) if rng.random() < 0.8 else new.get("status") or {}
            if sub == "" and rng.random() < 0.5:
                new["spec"]["containers"][0]["image"] = rng.choice(["pause", "nginx"])
                if rng.random() < 0.3:
                    new["spec"].pop("nodeName", None)
            slow = copy.deepcopy(new)
            apply.track_update(copy.deepcopy(base), new, manager, "Update", POD, "2026-01-01T00:00:01Z", sub)
            managers = apply._parse_managed((base.get("metadata") or {}).get("managedFields"))
            _slow_track(base, slow, manager, sub, managers)
            assert json.dumps(new) == json.dumps(slow), (base, new, slow)
            base = new


def test_cached_field_sets_render_as_set_to_fields() -> None:
    """A set seen once, twice and more often (cache noted, then filled, then read) renders the
    same FieldsV1, key order included."""
    rng = random.Random(8)
    elements = ["f:a", "f:b", 'k:{"x":1}', "v:2", "i:0", "i:1", "f:status", "zz", "."]
    for _ in range(500):
        paths = frozenset(
            tuple(rng.choice(elements) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 12))
        )
        expected = json.dumps(_reference_set_to_fields(set(paths)))
        for _ in range(3):
            assert json.dumps(apply._encoded_fields(paths)) == expected


def test_merge_patch_is_rfc7386_and_changes_no_input() -> None:
    rng = random.Random(6)
    for _ in range(3000):
        target, patch = _pod(rng), _value(rng)
        if rng.random() < 0.7:
            patch = {"status": _value(rng, 1), "metadata": {"labels": {"app": None, "b": "c"}}}
        before = (msgspec.json.encode(target), msgspec.json.encode(patch))
        result = patching.merge_patch(target, patch)
        assert result == _reference_merge_patch(target, patch)
        assert (msgspec.json.encode(target), msgspec.json.encode(patch)) == before


# --------------------------------------------------------------------------- end to end


def _slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the shortcuts off: stored entries parsed and re-rendered, private copies for every
    transform, deep copies for status writes, no object handed to the watch cache."""
    parse = apply._parse_managed
    monkeypatch.setattr(apply, "_parse_managed", lambda entries, keep_raw=False: parse(entries))
    update = storage.Storage.update

    async def copying_update(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["copy_input"] = True
        return await update(self, *args, **kwargs)

    monkeypatch.setattr(storage.Storage, "update", copying_update)
    monkeypatch.setattr(storage.Storage, "_admission_mutates", lambda self: True)
    prime = storage.WatchCache.prime
    monkeypatch.setattr(
        storage.WatchCache, "prime", lambda self, key, rev, raw, obj=None: prime(self, key, rev, raw)
    )
    monkeypatch.setattr(handlers_rest, "_status_model", lambda rt: None)


def _normal(obj: dict[str, Any]) -> dict[str, Any]:
    """What may differ between two runs: uid, times, resourceVersion."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    for key in ("uid", "creationTimestamp", "resourceVersion"):
        meta.pop(key, None)
    for entry in meta.get("managedFields") or []:
        entry.pop("time", None)
    for cond in (obj.get("status") or {}).get("conditions") or []:
        cond.pop("lastTransitionTime", None)
    return obj


async def _scheduler_writes(tmp_path: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}", compact_interval=0)
    pm = load_plugins().manager
    tokens = Tokens(admin="tok", node="node-secret-token")
    srv = ApiServer(store, collect_resource_types(pm), pm, tokens, {})  # type: ignore[arg-type]
    await srv.cache.start()
    srv.ready = True
    client = TestClient(TestServer(srv.make_app()))
    await client.start_server()
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    seen: list[tuple[str, str, str]] = []
    try:
        for ns in ("bench", "kube-node-lease"):
            r = await client.post("/api/v1/namespaces", json={"metadata": {"name": ns}}, headers=headers)
            assert r.status == 201, await r.text()
        watch = await client.get("/api/v1/pods?watch=true&fieldSelector=spec.nodeName%21%3D", headers=headers)
        assert watch.status == 200

        async def read_watch() -> None:
            async for line in watch.content:
                if line.strip():
                    ev = json.loads(line)
                    obj = ev["object"]
                    seen.append(
                        (ev["type"], obj["metadata"]["name"], (obj.get("status") or {}).get("phase", ""))
                    )

        reader = asyncio.create_task(read_watch())
        results: list[dict[str, Any]] = []
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p0", "namespace": "bench"},
            "spec": {
                "containers": [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": "1"}}}]
            },
        }
        r = await client.post(
            "/api/v1/namespaces/bench/pods", json=pod, headers={**headers, "User-Agent": "bench"}
        )
        created = await r.json()
        assert r.status == 201, created
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p0", "namespace": "bench", "uid": created["metadata"]["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
        }
        sched = {**headers, "User-Agent": "kybern-scheduler/v1"}
        r = await client.post("/api/v1/namespaces/bench/pods/p0/binding", json=binding, headers=sched)
        assert r.status == 201, await r.text()
        kubelet = {
            **headers,
            "User-Agent": "kybern-kubelet/v1",
            "Content-Type": "application/merge-patch+json",
        }
        for phase, ip in (("Pending", None), ("Running", "10.0.0.5"), ("Running", "10.0.0.5")):
            status: dict[str, Any] = {
                "phase": phase,
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                    for t in ("PodReadyToStartContainers", "Initialized", "Ready", "PodScheduled")
                ],
                "hostIP": "172.16.0.1",
                "hostIPs": [{"ip": "172.16.0.1"}],
                "containerStatuses": [
                    {
                        "name": "c",
                        "image": "pause",
                        "imageID": "",
                        "ready": phase == "Running",
                        "restartCount": 0,
                    }
                ],
            }
            if ip:
                status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
            body = json.dumps({"status": {"qosClass": None, **status}})
            r = await client.patch("/api/v1/namespaces/bench/pods/p0/status", data=body, headers=kubelet)
            assert r.status == 200, await r.text()
            results.append(await r.json())
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": "n1",
                "leaseDurationSeconds": 40,
                "renewTime": "2026-01-01T00:00:00.000000Z",
            },
        }
        lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        kubelet_json = {**headers, "User-Agent": "kybern-kubelet/v1"}
        r = await client.post(lease_path, json=lease, headers=kubelet_json)
        assert r.status == 201, await r.text()
        lease = await r.json()
        for i in range(3):
            lease["spec"]["renewTime"] = f"2026-01-01T00:00:0{i + 1}.000000Z"
            r = await client.put(f"{lease_path}/n1", json=lease, headers=kubelet_json)
            assert r.status == 200, await r.text()
            lease = await r.json()
            results.append(lease)
        # a PUT of a stale lease is still a conflict
        stale = {
            **lease,
            "metadata": {**lease["metadata"], "resourceVersion": created["metadata"]["resourceVersion"]},
        }
        r = await client.put(f"{lease_path}/n1", json=stale, headers=kubelet_json)
        assert r.status == 409, await r.text()
        for path in ("/api/v1/namespaces/bench/pods/p0", f"{lease_path}/n1"):
            r = await client.get(path, headers=headers)
            got = await r.json()
            assert got == results[2 if "pods" in path else 5], "GET differs from the last write's response"
            results.append(got)
        # odd status patches: an unknown field (a warning), a type error (a 400), nulls in lists
        odd = [
            {"status": {"phase": "Running", "bogus": 1, "conditions": [{"type": "Ready", "zzz": 2}]}},
            {"status": {"phase": 5}},
            {"status": {"hostIPs": [None], "qosClass": "BestEffort"}},
        ]
        for patch in odd:
            r = await client.patch(
                "/api/v1/namespaces/bench/pods/p0/status", data=json.dumps(patch), headers=kubelet
            )
            body = await r.json()
            if r.status == 200:
                body = _normal(body)
            results.append({"code": r.status, "warnings": r.headers.getall("Warning", []), "body": body})
        r = await client.patch(
            "/api/v1/namespaces/bench/pods/p0/status?fieldValidation=Strict",
            data=json.dumps(odd[0]),
            headers=kubelet,
        )
        results.append({"code": r.status, "body": await r.json()})
        for _ in range(100):
            if len(seen) >= 5:
                break
            await asyncio.sleep(0.02)
        reader.cancel()
        return [_normal(o) if "metadata" in o else o for o in results], seen
    finally:
        await client.close()
        srv.cache.stop()
        srv.executor.shutdown(wait=False)
        store.close()


def test_scheduler_writes_store_what_the_general_paths_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    fast, fast_seen = asyncio.run(_scheduler_writes(tmp_path / "fast"))
    with monkeypatch.context() as m:
        _slow_paths(m)
        slow, slow_seen = asyncio.run(_scheduler_writes(tmp_path / "slow"))
    assert json.dumps(fast) == json.dumps(slow)
    unknown, wrong_type, nulls, strict = fast[-4:]
    assert unknown["code"] == 200 and len(unknown["warnings"]) == 2, unknown
    assert 'unknown field \\"status.bogus\\"' in unknown["warnings"][1], unknown
    assert wrong_type["code"] == 400 and "status.phase" in wrong_type["body"]["message"], wrong_type
    assert nulls["code"] == 200 and nulls["body"]["status"]["hostIPs"] == [{}], nulls
    assert strict["code"] == 400, strict
    pod_fields = [e["manager"] for e in fast[2]["metadata"]["managedFields"]]
    assert pod_fields == ["bench", "kybern-kubelet"], pod_fields
    status_entry = fast[2]["metadata"]["managedFields"][1]
    assert status_entry["subresource"] == "status"
    assert 'k:{"ip":"10.0.0.5"}' in status_entry["fieldsV1"]["f:status"]["f:podIPs"]
    assert "f:qosClass" not in status_entry["fieldsV1"]["f:status"]
    lease_fields = fast[-5]["metadata"]["managedFields"]
    assert [e["manager"] for e in lease_fields] == ["kybern-kubelet"]
    assert "f:renewTime" in lease_fields[0]["fieldsV1"]["f:spec"]
    # the bound pod enters the field-selected watch once, then changes in it (the two status
    # patches that change something, then two of the odd ones)
    assert fast_seen == slow_seen
    assert [t for t, _, _ in fast_seen] == ["ADDED"] + ["MODIFIED"] * 4, fast_seen


def test_field_selector_getters_read_the_dict_as_the_model() -> None:
    """Selectors ask the kinds' getters with the plain dict first: same values as the model."""
    from kybern.models import codec

    pm = load_plugins().manager
    samples = [
        {"spec": {"nodeName": "n1", "restartPolicy": "Never", "hostNetwork": True, "unschedulable": True}},
        {"spec": {}, "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}]}},
        {"status": {"replicas": 3, "succeeded": 2, "phase": "Active", "nominatedNodeName": "n2"}},
        {"involvedObject": {"kind": "Pod", "name": "p", "uid": "u"}, "reason": "R", "type": "Normal"},
        {"source": {"component": "kubelet"}, "reportingComponent": "kubelet", "type": "kubernetes.io/tls"},
        {},
    ]
    checked = 0
    for rt in collect_resource_types(pm):
        for field, getter in rt.field_selectors.items():
            for sample in samples:
                obj = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {"name": "x"}, **sample}
                try:
                    model = codec.convert(obj, rt.model)
                except Exception:
                    continue  # not a shape of this kind
                assert getter(obj) == getter(model), (rt.kind, field, sample)
                checked += 1
    assert checked > 20, checked


async def _stale_cache_put(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}", compact_interval=0)
    pm = load_plugins().manager
    srv = ApiServer(store, collect_resource_types(pm), pm, Tokens(admin="a", node="n"), {})
    await srv.cache.start()
    try:
        rt = srv.registry.lookup("coordination.k8s.io", "v1", "leases")
        assert rt is not None
        opts = lambda: storage.WriteOptions(manager="kubelet")  # noqa: E731
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-node-lease"}}
        ns_rt = srv.registry.lookup("", "v1", "namespaces")
        assert ns_rt is not None
        await srv.storage.create(ns_rt, None, ns, opts())
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1"}}
        lease["spec"] = {"holderIdentity": "n1", "renewTime": "2026-01-01T00:00:00.000000Z"}
        first = await srv.storage.create(rt, "kube-node-lease", copy.deepcopy(lease), opts())
        key = srv.registry.key(rt, "kube-node-lease", "n1")

        async def put(body: dict[str, Any]) -> dict[str, Any]:
            """What handlers_rest.update does with a PUT body."""
            obj, _ = await srv.storage.update(
                rt,
                "kube-node-lease",
                "n1",
                lambda old: body,
                opts(),
                precondition=True,
                copy_input=False,
                from_cache=True,
            )
            return obj

        stale = srv.cache.cache_for(rt).objects[key]
        second = await put({**first, "spec": {**first["spec"], "renewTime": "2026-01-01T00:00:01.000000Z"}})
        rv2 = second["metadata"]["resourceVersion"]
        # the cache is put back to the first version: a PUT naming the store's revision succeeds
        srv.cache.cache_for(rt).objects[key] = stale
        body = copy.deepcopy(second)
        body["spec"]["renewTime"] = "2026-01-01T00:00:02.000000Z"
        third = await put(body)
        assert int(third["metadata"]["resourceVersion"]) > int(rv2)
        assert third["spec"]["renewTime"] == "2026-01-01T00:00:02.000000Z"
        # a PUT naming the revision the stale copy has is a 409, as it is against the store
        srv.cache.cache_for(rt).objects[key] = stale
        old_body = copy.deepcopy(first)
        old_body["spec"]["renewTime"] = "2026-01-01T00:00:09.000000Z"
        with pytest.raises(storage.errors.ApiStatusError) as exc:
            await put(old_body)
        assert exc.value.code == 409
        got = await srv.storage.get(rt, "kube-node-lease", "n1")
        assert got["spec"]["renewTime"] == "2026-01-01T00:00:02.000000Z"
    finally:
        srv.cache.stop()
        srv.executor.shutdown(wait=False)
        store.close()


def test_put_from_a_stale_cache_behaves_as_from_the_store(tmp_path: Path) -> None:
    asyncio.run(_stale_cache_put(tmp_path))


def test_merge_patch_bodies_decode_as_with_the_json_module() -> None:
    """Merge patch bodies go through msgspec first; what it refuses falls back to the json
    module: the same patched object, or the same error, as with the json module alone."""
    original = {"a": 1, "b": {"c": 2, "e": [1, 2]}}
    for body in [
        b'{"b":{"c":null,"d":1e3,"e":[3]}}',
        b'{"x": NaN, "y": -Infinity}',
        b'\xef\xbb\xbf{"x":1}',
        b'{"x":"\\ud800"}',
        b'{"x": 1e400}',
        b'{"x": 123456789012345678901234567890, "y": 1.5, "z": "\\u00e9"}',
        b'{"a":1,"a":2}',
        b'{"x":',
        b"[1]",
    ]:
        try:
            patch = json.loads(body)
        except ValueError as exc:
            with pytest.raises(patching.PatchError) as raised:
                patching.apply_patch(original, body, "application/merge-patch+json", None)
            assert patching._json_error(exc) in str(raised.value.args) + str(vars(raised.value)), body
            continue
        if not isinstance(patch, dict):
            with pytest.raises(patching.PatchError):
                patching.apply_patch(original, body, "application/merge-patch+json", None)
            continue
        got = patching.apply_patch(original, body, "application/merge-patch+json", None)
        assert json.dumps(got) == json.dumps(_reference_merge_patch(original, patch)), body


def _reference_item_element(item: Any, keys: tuple[str, ...], index: int) -> str:
    """An assoc list item's path element with the key fields sorted and collected one by one."""
    if isinstance(item, dict) and keys:
        values = {}
        for key in sorted(keys):
            if key in item and item[key] is not None:
                values[key] = item[key]
            elif key in apply._KEY_DEFAULTS:
                values[key] = apply._KEY_DEFAULTS[key]
        if values:
            return "k:" + apply._canonical(values)
    return f"i:{index}"


def test_list_item_elements_match_the_key_loop() -> None:
    rng = random.Random(9)
    metas = [
        FieldMeta(None, "", False, None, "map", keys)
        for keys in [("type",), ("protocol",), ("containerPort", "protocol"), ("ip",), ()]
    ]
    for _ in range(3000):
        item = _value(rng) if rng.random() < 0.3 else {}
        if isinstance(item, dict):
            for key in ("type", "protocol", "containerPort", "ip"):
                if rng.random() < 0.5:
                    item[key] = rng.choice(["Ready", "UDP", 80, None, {"b": 1, "a": [2]}, 'x"\u00e9'])
        meta = rng.choice(metas)
        index = rng.randint(0, 3)
        assert apply._item_element(item, meta, "assoc", index) == _reference_item_element(
            item, meta.list_keys, index
        )


def test_remembered_metadata_validity_matches_validate_object_meta() -> None:
    """Storage remembers metadata it found valid: every answer, remembered or not, must be
    validate_object_meta's own, and invalid metadata is never taken for valid."""
    from kybern.validation import is_dns1035_label, is_dns1123_subdomain, validate_object_meta

    rng = random.Random(5)
    names = ["web-1", "Web_1", "a" * 70, "", "db.example", "x-"]
    label_sets = [None, {}, {"app": "web"}, {"app": "bad value!"}, {"k8s.io/x": "y"}]
    owners = [None, [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u"}], [{"kind": "Node"}]]
    for _ in range(600):
        meta: dict[str, Any] = {"name": rng.choice(names)}
        if rng.random() < 0.8:
            meta["namespace"] = rng.choice(["default", "Bad_NS", ""])
        if (labels := rng.choice(label_sets)) is not None:
            meta["labels"] = labels
        if (refs := rng.choice(owners)) is not None:
            meta["ownerReferences"] = refs
        if rng.random() < 0.2:
            meta["generation"] = rng.choice([1, -1])
        if rng.random() < 0.2:
            meta["finalizers"] = rng.choice([["kubernetes"], ["bad finalizer"]])
        namespaced = rng.random() < 0.7
        validator = rng.choice([is_dns1123_subdomain, is_dns1035_label])
        for _ in range(2):  # the second answer may come from memory
            assert storage._meta_errors(meta, namespaced, validator) == list(
                validate_object_meta(meta, namespaced, validator)
            )


def test_concurrent_writes_prime_the_watch_cache_through_group_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that share a group commit hand the watch cache the object they encoded before the
    commit publishes their events: the cache decodes none of them (issue #5: a decode and an
    encode per write), and a watcher still sees every write, in order."""
    from kybern.plugins.apiserver import cache as cache_module

    decoded: list[str] = []
    decode_value = cache_module.decode_value

    def counting(key: str, value: bytes, rev: int) -> Any:
        decoded.append(key)
        return decode_value(key, value, rev)

    async def run() -> tuple[list[int], list[int]]:
        store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}", compact_interval=0)
        pm = load_plugins().manager
        srv = ApiServer(store, collect_resource_types(pm), pm, Tokens(admin="tok", node="n"), {})  # type: ignore[arg-type]
        await srv.cache.start()
        srv.ready = True
        client = TestClient(TestServer(srv.make_app()))
        await client.start_server()
        headers = {"Authorization": "Bearer tok"}
        try:
            r = await client.post("/api/v1/namespaces", json={"metadata": {"name": "g"}}, headers=headers)
            assert r.status == 201
            watch = await client.get(
                "/api/v1/namespaces/g/configmaps?watch=true&resourceVersion="
                + (await r.json())["metadata"]["resourceVersion"],
                headers=headers,
            )
            monkeypatch.setattr(cache_module, "decode_value", counting)

            async def create(i: int) -> int:
                body = {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}}
                r = await client.post("/api/v1/namespaces/g/configmaps", json=body, headers=headers)
                assert r.status == 201, await r.text()
                return int((await r.json())["metadata"]["resourceVersion"])

            answered = await asyncio.gather(*(create(i) for i in range(40)))
            seen: list[int] = []
            while len(seen) < 40:
                line = await asyncio.wait_for(watch.content.readline(), 10)
                if line.strip():
                    seen.append(int(json.loads(line)["object"]["metadata"]["resourceVersion"]))
            watch.close()
            return sorted(answered), seen
        finally:
            await client.close()
            srv.cache.stop()
            srv.executor.shutdown(wait=False)
            store.close()

    answered, seen = asyncio.run(run())
    assert seen == answered, "the watcher saw every write, in revision order"
    assert decoded == [], f"the cache decoded {len(decoded)} of the server's own writes"
