"""The allocator's parts without a server: gangs from pods, the inventory (nvtopo's devices
and, in companion mode, NVIDIA's matched by UUID), plans and the journal's verdict."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import nvtopo
from nvtopo import dra
from nvtopo.allocator import (
    DOMAIN_ANNOTATION,
    GANG_LABEL,
    GATE,
    SIZE_ANNOTATION,
    GangError,
    plan_gang,
    read_inventory,
)
from nvtopo.allocator.gang import group_gangs
from nvtopo.allocator.journal import Journal, decode, encode, verdict
from nvtopo.allocator.plan import allocation_result
from nvtopo.dra.publish import cluster_slices, node_slices
from nvtopo.exceptions import InfeasibleError, ParseError

DRIVER = "gpu.nvtopo.dev"


def _claim(name: str, k: int, cls: str = DRIVER, ns: str = "ns") -> dict[str, Any]:
    exactly = {"deviceClassName": cls, "allocationMode": "ExactCount", "count": k}
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}},
    }


def _pod(
    name: str, claim: str, gang: str | None = None, size: int = 1, **ann: str
) -> dict[str, Any]:
    labels = {GANG_LABEL: gang} if gang else {}
    annotations = {SIZE_ANNOTATION: str(size), **ann} if gang else dict(ann)
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels, "annotations": annotations},
        "spec": {
            "schedulingGates": [{"name": GATE}],
            "resourceClaims": [{"name": "gpus", "resourceClaimName": claim}],
        },
    }


def _claims(*claims: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {("ns", c["metadata"]["name"]): c for c in claims}


def test_gangs_wait_until_complete_and_read_their_shape() -> None:
    claims = _claims(_claim("c0", 4), _claim("c1", 4), _claim("solo", 2))
    pods = [
        _pod("a-0", "c0", "a", 3, **{DOMAIN_ANNOTATION: "required"}),
        _pod("a-1", "c1", "a", 3),
        _pod("solo", "solo"),
    ]
    gangs, ungoverned, errors = group_gangs(pods, claims, DRIVER)
    assert not ungoverned and not errors
    by = {g.name: g for g in gangs}
    assert by["a"].size == 3 and not by["a"].complete and by["a"].domain == "required"
    assert by["solo"].complete and by["solo"].gpus_per_pod == 2


def test_pods_asking_other_classes_are_let_through_and_bad_shapes_refused() -> None:
    claims = _claims(_claim("x", 1, cls="other.example.com"), _claim("c0", 4), _claim("c1", 2))
    pods = [
        _pod("x", "x"),
        _pod("b-0", "c0", "b", 2, **{DOMAIN_ANNOTATION: "sometimes"}),
        _pod("b-1", "c1", "b", 2),
    ]
    gangs, ungoverned, errors = group_gangs(pods, claims, DRIVER)
    assert not gangs
    assert [p["metadata"]["name"] for p in ungoverned] == ["x"]
    assert "sometimes" in errors["ns/b"][0]
    good = [_pod("b-0", "c0", "b", 2), _pod("b-1", "c1", "b", 2)]
    [gang], _, _ = group_gangs(good, claims, DRIVER)
    with pytest.raises(GangError, match="different GPU counts"):
        _ = gang.gpus_per_pod


def _rack_inventory(claims: list[dict[str, Any]] = []) -> Any:  # noqa: B006
    cluster = nvtopo.cluster("gb200-nvl72x2")
    pools = cluster_slices(cluster)
    return cluster, read_inventory([s for pool in pools.values() for s in pool], claims)


def test_plan_places_a_gang_in_one_clique_around_used_gpus() -> None:
    cluster, _ = _rack_inventory()
    first = cluster.nodes[0].name
    used = {
        "metadata": {"name": "used", "namespace": "ns"},
        "status": {"allocation": allocation_result(first, (("gpus", DRIVER, first, "gpu-0"),))},
    }
    _, inventory = _rack_inventory([used])
    assert inventory.cluster.nodes[0].free == (1, 2, 3)
    claims = _claims(*(_claim(f"c{i}", 4) for i in range(4)))
    pods = [_pod(f"j-{i}", f"c{i}", "j", 4, **{DOMAIN_ANNOTATION: "required"}) for i in range(4)]
    [gang], _, _ = group_gangs(pods, claims, DRIVER)
    plan = plan_gang(inventory, gang)
    assert len(set(plan.pods.values())) == 4 and first not in plan.pods.values()
    assert (
        len(
            {
                inventory.cluster.nodes[[n.name for n in inventory.cluster.nodes].index(v)].domain
                for v in plan.pods.values()
            }
        )
        == 1
    )
    for c in plan.claims:
        status = c.status()
        assert [r["request"] for r in status["devices"]["results"]] == ["gpus"] * 4
        assert status["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [
            c.node
        ]
    big = [
        _pod(f"k-{i}", f"c{i % 4}", "k", 19, **{DOMAIN_ANNOTATION: "required"}) for i in range(19)
    ]
    [gang], _, _ = group_gangs(big, claims, DRIVER)
    with pytest.raises(InfeasibleError):
        plan_gang(inventory, gang)


def test_companion_mode_hands_out_nvidia_devices_matched_by_uuid() -> None:
    topology = nvtopo.system("dgx-h100")
    ours = node_slices(topology, node="n1")
    theirs = copy.deepcopy(dra.resource_slices(topology, node="n1", driver="gpu.nvidia.com"))
    # NVIDIA names devices its own way and lists them in another order; the UUID is the key.
    for i, d in enumerate(reversed(theirs[0]["spec"]["devices"])):
        d["name"] = f"nv-{i}"
    theirs[0]["spec"]["devices"] = list(reversed(theirs[0]["spec"]["devices"]))
    inventory = read_inventory([*ours, *theirs], [], driver="gpu.nvidia.com")
    devices = inventory.devices["n1"]
    uuids = {d["name"]: d["attributes"]["uuid"]["string"] for d in theirs[0]["spec"]["devices"]}
    for gpu in topology.gpus:
        assert devices[gpu.index].driver == "gpu.nvidia.com"
        assert uuids[devices[gpu.index].name] == gpu.uuid


def test_journal_round_trip_and_verdict() -> None:
    _, inventory = _rack_inventory()
    claims = _claims(_claim("c0", 4), _claim("c1", 4))
    pods = [_pod(f"j-{i}", f"c{i}", "j", 2) for i in range(2)]
    [gang], _, _ = group_gangs(pods, claims, DRIVER)
    plan = plan_gang(inventory, gang)
    journal = Journal(plan.claims, ("j-0", "j-1"))
    assert decode(encode(journal), namespace="ns", where="pod j-0") == journal
    with pytest.raises(ParseError, match="pod j-0"):
        decode("{", namespace="ns", where="pod j-0")
    assert verdict(journal, claims, frozenset()) == "finish"
    _, _, pool, device = plan.claims[1].results[0]
    assert verdict(journal, claims, frozenset({(pool, device)})) == "rollback"
    written = copy.deepcopy(claims)
    written[("ns", "c1")]["status"] = {"allocation": plan.claims[1].status()}
    assert verdict(journal, written, frozenset({(pool, device)})) == "finish"
    assert verdict(journal, _claims(_claim("c0", 4)), frozenset()) == "rollback"


def test_compute_domain_plan_hands_the_job_to_the_allocator() -> None:
    from nvtopo.compute_domain import plan
    from nvtopo.compute_domain.errors import ComputeDomainError

    cluster = nvtopo.cluster("gb200-nvl72x2")
    pinned = plan(cluster, name="train", gpus=16, nodes=4).workload()["spec"]["template"]
    assert "affinity" in pinned["spec"] and "schedulingGates" not in pinned["spec"]
    handed = plan(cluster, name="train", gpus=16, nodes=4, pod_placement="allocator")
    template = handed.workload()["spec"]["template"]
    assert "affinity" not in template["spec"]
    assert template["spec"]["schedulingGates"] == [{"name": GATE}]
    assert template["metadata"]["labels"][GANG_LABEL] == "train"
    assert template["metadata"]["annotations"] == {
        SIZE_ANNOTATION: "4",
        DOMAIN_ANNOTATION: "required",
    }
    with pytest.raises(ComputeDomainError, match="DRA"):
        plan(
            cluster,
            name="t",
            gpus=16,
            nodes=4,
            gpu_request="device-plugin",
            pod_placement="allocator",
        )


def test_a_labelled_gang_needs_its_size_and_no_extra_pods() -> None:
    claims = _claims(_claim("c0", 4), _claim("c1", 4))
    unsized = [_pod("u-0", "c0", "u", 2), _pod("u-1", "c1", "u", 2)]
    for p in unsized:
        del p["metadata"]["annotations"][SIZE_ANNOTATION]
    _, _, errors = group_gangs(unsized, claims, DRIVER)
    assert SIZE_ANNOTATION in errors["ns/u"][0]
    _, _, errors = group_gangs(
        [_pod("v-0", "c0", "v", 1), _pod("v-1", "c1", "v", 1)], claims, DRIVER
    )
    assert "2 pods for a gang of 1" in errors["ns/v"][0]


def test_own_writes_are_overlaid_until_the_view_echoes_them() -> None:
    from nvtopo.allocator.watch import Watched
    from nvtopo.kube.client import RawApi
    from nvtopo.kube.view import Snapshot

    def snap(*claims: dict[str, Any]) -> Snapshot:
        return Snapshot(1, nvtopo.Cluster(()), {}, (), claims, True)

    before = _claim("c0", 2)
    before["metadata"]["resourceVersion"] = "7"
    after = copy.deepcopy(before)
    after["metadata"]["resourceVersion"] = "9"
    after["status"] = {"allocation": allocation_result("n", (("gpus", DRIVER, "n", "gpu-0"),))}
    watched = Watched(RawApi(None))
    watched.wrote(before, after)
    # The view still has the claim as it was: the write is what the allocator plans on.
    assert watched.claims(snap(before))[("ns", "c0")] is after
    # The view moved on (here a later change after the write): its object is used, and the
    # overlay is gone for good.
    later = copy.deepcopy(after)
    later["metadata"]["resourceVersion"] = "12"
    assert watched.claims(snap(later))[("ns", "c0")] is later
    assert watched.claims(snap(before))[("ns", "c0")] is before
    # Deleted: not brought back.
    watched.wrote(before, after)
    assert watched.claims(snap()) == {}
