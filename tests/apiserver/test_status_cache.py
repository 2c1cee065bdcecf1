"""Status writes start from the watch cache's copy (kube's GuaranteedUpdate with the cacher's
object), yet a stale copy changes no outcome: a resourceVersion precondition is judged against
the store, a write that is a no-op only on the stale copy is still made, and a precondition that
really is stale is still a 409. The cache is made stale on purpose by putting an older copy back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kybern.pluginmanager import load_plugins
from kybern.plugins.apiserver import errors
from kybern.plugins.apiserver.app import ApiServer
from kybern.plugins.apiserver.registry import collect_resource_types
from kybern.plugins.apiserver.storage import WriteOptions
from kybern.plugins.sqlstore import SqlStore

KEY = "/registry/nodes/n1"


def _status(ready: str, rv: str | None = None) -> Any:
    def transform(obj: dict[str, Any]) -> dict[str, Any]:
        obj["status"] = {"conditions": [{"type": "Ready", "status": ready}]}
        if rv is not None:
            obj["metadata"]["resourceVersion"] = rv
        else:
            obj["metadata"].pop("resourceVersion", None)
        return obj

    return transform


async def _scenario(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}", compact_interval=0)
    pm = load_plugins().manager
    srv = ApiServer(store, collect_resource_types(pm), pm, None, {})  # type: ignore[arg-type]
    await srv.cache.start()
    rt = srv.registry.lookup("", "v1", "nodes")
    assert rt is not None and rt.status_subresource
    opts = lambda: WriteOptions(manager="test", subresource="status")  # noqa: E731
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    await srv.storage.create(rt, None, node, WriteOptions(manager="test"))
    first, _ = await srv.storage.update(rt, None, "n1", _status("False"), opts())
    objects = srv.cache.cache_for(rt).objects
    assert KEY in objects, f"the node is cached under {list(objects)}"
    stale = objects[KEY]
    second, _ = await srv.storage.update(rt, None, "n1", _status("True"), opts())
    rv2 = second["metadata"]["resourceVersion"]
    assert rv2 != first["metadata"]["resourceVersion"]

    # a precondition that names the store's revision: no false 409 from the stale copy
    objects[KEY] = stale
    third, _ = await srv.storage.update(rt, None, "n1", _status("Unknown", rv2), opts(), precondition=True)
    assert third["status"]["conditions"][0]["status"] == "Unknown"
    rv3 = third["metadata"]["resourceVersion"]
    assert int(rv3) > int(rv2)

    # the stale copy says False already; the store says Unknown: the write must happen
    objects[KEY] = stale
    fourth, _ = await srv.storage.update(rt, None, "n1", _status("False"), opts())
    assert int(fourth["metadata"]["resourceVersion"]) > int(rv3)
    stored = await srv.storage.get(rt, None, "n1")
    assert stored["status"]["conditions"][0]["status"] == "False"

    # a precondition that is stale in the store too is a 409, cache or not
    with pytest.raises(errors.ApiStatusError) as exc:
        await srv.storage.update(rt, None, "n1", _status("True", rv2), opts(), precondition=True)
    assert exc.value.code == 409
    objects[KEY] = stale
    with pytest.raises(errors.ApiStatusError) as exc:
        await srv.storage.update(rt, None, "n1", _status("True", rv2), opts(), precondition=True)
    assert exc.value.code == 409
    srv.executor.shutdown(wait=False)
    store.close()


def test_status_write_from_a_stale_cache_behaves_as_from_the_store(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
