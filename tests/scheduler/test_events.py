"""The scheduler's event broadcaster against a real API server: identical events become one
Event with a count, a full queue drops (and counts) instead of blocking, the per-object spam
filter stops a flood; and the pods/binding UID precondition the asynchronous binder relies on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kybern.client import ApiError, HttpApiClient
from kybern.plugins.scheduler import events as sched_events
from kybern.plugins.scheduler.events import EventBroadcaster
from kybern.scheduling import PodInfo
from support.cluster import Server, running_server

from .kube import apply, namespace, pod_manifest


def _client(server: Server) -> HttpApiClient:
    token = (server.data_dir / "token").read_text().strip()
    return HttpApiClient(f"https://127.0.0.1:{server.port}", token, server.data_dir / "tls" / "ca.crt")


def _events(items: list[dict[str, Any]], pod: str) -> list[dict[str, Any]]:
    return sorted(
        (e for e in items if e["involvedObject"]["name"] == pod), key=lambda e: e["metadata"]["name"]
    )


def test_broadcaster_counts_identical_events_drops_when_full_and_filters_spam(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sched_events, "SPAM_BURST", 4)
    with running_server(tmp_path, "--disable", "scheduler", "--disable", "controller-manager") as server:
        ns = namespace(server, "sched-events")
        apply(server, [pod_manifest(name, ns) for name in ("same", "full", "spam")])

        async def main() -> dict[str, Any]:
            client = _client(server)
            try:
                found = {p["metadata"]["name"]: p for p in (await client.list("pods", namespace=ns))["items"]}
                same, full, spam = (PodInfo.from_obj(found[n]) for n in ("same", "full", "spam"))
                events = EventBroadcaster(client, "default-scheduler", max_queued=2)
                events.start()
                # the same failure three times: one Event, count 3
                for _ in range(3):
                    events.record(same, "Warning", "FailedScheduling", "0/0 nodes are available")
                    await events.flush()
                # four at once into a queue of two: two written, two dropped, nobody waits
                for i in range(4):
                    events.record(full, "Normal", "Scheduled", f"attempt {i}")
                dropped = events.dropped
                await events.flush()
                # the spam filter: a burst of 4 per object, the rest filtered
                for i in range(6):
                    events.record(spam, "Warning", "FailedScheduling", f"message {i}")
                    await events.flush()
                await events.stop()
                items = (await client.list("events", namespace=ns))["items"]
                return {"items": items, "dropped": dropped, "filtered": events.filtered}
            finally:
                await client.close()

        result = asyncio.run(main())
        same_events = _events(result["items"], "same")
        assert [(e["reason"], e["count"]) for e in same_events] == [("FailedScheduling", 3)]
        assert same_events[0]["source"] == {"component": "default-scheduler"}
        assert same_events[0]["involvedObject"]["kind"] == "Pod"
        assert result["dropped"] == 2
        assert [e["message"] for e in _events(result["items"], "full")] == ["attempt 0", "attempt 1"]
        assert result["filtered"] == 2
        assert len(_events(result["items"], "spam")) == 4


def test_binding_checks_the_pod_uid_and_leaves_no_managed_fields_entry(tmp_path: Path) -> None:
    with running_server(tmp_path, "--disable", "scheduler", "--disable", "controller-manager") as server:
        ns = namespace(server, "sched-bind")
        apply(server, [pod_manifest("p", ns)])

        async def main() -> tuple[ApiError, dict[str, Any]]:
            client = _client(server)
            try:
                pod = await client.get("pods", "p", namespace=ns)

                def binding(uid: str) -> dict[str, Any]:
                    return {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": "p", "namespace": ns, "uid": uid},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
                    }

                uid = pod["metadata"]["uid"]
                with pytest.raises(ApiError) as refused:
                    await client.create("pods", binding("not-" + uid), ns, name="p", subresource="binding")
                await client.create("pods", binding(uid), ns, name="p", subresource="binding")
                return refused.value, await client.get("pods", "p", namespace=ns)
            finally:
                await client.close()

        refused, bound = asyncio.run(main())
        assert refused.code == 409 and "Precondition failed: UID in precondition" in str(refused)
        assert bound["spec"]["nodeName"] == "n1"
        scheduled = [c for c in bound["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert [c["status"] for c in scheduled] == ["True"]
        # kube's BindingREST writes to storage directly: no field manager entry for the binder
        entries = bound["metadata"].get("managedFields", [])
        assert all(m.get("subresource") != "binding" for m in entries), entries
