"""Gangs on the real scheduler: the allocator writes the claims, the scheduler binds.

Catalog GB200 NVL72 clusters with every rack half full (9 of 18 trays taken by claims of
someone else): each gang lands whole inside one clique, or stays gated with the reason in
an event and a pod condition; no gang is ever partly bound.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.allocator import CONDITION, GATE
from nvtopo.allocator.gang import gated
from nvtopo.kube.client import RawApi

from .allocator_env import Env, devices_in_claims, make_env, wait_for

pytestmark = pytest.mark.k8s


@pytest.fixture
def env(apiserver: Any, k8s_client: ApiClient, scheduler: Any, controller_manager: Any) -> Env:
    return make_env(RawApi(k8s_client), apiserver)


def _half_fill(env: Env, cluster: nvtopo.Cluster, seed: int) -> dict[str, set[str]]:
    """Take 9 random trays of each rack whole; return the free trays per clique."""
    rng = random.Random(seed)
    racks: dict[str, list[str]] = {}
    for n in cluster.nodes:
        assert n.domain is not None
        racks.setdefault(n.domain, []).append(n.name)
    taken = [name for names in racks.values() for name in rng.sample(names, len(names) // 2)]
    devices = [f"gpu-{i}" for i in range(4)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda node: env.occupy(node, devices), taken))
    return {clique: set(names) - set(taken) for clique, names in racks.items()}


def _clique_of(cluster: nvtopo.Cluster) -> dict[str, str]:
    return {n.name: str(n.domain) for n in cluster.nodes}


def _check_whole_or_gated(
    env: Env, cluster: nvtopo.Cluster, gangs: dict[str, list[str]], cliques: dict[str, int]
) -> None:
    """Each gang bound whole in ``cliques[gang]`` cliques, or (0) gated with the reason."""
    clique = _clique_of(cluster)
    for name, pods in gangs.items():
        if cliques[name]:
            nodes = env.bound(pods)
            spans = len({clique[n] for n in nodes.values()})
            assert spans == cliques[name], f"gang {name} spans {spans} cliques"
            assert len(set(nodes.values())) == len(pods), f"gang {name} shares a node"
            for pod in env.pods(pods):
                claim = env.claim_of(pod)
                assert claim is not None
                assert {r["pool"] for r in claim["status"]["allocation"]["devices"]["results"]} == {
                    pod["spec"]["nodeName"]
                }
                assert [r["name"] for r in claim["status"]["reservedFor"]] == [
                    pod["metadata"]["name"]
                ]
        else:

            def refused(pods: list[str] = pods) -> list[dict[str, Any]] | None:
                found = env.pods(pods)
                conds = [
                    c
                    for p in found
                    for c in (p.get("status") or {}).get("conditions") or []
                    if c["type"] == CONDITION
                ]
                return found if len(conds) == len(pods) else None

            for pod in wait_for(f"gang {name} refused", refused):
                assert gated(pod) and not pod["spec"].get("nodeName")
                [cond] = [c for c in pod["status"]["conditions"] if c["type"] == CONDITION]
                assert cond["status"] == "False" and "clique" in cond["message"]
            events = env.api.request(
                "GET", f"/api/v1/namespaces/{env.namespace}/events", what="events"
            )["items"]
            assert any(
                e["reason"] == "Unplaceable" and e["involvedObject"]["name"] == pods[0]
                for e in events
            )
    used = devices_in_claims(env.claims(), env.driver)
    assert len(used) == len(set(used)), "a device is in two claims"


def test_gangs_on_three_half_full_racks(env: Env) -> None:
    cluster = nvtopo.cluster("gb200-nvl72x3")
    env.publish(cluster)
    free = _half_fill(env, cluster, seed=3)
    assert sorted(len(v) for v in free.values()) == [9, 9, 9]
    env.template("four", 4)
    gangs = {
        "a": env.gang("a", 4, "four"),  # fits a rack
        "b": env.gang("b", 9, "four"),  # takes a whole rack's free trays
        "c": env.gang("c", 10, "four"),  # more than any rack has free: stays gated
        "d": env.gang("d", 5, "four"),  # fits only beside a, in a's rack
    }
    with env.running():
        _check_whole_or_gated(env, cluster, gangs, {"a": 1, "b": 1, "c": 0, "d": 1})
        c = env.pods(gangs["c"])[0]
        [cond] = [x for x in c["status"]["conditions"] if x["type"] == CONDITION]
        print(f"gang c refused: {cond['message']}")
        # Best fit: a (4) and d (5) share one rack, b fills another, the third stays whole.
        clique = _clique_of(cluster)
        used = {clique[n] for g in ("a", "b", "d") for n in env.bound(gangs[g]).values()}
        assert len(used) == 2


def test_gang_retried_when_capacity_frees(env: Env) -> None:
    cluster = nvtopo.Cluster(nvtopo.cluster("gb200-nvl72x3").nodes[:18])  # one rack
    env.publish(cluster)
    names = [n.name for n in cluster.nodes]
    held = [env.occupy(n, [f"gpu-{i}" for i in range(4)]) for n in names[:10]]
    env.template("four", 4)
    pods = env.gang("big", 10, "four")
    with env.running():
        wait_for(
            "the refusal",
            lambda: all(
                any(c["type"] == CONDITION for c in (p.get("status") or {}).get("conditions") or [])
                for p in env.pods(pods)
            ),
        )
        assert all(gated(p) for p in env.pods(pods))
        for claim in held[:2]:
            env.release(claim)
        nodes = env.bound(pods)
    assert len(set(nodes.values())) == 10


def test_ungated_pods_without_allocator_claims_pass_through(
    env: Env, ready_nodes: Callable[..., None]
) -> None:
    cluster = nvtopo.Cluster(nvtopo.cluster("gb200-nvl72x3").nodes[:1])
    env.publish(cluster)
    env.template("four", 4)
    # Gated, but its claim asks another class: the allocator lifts the gate untouched.
    other = f"o{env.driver}"
    from nvtopo import dra

    for c in dra.device_classes(other):
        env.api.request("POST", "/apis/resource.k8s.io/v1/deviceclasses", what="class", body=c)
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "elsewhere", "namespace": env.namespace},
        "spec": {
            "spec": {
                "devices": {"requests": [{"name": "x", "exactly": {"deviceClassName": other}}]}
            }
        },
    }
    env.api.request(
        "POST", f"/apis/resource.k8s.io/v1/namespaces/{env.namespace}/resourceclaimtemplates",
        what="t", body=body,
    )  # fmt: skip
    env.pod("passer", "elsewhere")
    with env.running():
        wait_for("the gate lifted", lambda: not any(gated(p) for p in env.pods(["passer"])))
    [pod] = env.pods(["passer"])
    assert GATE not in str(pod["spec"].get("schedulingGates"))


@pytest.mark.slow
def test_gangs_on_sixty_four_half_full_racks(env: Env) -> None:
    cluster = nvtopo.cluster("gb200-nvl72x64")
    env.publish(cluster)
    _half_fill(env, cluster, seed=64)
    env.template("four", 4)
    gangs = {
        "a": env.gang("a", 9, "four"),
        "b": env.gang("b", 6, "four"),
        "c": env.gang("c", 12, "four"),  # no rack has 12 free trays: stays gated
        "d": env.gang("d", 18, "four", segment=9),  # two racks' worth, 9 per clique
    }
    with env.running(interval=0.2):
        _check_whole_or_gated(env, cluster, gangs, {"a": 1, "b": 1, "c": 0, "d": 2})
        clique = _clique_of(cluster)
        d = env.bound(gangs["d"])
        per_clique: dict[str, int] = {}
        for node in d.values():
            per_clique[clique[node]] = per_clique.get(clique[node], 0) + 1
        assert sorted(per_clique.values()) == [9, 9]


def test_infeasible_request_is_answered_by_the_first_pass(env: Env) -> None:
    node = f"dgx2-{env.namespace[-6:]}"
    env.publish(nvtopo.Cluster((nvtopo.ClusterNode(node, nvtopo.system("dgx2-v100")),)))
    env.occupy(node, ["gpu-3"])
    env.template("sixteen", 16)
    env.pod("wants-16", "sixteen")  # 16 GPUs, 15 free: the stock scheduler would wait 10 s
    wait_for("the claim", lambda: env.claim_of(env.pods(["wants-16"])[0]))
    result = env.allocator().run_once()
    [(key, why)] = result.refused.items()
    assert key == f"{env.namespace}/wants-16" and why
    [pod] = env.pods(["wants-16"])
    assert gated(pod) and not pod["spec"].get("nodeName")
    [cond] = [c for c in pod["status"]["conditions"] if c["type"] == CONDITION]
    assert cond["message"] == why
    print(f"refused in one pass: {why}")


def test_companion_mode_allocates_nvidia_devices_by_uuid(env: Env) -> None:
    from nvtopo import dra
    from nvtopo.kube.client import RESOURCE_SLICES

    cluster = nvtopo.Cluster(nvtopo.cluster("gb200-nvl72x3").nodes[:4])
    env.publish(cluster)  # nvtopo's slices: the topology
    nvidia = f"nv{env.driver}"  # stands for gpu.nvidia.com, one per test
    uuid_of: dict[tuple[str, str], str] = {}
    for node in cluster.nodes:
        [s] = dra.resource_slices(node.topology, node=node.name, driver=nvidia)
        # NVIDIA's driver names and orders devices its own way; the UUID is what matches.
        devices = list(reversed(s["spec"]["devices"]))
        for i, d in enumerate(devices):
            d["name"] = f"nv{i}"
            uuid_of[(node.name, d["name"])] = d["attributes"]["uuid"]["string"]
        s["spec"]["devices"] = devices
        env.api.request("POST", RESOURCE_SLICES, what="nvidia slice", body=s)
    for c in dra.device_classes(nvidia):
        env.api.request("POST", "/apis/resource.k8s.io/v1/deviceclasses", what="class", body=c)
    exactly = {"deviceClassName": nvidia, "allocationMode": "ExactCount", "count": 2}
    env.api.request(
        "POST",
        f"/apis/resource.k8s.io/v1/namespaces/{env.namespace}/resourceclaimtemplates",
        what="template",
        body={
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "two-nv", "namespace": env.namespace},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}}},
        },
    )
    pods = env.gang("nv", 2, "two-nv")
    worker = env.allocator()
    worker.driver, worker.device_class = nvidia, nvidia  # companion: hand out NVIDIA's devices

    def placed() -> bool:
        worker.run_once()
        return all(p["spec"].get("nodeName") for p in env.pods(pods))

    wait_for("the companion gang bound", placed)
    by_name = {n.name: n.topology for n in cluster.nodes}
    for pod in env.pods(pods):
        claim = env.claim_of(pod)
        assert claim is not None
        results = claim["status"]["allocation"]["devices"]["results"]
        assert {r["driver"] for r in results} == {nvidia}
        node = pod["spec"]["nodeName"]
        got = sorted(
            g.index
            for r in results
            for g in by_name[node].gpus
            if g.uuid == uuid_of[(r["pool"], r["device"])]
        )
        # Contract 1 on a free GB200 tray: two GPUs that share a Grace CPU.
        best = nvtopo.select_gpus(by_name[node], 2).gpus
        assert tuple(got) == best
