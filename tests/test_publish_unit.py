"""The publisher's planning, retry and read-back logic, without an API server."""

from __future__ import annotations

import copy
import email.utils
import gzip
import json
from typing import Any

import pytest

import nvtopo
from nvtopo.dra._plan import (
    LABEL_DRIVER,
    LABEL_MANAGED_BY,
    LABEL_NODE,
    label_value,
    plan_pool,
    plan_pools,
    slice_difference,
)
from nvtopo.dra.annotation import TOPOLOGY_ANNOTATION, decode_topology, encode_topology
from nvtopo.dra.publish import PublishError, _desired, cluster_slices, node_slices
from nvtopo.exceptions import ParseError
from nvtopo.formats.jsonio import node_to_json
from nvtopo.kube.readback import allocated_devices, cluster_from_objects, topology_from_devices
from nvtopo.kube.retry import KubeApiError, RetryPolicy, call_with_retry, retry_after
from nvtopo.model import NvLink

DRIVER = "gpu.nvtopo.dev"


class Refused(Exception):
    """What ``kubernetes.client.ApiException`` carries: status, reason, headers, body."""

    def __init__(
        self, status: int, *, headers: dict[str, str] | None = None, body: Any = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.reason = {409: "Conflict", 429: "Too Many Requests"}.get(status, "Server Error")
        self.headers = headers or {}
        self.body = json.dumps(body) if body is not None else None


def _stored(manifests: list[dict[str, Any]], generation: int = 1) -> list[dict[str, Any]]:
    """``manifests`` as the server returns them after a publish at ``generation``."""
    pools: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        pools.setdefault(m["spec"]["pool"]["name"], []).append(m)
    labelled = [s for v in _desired(pools, None, DRIVER).values() for s in v]
    return _as_stored(labelled, generation)


def _pool(node: str = "n1", **kwargs: Any) -> list[dict[str, Any]]:
    return _desired({node: node_slices(nvtopo.system("dgx2-v100"), node=node, **kwargs)}, None,
                    DRIVER)[node]  # fmt: skip


def _as_stored(desired: list[dict[str, Any]], generation: int = 1) -> list[dict[str, Any]]:
    out = []
    for i, d in enumerate(desired):
        s = copy.deepcopy(d)
        s["spec"]["pool"]["generation"] = generation
        s["metadata"].update(resourceVersion=str(10 + i), managedFields=[{"manager": "x"}])
        out.append(s)
    return out


# -- planning ---------------------------------------------------------------------------------


def test_a_matching_pool_needs_no_write() -> None:
    desired = _pool(max_devices_per_slice=6)
    plan = plan_pool("n1", desired, _as_stored(desired, generation=7))
    assert not plan.changed and plan.writes == 0
    assert plan.generation == 7 and plan.unchanged == 3


def test_a_new_pool_is_created_at_generation_1() -> None:
    desired = _pool(max_devices_per_slice=6)
    plan = plan_pool("n1", desired, [])
    assert [c.action for c in plan.changes] == ["create"] * 3
    assert {b["spec"]["pool"]["generation"] for b in plan.creates} == {1}
    assert all(b["metadata"]["labels"][LABEL_DRIVER] == DRIVER for b in plan.creates)


def test_one_changed_slice_rewrites_the_pool_at_max_generation_plus_one() -> None:
    desired = _pool(max_devices_per_slice=6)
    stored = _as_stored(desired, generation=4)
    stored[0]["spec"]["pool"]["generation"] = 5  # a pool may be caught half way
    stored[2]["spec"]["devices"][0]["attributes"]["productName"] = {"string": "old name"}
    plan = plan_pool("n1", desired, stored)
    assert len(plan.updates) == 3 and not plan.creates and not plan.deletes
    assert {b["spec"]["pool"]["generation"] for b in plan.updates} == {6}
    reasons = {c.slice: c.reason for c in plan.changes}
    assert reasons[desired[2]["metadata"]["name"]] == "spec changed"
    # Replaces are conditional on what was read.
    assert [b["metadata"]["resourceVersion"] for b in plan.updates] == ["10", "11", "12"]
    assert all("managedFields" not in b["metadata"] for b in plan.updates)


def test_mixed_generations_alone_are_a_change() -> None:
    desired = _pool(max_devices_per_slice=6)
    stored = _as_stored(desired, generation=2)
    stored[1]["spec"]["pool"]["generation"] = 3
    plan = plan_pool("n1", desired, stored)
    assert plan.changed and plan.generation == 4
    assert {c.reason for c in plan.changes} == {"mixed generations"}


def test_slices_no_longer_wanted_are_deleted_after_the_rest_is_written() -> None:
    stored = _as_stored(_pool(max_devices_per_slice=6), generation=2)
    desired = _pool(max_devices_per_slice=16)
    plan = plan_pool("n1", desired, stored)
    assert [c.action for c in plan.changes] == ["update", "delete", "delete"]
    assert plan.deletes == ((stored[1]["metadata"]["name"], "11"),
                            (stored[2]["metadata"]["name"], "12"))  # fmt: skip
    assert plan.updates[0]["spec"]["pool"] == {"name": "n1", "generation": 3,
                                               "resourceSliceCount": 1}  # fmt: skip


def test_a_pool_without_desired_slices_goes() -> None:
    stored = _as_stored(_pool(max_devices_per_slice=6))
    plan = plan_pool("n1", [], stored)
    assert [c.action for c in plan.changes] == ["delete"] * 3
    assert {c.reason for c in plan.changes} == {"node left the cluster"}


def test_server_side_differences_that_mean_nothing_are_ignored() -> None:
    desired = _pool()
    stored = _as_stored(desired)
    s = stored[0]
    s["spec"]["devices"][0]["capacity"]["memory"]["value"] = "32Gi"  # = 32768Mi
    desired[0]["spec"]["devices"][0]["capacity"]["memory"]["value"] = "32768Mi"
    s["spec"]["devices"][1]["consumesCounters"] = []  # empty fields the server drops
    s["spec"]["devices"][1]["taints"] = None
    s["metadata"]["labels"]["team"] = "ml"  # labels nvtopo does not own
    s["metadata"]["annotations"]["note"] = "kept"
    assert slice_difference(desired[0], s) is None
    # Another zlib may compress the same document to other bytes: still no change.
    raw = json.dumps(node_to_json(nvtopo.system("dgx2-v100"))).encode()
    other = "gzip+base64:" + __import__("base64").b64encode(gzip.compress(raw, 1)).decode()
    s["metadata"]["annotations"][TOPOLOGY_ANNOTATION] = other
    assert slice_difference(desired[0], s) is None


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda s: s["spec"]["devices"].pop(), "spec changed"),
        (lambda s: s["spec"]["devices"][0]["attributes"].pop("uuid"), "spec changed"),
        (lambda s: s["spec"].update(nodeName="elsewhere"), "spec changed"),
        (
            lambda s: s["metadata"]["labels"].pop(LABEL_MANAGED_BY),
            f"label {LABEL_MANAGED_BY} changed",
        ),
        (lambda s: s["metadata"]["annotations"].pop(TOPOLOGY_ANNOTATION), "topology changed"),
    ],
)
def test_real_differences_are_seen(edit: Any, reason: str) -> None:
    desired = _pool()
    stored = _as_stored(desired)
    edit(stored[0])
    assert slice_difference(desired[0], stored[0]) == reason


def test_an_update_keeps_foreign_metadata_and_sets_owners() -> None:
    owner = {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-1", "controller": True}
    desired = _pool(owner=owner)
    stored = _as_stored(_pool())
    stored[0]["metadata"]["labels"]["team"] = "ml"
    stored[0]["metadata"]["finalizers"] = ["example.com/keep"]
    stored[0]["metadata"]["annotations"][TOPOLOGY_ANNOTATION] = "stale"
    plan = plan_pool("n1", desired, stored)
    [body] = plan.updates
    meta = body["metadata"]
    assert meta["labels"]["team"] == "ml" and meta["labels"][LABEL_NODE] == "n1"
    assert meta["finalizers"] == ["example.com/keep"]
    assert meta["ownerReferences"] == [owner]
    assert (
        meta["annotations"][TOPOLOGY_ANNOTATION]
        == desired[0]["metadata"]["annotations"][TOPOLOGY_ANNOTATION]
    )
    assert plan.changes[0].reason == "topology changed"


def test_plan_pools_prunes_other_nodes_only_when_asked() -> None:
    stored = _as_stored(_pool("a")) + _as_stored(_pool("b")) + _as_stored(_pool("c"))
    desired = {"a": _pool("a"), "d": _pool("d")}
    kept = plan_pools(desired, stored, prune=False)
    assert [(p.pool, p.changed) for p in kept] == [("a", False), ("d", True)]
    pruned = plan_pools(desired, stored, prune=True)
    assert [(p.pool, [c.action for c in p.changes]) for p in pruned] == [
        ("a", []), ("b", ["delete"]), ("c", ["delete"]), ("d", ["create"]),
    ]  # fmt: skip


def test_label_values_stay_within_the_label_limit() -> None:
    long = "node-" + "x" * 200 + ".example.com"
    value = label_value(long)
    assert len(value) == 63 and value != label_value(long + "2")
    assert label_value("gpu-node-1") == "gpu-node-1"


def test_desired_slices_must_belong_to_the_driver_and_node() -> None:
    [s] = node_slices(nvtopo.system("dgx-h100"), node="n1")
    with pytest.raises(PublishError, match=r"driver 'gpu\.nvtopo\.dev' is not 'other\.dev'"):
        _desired({"n1": [s]}, None, "other.dev")
    with pytest.raises(PublishError, match="pool name is not the node 'n2'"):
        _desired({"n2": [s]}, None, DRIVER)


def test_cluster_slices_annotate_each_pool_once() -> None:
    pools = cluster_slices(nvtopo.cluster("gb200-nvl72x2"), max_devices_per_slice=2)
    assert len(pools) == 36
    for slices in pools.values():
        assert len(slices) == 2
        assert TOPOLOGY_ANNOTATION in slices[0]["metadata"]["annotations"]
        assert "annotations" not in slices[1]["metadata"]


# -- the topology annotation ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dgx1-v100", "dgx2-v100", "gb200-tray", "pcie-8x-l40s"])
def test_the_annotation_carries_the_whole_topology(name: str) -> None:
    topo = nvtopo.system(name)
    text = encode_topology(topo)
    assert len(text) < 8 * 1024
    back = decode_topology(text)
    assert back == topo and back.pairs == topo.pairs and back.nics == topo.nics
    assert decode_topology(text) is back  # equal texts share one topology


def test_an_unreadable_annotation_is_one_line_naming_the_slice() -> None:
    with pytest.raises(ParseError) as err:
        decode_topology("gzip+base64:!!!", where="ResourceSlice n1-x-0")
    assert str(err.value).startswith("ResourceSlice n1-x-0: annotation ")
    assert "\n" not in str(err.value)


# -- retries ------------------------------------------------------------------------------------


def _script(*answers: Any) -> tuple[Any, list[int]]:
    calls: list[int] = []
    it = iter(answers)

    def fn() -> Any:
        calls.append(1)
        answer = next(it)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return fn, calls


def test_429_waits_as_long_as_the_server_asks() -> None:
    fn, calls = _script(Refused(429, headers={"Retry-After": "3"}), "ok")
    delays: list[float] = []
    assert call_with_retry(fn, what="x", sleep=delays.append) == "ok"
    assert delays == [3.0] and len(calls) == 2


def test_retry_after_forms() -> None:
    assert retry_after(Refused(429, body={"details": {"retryAfterSeconds": 4}})) == 4.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after(Refused(503, headers={"Retry-After": date}), now=1_000_000) == 30.0
    assert retry_after(Refused(503)) is None
    # A huge Retry-After is cut to the policy's cap.
    fn, _ = _script(Refused(429, headers={"Retry-After": "3600"}), "ok")
    delays: list[float] = []
    call_with_retry(fn, what="x", policy=RetryPolicy(max_retry_after=5), sleep=delays.append)
    assert delays == [5.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_back_off_exponentially_with_full_jitter(status: int) -> None:
    fn, _ = _script(*[Refused(status)] * 5, "ok")
    policy = RetryPolicy(attempts=6, base=0.5, max_delay=4.0)
    top: list[float] = []
    call_with_retry(fn, what="x", policy=policy, sleep=top.append, rng=lambda: 1.0)
    assert top == [0.5, 1.0, 2.0, 4.0, 4.0]  # the cap of each draw doubles up to max_delay
    fn, _ = _script(*[Refused(status)] * 5, "ok")
    low: list[float] = []
    call_with_retry(fn, what="x", policy=policy, sleep=low.append, rng=lambda: 0.0)
    assert low == [0.0] * 5  # full jitter: anything from zero up


def test_other_answers_are_not_retried() -> None:
    for status in (400, 403, 404, 409, 422):
        fn, calls = _script(Refused(status), "ok")
        with pytest.raises(Refused):
            call_with_retry(fn, what="x", sleep=lambda _: None)
        assert len(calls) == 1


def test_a_connection_failure_is_retried() -> None:
    from urllib3.exceptions import ProtocolError

    fn, calls = _script(ProtocolError("connection reset"), "ok")
    assert call_with_retry(fn, what="x", sleep=lambda _: None) == "ok"
    assert len(calls) == 2


def test_the_final_failure_is_one_line_naming_the_object_and_status() -> None:
    body = {"kind": "Status", "message": "etcd leader changed"}
    fn, calls = _script(*[Refused(503, body=body)] * 3)
    retried: list[float] = []
    with pytest.raises(KubeApiError) as err:
        call_with_retry(
            fn,
            what="create ResourceSlice n1-gpu-nvtopo-dev-0",
            policy=RetryPolicy(attempts=3),
            sleep=lambda _: None,
            on_retry=lambda exc, delay: retried.append(delay),
        )
    assert len(calls) == 3 and len(retried) == 2
    assert str(err.value) == (
        "create ResourceSlice n1-gpu-nvtopo-dev-0: 503 Server Error: etcd leader changed "
        "(gave up after 3 tries)"
    )
    assert err.value.status == 503


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base=-1)


# -- read-back from objects ---------------------------------------------------------------------


def _claim(driver: str, *results: tuple[str, str]) -> dict[str, Any]:
    return {
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "r", "driver": driver, "pool": p, "device": d}
                        for p, d in results
                    ]
                }
            }
        }
    }


def test_read_back_takes_topology_clique_and_free_gpus_from_the_objects() -> None:
    racks = nvtopo.cluster("gb200-nvl72x2")
    dgx = nvtopo.system("dgx-h100")
    pools = cluster_slices(racks)
    pools["dgx-1"] = node_slices(dgx, node="dgx-1")
    slices = _stored([s for v in pools.values() for s in v])
    claims = [
        _claim(DRIVER, ("dgx-1", "gpu-0"), ("dgx-1", "gpu-5")),
        _claim("other.dev", ("dgx-1", "gpu-1")),  # another driver's devices
        {"status": {}},  # not allocated yet
        _claim("compute-domain.nvidia.com", ("rack0001-tray03", "channel-0")),
    ]
    back = cluster_from_objects(slices, claims, driver=DRIVER)
    assert len(back.nodes) == 37 and set(back.cliques) == set(racks.cliques)
    node = back.node("dgx-1")
    assert node.topology == dgx and node.free == (1, 2, 3, 4, 6, 7)
    assert back.node("rack0001-tray03").in_compute_domain
    assert not back.node("rack0001-tray04").in_compute_domain
    assert back.node("rack0000-tray00").topology == racks.node("rack0000-tray00").topology


def test_read_back_uses_the_newest_generation_of_a_pool() -> None:
    old = _stored(node_slices(nvtopo.system("dgx-a100"), node="n1"), generation=1)
    new = _stored(node_slices(nvtopo.system("hgx-b200"), node="n1", max_devices_per_slice=4),
                  generation=2)  # fmt: skip
    for s in new:
        s["metadata"]["name"] += "-new"
    back = cluster_from_objects(old + new)
    assert back.node("n1").topology == nvtopo.system("hgx-b200")


def test_without_the_annotation_attributes_rebuild_an_nvswitch_node() -> None:
    topo = nvtopo.system("dgx-h100")
    [s] = node_slices(topo, node="n1")
    del s["metadata"]["annotations"]
    back = cluster_from_objects(_stored([s])).node("n1").topology
    assert back.gpu_indices == topo.gpu_indices
    assert [p.path_class for p in back.iter_pairs()] == [p.path_class for p in topo.iter_pairs()]
    assert back.numa_keys == topo.numa_keys
    for k in range(1, 9):
        assert nvtopo.select_gpus(back, k).gpus == nvtopo.select_gpus(topo, k).gpus


def test_without_the_annotation_islands_stay_apart() -> None:
    topo = nvtopo.system("pcie-4x-a100-bridged")
    devices = node_slices(topo, node="n1")[0]["spec"]["devices"]
    back = topology_from_devices(devices, node="n1")
    assert back.nvlink_islands() == topo.nvlink_islands()


def test_allocated_devices_ignore_partial_results() -> None:
    claim = _claim(DRIVER, ("n1", "gpu-0"))
    claim["status"]["allocation"]["devices"]["results"].append({"driver": DRIVER, "pool": "n1"})
    assert allocated_devices([claim], DRIVER) == {("n1", "gpu-0")}


def test_a_degraded_gpu_changes_the_desired_pool() -> None:
    topo = nvtopo.system("hgx-b200")
    gpu = topo.gpu(2)
    down = gpu.__class__(
        **{
            **gpu.__dict__,
            "nvlinks": tuple(
                NvLink(link.link, "down", link.version, link.remote_type) for link in gpu.nvlinks
            ),
        }
    )
    degraded = topo.replace_gpus(down if g.index == 2 else g for g in topo.gpus)
    before = _as_stored(_pool_of(topo))
    plan = plan_pool("n1", _pool_of(degraded), before)
    assert plan.changed and plan.changes[0].reason == "spec changed"


def _pool_of(topo: nvtopo.NodeTopology) -> list[dict[str, Any]]:
    return _desired({"n1": node_slices(topo, node="n1")}, None, DRIVER)["n1"]


@pytest.mark.parametrize(
    "module",
    [
        "dra.annotation",
        "dra.attributes",
        "kube.retry",
        "dra._plan",
        "dra.publish",
        "kube.readback",
        "dra.watch",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"nvtopo.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_a_silent_server_is_given_up_on_after_the_timeout_tries() -> None:
    """Each timed-out try already waited the read timeout: only `timeout_attempts` of them."""
    from urllib3.exceptions import MaxRetryError, ReadTimeoutError

    calls = {"timeout": 0, "refused": 0}

    def silent() -> None:
        calls["timeout"] += 1
        raise MaxRetryError(None, "/api", ReadTimeoutError(None, "/api", "Read timed out."))

    def refused() -> None:
        calls["refused"] += 1
        raise ConnectionRefusedError(111, "Connection refused")

    policy = RetryPolicy(attempts=5, timeout_attempts=2)
    with pytest.raises(KubeApiError, match=r"gave up after 2 tries"):
        call_with_retry(silent, what="get Node n1", policy=policy, sleep=lambda _s: None)
    with pytest.raises(KubeApiError, match=r"gave up after 5 tries"):
        call_with_retry(refused, what="get Node n1", policy=policy, sleep=lambda _s: None)
    assert calls == {"timeout": 2, "refused": 5}
