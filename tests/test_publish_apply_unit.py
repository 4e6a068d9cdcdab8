"""The publisher's write step without an API server: an in-memory ResourceSlice store behind
the same ``ApiClient`` calls (``param_serialize``/``call_api``) that the real client answers.

It checks what the apiserver tests cannot isolate: which requests are made, with which
preconditions, and that stale slices (fewer slices per pool, nodes that left) are deleted
exactly when they should be. The behaviour of the real server is covered by
``tests/k8s/test_publish_apiserver.py``.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import unquote

import nvtopo
from nvtopo.dra.publish import cluster_slices, node_slices, publish
from nvtopo.kube.client import RESOURCE_SLICES
from nvtopo.kube.retry import RetryPolicy

DRIVER = "gpu.nvtopo.dev"
FAST = RetryPolicy(attempts=3, base=0.0, max_delay=0.0)


class _Response:
    def __init__(self, status: int, doc: dict[str, Any] | None = None) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict"}.get(
            status, "Error"
        )
        self.data = json.dumps(doc or {}).encode()
        self.headers: dict[str, str] = {}

    def read(self) -> bytes:
        return self.data

    def getheaders(self) -> dict[str, str]:
        return {}

    def getheader(self, name: str, default: Any = None) -> Any:
        return default


class SliceStore:
    """Enough of the ResourceSlice API: list (fieldSelector), create, replace, delete."""

    def __init__(self) -> None:
        self.configuration = type("Cfg", (), {"host": "http://in-memory"})()
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.log: list[tuple[str, str, Any]] = []
        #: Names whose next write answers 409 (another writer got there first).
        self.conflict_once: set[str] = set()

    def param_serialize(self, **kw: Any) -> tuple[Any, ...]:
        return kw["method"], kw["resource_path"], kw.get("query_params"), kw.get("body")

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    def call_api(self, method: str, path: str, query: Any, body: Any, **_: Any) -> _Response:
        self.log.append((method, path, copy.deepcopy(body)))
        name = unquote(path.rsplit("/", 1)[1]) if path != RESOURCE_SLICES else None
        if method == "GET":
            selector = dict(query or []).get("fieldSelector", "")
            wanted = dict(p.split("=", 1) for p in selector.split(",") if p)
            items = [
                o
                for o in self.objects.values()
                if all(
                    (o["spec"].get("driver") if k == "spec.driver" else o["spec"].get("nodeName"))
                    == v
                    for k, v in wanted.items()
                )
            ]
            return _Response(200, {"items": copy.deepcopy(items), "metadata": {}})
        key = name or body["metadata"]["name"]
        if key in self.conflict_once:
            self.conflict_once.discard(key)
            self.objects[key] = self._stamp(self.objects.get(key) or body)  # someone wrote it
            return _Response(409)
        if method == "POST":
            if key in self.objects:
                return _Response(409)
            self.objects[key] = self._stamp(body)
            return _Response(201, self.objects[key])
        if key not in self.objects:
            return _Response(404)
        current = self.objects[key]["metadata"]["resourceVersion"]
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != current:
                return _Response(409)
            self.objects[key] = self._stamp(body)
            return _Response(200, self.objects[key])
        precondition = ((body or {}).get("preconditions") or {}).get("resourceVersion")
        if precondition is not None and precondition != current:
            return _Response(409)
        del self.objects[key]
        return _Response(200, {})

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p.rsplit("/", 1)[1]) for m, p, _ in self.log if m != "GET"]


def _pools(store: SliceStore) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, obj in sorted(store.objects.items()):
        out.setdefault(obj["spec"]["pool"]["name"], []).append(name)
    return out


def test_fewer_slices_per_pool_deletes_the_stale_ones_with_their_version() -> None:
    store = SliceStore()
    topo = nvtopo.system("hgx-b200")
    publish(store, {"n1": node_slices(topo, node="n1", max_devices_per_slice=2)}, driver=DRIVER)
    before = _pools(store)["n1"]
    assert len(before) == 4
    versions = {n: store.objects[n]["metadata"]["resourceVersion"] for n in before}
    store.log.clear()
    result = publish(store, {"n1": node_slices(topo, node="n1")}, driver=DRIVER)
    assert (result.created, result.updated, result.deleted) == (0, 1, 3)
    assert len(_pools(store)["n1"]) == 1
    deletes = [(p, b) for m, p, b in store.log if m == "DELETE"]
    assert len(deletes) == 3
    for path, body in deletes:  # each delete is conditional on the version that was read
        name = path.rsplit("/", 1)[1]
        assert body["preconditions"] == {"resourceVersion": versions[name]}
    # Every slice of the pool moved to the next generation together.
    [kept] = store.objects.values()
    assert kept["spec"]["pool"] == {
        **kept["spec"]["pool"],
        "generation": 2,
        "resourceSliceCount": 1,
    }


def test_other_pools_are_deleted_only_with_prune() -> None:
    store = SliceStore()
    racks = nvtopo.cluster("gb200-nvl72")
    publish(store, racks, driver=DRIVER)
    assert len(_pools(store)) == 18
    three = nvtopo.Cluster(racks.nodes[:3])
    kept = publish(store, three, driver=DRIVER)
    assert (kept.deleted, kept.writes) == (0, 0) and len(_pools(store)) == 18
    pruned = publish(store, three, driver=DRIVER, prune=True)
    assert pruned.deleted == 15 and set(_pools(store)) == {n.name for n in racks.nodes[:3]}
    assert {c.reason for c in pruned.changes} == {"node left the cluster"}
    # Another driver's slices are never listed, so never deleted.
    other = node_slices(nvtopo.system("dgx-h100"), node="x", driver="other.dev")
    publish(store, {"x": other}, driver="other.dev")
    publish(store, three, driver=DRIVER, prune=True)
    assert "x" in _pools(store)


def test_a_slice_rewritten_meanwhile_is_read_again_not_deleted_blindly() -> None:
    store = SliceStore()
    topo = nvtopo.system("hgx-b200")
    publish(store, {"n1": node_slices(topo, node="n1", max_devices_per_slice=4)}, driver=DRIVER)
    [_, stale] = _pools(store)["n1"]
    store.conflict_once.add(stale)  # its DELETE meets a newer version: 409
    result = publish(store, {"n1": node_slices(topo, node="n1")}, driver=DRIVER, retry=FAST)
    assert result.conflicts == 1
    assert _pools(store)["n1"] == [_pools(store)["n1"][0]] and stale not in store.objects
    # Read again, planned again, converged: nothing left to write.
    assert publish(store, {"n1": node_slices(topo, node="n1")}, driver=DRIVER).writes == 0


def test_a_stale_slice_already_gone_is_fine() -> None:
    store = SliceStore()
    pools = cluster_slices(nvtopo.cluster("gb200-nvl72"), driver=DRIVER, max_devices_per_slice=2)
    publish(store, pools, driver=DRIVER)
    smaller = cluster_slices(nvtopo.cluster("gb200-nvl72"), driver=DRIVER)
    victim = _pools(store)["rack0000-tray00"][1]
    real = store.call_api

    def racing(method: str, path: str, query: Any, body: Any, **kw: Any) -> _Response:
        if method == "DELETE" and path.endswith(victim) and victim in store.objects:
            del store.objects[victim]  # deleted by someone else first: the DELETE gets 404
        return real(method, path, query, body, **kw)

    store.call_api = racing  # type: ignore[method-assign]
    result = publish(store, smaller, driver=DRIVER)
    assert result.deleted == 18 and result.updated == 18
    assert all(len(v) == 1 for v in _pools(store).values())
