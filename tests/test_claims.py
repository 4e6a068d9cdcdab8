"""Claim templates, and what the stock first-fit DRA allocator makes of them.

The allocator is :mod:`tests.dra_allocator`, a model of the kube-scheduler's structured
allocator. On a free node of every catalog system, our claim for k GPUs (k with a ``set<k>``
attribute) gets exactly Contract 1's optimum; a plain count claim does not always.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import nvtopo
from nvtopo import dra
from nvtopo.dra.attributes import device_name
from nvtopo.dra.limits import DraLimitError
from nvtopo.model import Gpu, NodeTopology
from tests.dra_allocator import Allocator, DeviceId, UnsupportedError

NODE_SYSTEMS = [s.name for s in nvtopo.systems() if s.kind == "node"]
DRIVER = "gpu.nvtopo.dev"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def plain_claim(k: int) -> dict[str, Any]:
    """What a user writes without nvtopo: k GPUs of the class, no constraint."""
    exactly = {"deviceClassName": DRIVER, "allocationMode": "ExactCount", "count": k}
    return {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}}


def allocate(
    topo: NodeTopology, claim: dict[str, Any], *, in_use: tuple[int, ...] = ()
) -> tuple[tuple[int, ...], set[str]] | None:
    """GPU indices the allocator gives ``claim`` on ``topo`` (as node n1), and request names."""
    slices = dra.resource_slices(topo, node="n1")
    index = {device_name(g): g.index for g in topo.gpus}
    name = {i: n for n, i in index.items()}
    used = [DeviceId(DRIVER, "n1", name[i]) for i in in_use]
    result = Allocator(slices, dra.device_classes(), node="n1", allocated=used).allocate([claim])
    if result is None:
        return None
    [devices] = result
    return tuple(sorted(index[r.device.device] for r in devices)), {r.request for r in devices}


def set_sizes(topo: NodeTopology) -> list[int]:
    return [k for k in (2, 4, 8) if k < len(topo.gpus)]


# -- the template itself ----------------------------------------------------------------------


def test_template_shape_follows_the_v1_schema() -> None:
    t = dra.claim_template(gpus=4, name="train-4", namespace="ml")
    assert t["apiVersion"] == "resource.k8s.io/v1" and t["kind"] == "ResourceClaimTemplate"
    assert t["metadata"] == {"name": "train-4", "namespace": "ml"}
    devices = t["spec"]["spec"]["devices"]
    [request] = devices["requests"]
    assert request["name"] == "gpus" and "exactly" not in request
    subs = request["firstAvailable"]
    assert [s["name"] for s in subs] == ["set4", "island", "any"]
    for s in subs:
        assert s == {
            "name": s["name"],
            "deviceClassName": DRIVER,
            "allocationMode": "ExactCount",
            "count": 4,
        }
    assert devices["constraints"] == [
        {"requests": ["gpus/set4"], "matchAttribute": "topology.nvtopo.dev/set4"},
        {"requests": ["gpus/island"], "matchAttribute": "topology.nvtopo.dev/nvlinkIsland"},
    ]


@pytest.mark.parametrize("k", range(1, 33))
def test_every_size_gives_a_valid_template(k: int) -> None:
    t = dra.claim_template(gpus=k, name=f"c{k}")
    devices = t["spec"]["spec"]["devices"]
    [request] = devices["requests"]
    names = {request["name"]}
    if k == 1:
        assert request["exactly"] == {
            "deviceClassName": DRIVER,
            "allocationMode": "ExactCount",
            "count": 1,
        }
        assert "constraints" not in devices
        return
    subs = request["firstAvailable"]
    assert 1 < len(subs) <= 8  # FirstAvailableDeviceRequestMaxSize
    assert [s["name"] for s in subs][-2:] == ["island", "any"]
    assert (subs[0]["name"] == f"set{k}") == (k in (2, 4, 8))
    for s in subs:
        assert DNS_LABEL.match(s["name"]) and s["count"] == k
        names.add(f"gpus/{s['name']}")
    for c in devices["constraints"]:
        assert set(c["requests"]) <= names  # every constraint names a real (sub-)request
        assert c["matchAttribute"].startswith("topology.nvtopo.dev/")


def test_template_errors_are_one_line() -> None:
    for bad in (0, 33, True, 2.0):
        with pytest.raises(DraLimitError, match=r"outside 1\.\.32"):
            dra.claim_template(gpus=bad, name="x")  # type: ignore[arg-type]
    with pytest.raises(DraLimitError, match="not a DNS subdomain"):
        dra.claim_template(gpus=2, name="Big_Claim")
    with pytest.raises(DraLimitError, match="namespace"):
        dra.claim_template(gpus=2, name="x", namespace="n" * 64)
    t = dra.claim_template(gpus=2, name="x", driver="gpu.example.com")
    sub = t["spec"]["spec"]["devices"]["requests"][0]["firstAvailable"][0]
    assert sub["deviceClassName"] == "gpu.example.com"


# -- the allocator gives Contract 1's optimum -------------------------------------------------


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_our_claim_gets_the_optimal_set_on_a_free_node(name: str) -> None:
    topo = nvtopo.system(name)
    assert set_sizes(topo), name
    for k in set_sizes(topo):
        got = allocate(topo, dra.claim_template(gpus=k, name="c"))
        assert got is not None
        gpus, requests = got
        assert requests == {f"gpus/set{k}"}
        assert gpus == nvtopo.select_gpus(topo, k).gpus, (name, k)


def nested(topo: NodeTopology) -> bool:
    """Whether the best group of each size lies inside the best group of every larger size."""
    firsts = [set(nvtopo.partition(topo, k)[0]) for k in set_sizes(topo)]
    return all(a <= b for i, a in enumerate(firsts) for b in firsts[i + 1 :])


@pytest.mark.parametrize("name", ["hgx-b200", "dgx-h100", "dgx1-v100"])
def test_our_claim_avoids_a_gpu_that_lost_its_nvlinks(name: str) -> None:
    topo = nvtopo.system(name, degraded_gpus=(2,))
    for k in set_sizes(topo):
        gpus, _ = allocate(topo, dra.claim_template(gpus=k, name="c"))  # type: ignore[misc]
        best = nvtopo.select_gpus(topo, k)
        assert 2 not in gpus
        if nested(topo):
            assert gpus == best.gpus
        else:
            # One device order cannot put the best group of every size first; the smaller
            # size then gets a group of the larger size's best group, equally connected.
            got = nvtopo.select_gpus(topo, k, available=gpus)
            assert (got.bottleneck, got.total) == (best.bottleneck, best.total)


def test_partitions_nest_on_every_catalog_system() -> None:
    # Why one device order serves set2, set4 and set8 claims at once on these machines.
    assert all(nested(nvtopo.system(n)) for n in NODE_SYSTEMS)
    assert not nested(nvtopo.system("dgx1-v100", degraded_gpus=(2,)))


def test_a_plain_count_claim_misses_the_optimum_where_ours_does_not() -> None:
    # Two NVLink-bridged pairs (0,1) and (2,3); GPU 0 is held by another pod.
    topo = nvtopo.system("pcie-4x-a100-bridged")
    best = nvtopo.select_gpus(topo, 2, available=(1, 2, 3)).gpus
    assert best == (2, 3)
    plain, _ = allocate(topo, plain_claim(2), in_use=(0,))  # type: ignore[misc]
    ours, requests = allocate(topo, dra.claim_template(gpus=2, name="c"), in_use=(0,))  # type: ignore[misc]
    assert plain == (1, 2) and topo.path_class(1, 2) == "SYS"
    assert ours == best and requests == {"gpus/set2"}


def test_claims_fall_back_in_order() -> None:
    topo = nvtopo.system("pcie-4x-a100-bridged")
    # Each bridged pair has one GPU in use: no free set2 group and no free island of 2.
    gpus, requests = allocate(topo, dra.claim_template(gpus=2, name="c"), in_use=(0, 2))  # type: ignore[misc]
    assert gpus == (1, 3) and requests == {"gpus/any"}
    # 3 GPUs: no set3 attribute; an island of 3 exists on an NVSwitch node.
    h100 = nvtopo.system("dgx-h100")
    gpus, requests = allocate(h100, dra.claim_template(gpus=3, name="c"))  # type: ignore[misc]
    assert requests == {"gpus/island"} and len(gpus) == 3
    # PCIe-only node: every GPU is its own island, so only "any" can hold 2.
    l40s = nvtopo.system("pcie-8x-l40s")
    _, requests = allocate(l40s, dra.claim_template(gpus=3, name="c"))  # type: ignore[misc]
    assert requests == {"gpus/any"}
    assert allocate(l40s, dra.claim_template(gpus=8, name="c"), in_use=(5,)) is None


def test_one_gpu_claims_take_the_first_free_device() -> None:
    topo = nvtopo.system("dgx-h100")
    gpus, requests = allocate(topo, dra.claim_template(gpus=1, name="c"), in_use=(0,))  # type: ignore[misc]
    assert len(gpus) == 1 and requests == {"gpus"}


# -- the allocator model behaves like the scheduler's -----------------------------------------


def device(name: str, **attrs: Any) -> dict[str, Any]:
    return {"name": name, "attributes": {k: v for k, v in attrs.items()}}


def slice_(
    pool: str,
    devices: list[dict[str, Any]],
    *,
    gen: int = 1,
    count: int = 1,
    name: str = "s",
    node: str = "n1",
    driver: str = DRIVER,
) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "devices": devices,
            "pool": {"name": pool, "generation": gen, "resourceSliceCount": count},
        },
    }


def names(result: list[list[Any]] | None) -> list[str]:
    assert result is not None
    return [r.device.device for r in result[0]]


def test_model_backtracks_past_a_first_device_whose_group_is_not_free() -> None:
    devs = [device(f"d{i}", g={"int": i // 2}) for i in range(6)]
    claim = {
        "devices": {
            "requests": [
                {
                    "name": "r",
                    "exactly": {
                        "deviceClassName": DRIVER,
                        "allocationMode": "ExactCount",
                        "count": 2,
                    },
                }
            ],
            "constraints": [{"matchAttribute": "gpu.nvtopo.dev/g"}],
        }
    }
    alloc = Allocator(
        [slice_("p", devs)],
        dra.device_classes(),
        node="n1",
        allocated=[DeviceId(DRIVER, "p", "d1"), DeviceId(DRIVER, "p", "d2")],
    )
    # d0 first (its partner d1 is taken: backtrack), d3 next (d2 taken), then d4, d5.
    assert names(alloc.allocate([claim])) == ["d4", "d5"]


def test_model_bare_attribute_names_match_in_the_driver_domain_only() -> None:
    devs = [device("a", x={"int": 1}), device("b", x={"int": 1})]
    claim = {
        "devices": {
            "requests": [
                {
                    "name": "r",
                    "exactly": {
                        "deviceClassName": DRIVER,
                        "allocationMode": "ExactCount",
                        "count": 2,
                    },
                }
            ],
            "constraints": [{"matchAttribute": "other.dev/x"}],
        }
    }
    assert Allocator([slice_("p", devs)], dra.device_classes(), node="n1").allocate([claim]) is None
    claim["devices"]["constraints"][0]["matchAttribute"] = f"{DRIVER}/x"
    assert names(
        Allocator([slice_("p", devs)], dra.device_classes(), node="n1").allocate([claim])
    ) == ["a", "b"]


def test_model_uses_only_complete_pools_of_the_newest_generation_on_the_node() -> None:
    classes = dra.device_classes()
    claim = plain_claim(1)
    old = slice_("p", [device("old")], gen=1, name="s-old")
    new = slice_("p", [device("new")], gen=2, name="s-new")
    assert names(Allocator([old, new], classes, node="n1").allocate([claim])) == ["new"]
    half = slice_("q", [device("q0")], count=2)
    assert Allocator([half], classes, node="n1").allocate([claim]) is None
    elsewhere = slice_("p", [device("x")], node="n2")
    assert Allocator([elsewhere], classes, node="n1").allocate([claim]) is None
    other_driver = slice_("p", [device("x")], driver="gpu.example.com")
    assert Allocator([other_driver], classes, node="n1").allocate([claim]) is None


def test_model_allocates_claims_in_order_without_double_booking() -> None:
    topo = nvtopo.system("dgx-h100")
    slices = dra.resource_slices(topo, node="n1")
    claims = [
        dra.claim_template(gpus=4, name="a"),
        dra.claim_template(gpus=2, name="b"),
        dra.claim_template(gpus=2, name="c"),
    ]
    result = Allocator(slices, dra.device_classes(), node="n1").allocate(claims)
    assert result is not None
    taken = [r.device.device for claim in result for r in claim]
    assert len(taken) == len(set(taken)) == 8
    assert [len(c) for c in result] == [4, 2, 2]


def test_model_all_mode_and_unsupported_input() -> None:
    devs = [device("a"), device("b")]
    claim = {
        "devices": {
            "requests": [
                {"name": "r", "exactly": {"deviceClassName": DRIVER, "allocationMode": "All"}}
            ]
        }
    }
    assert names(
        Allocator([slice_("p", devs)], dra.device_classes(), node="n1").allocate([claim])
    ) == ["a", "b"]
    busy = Allocator(
        [slice_("p", devs)], dra.device_classes(), node="n1", allocated=[DeviceId(DRIVER, "p", "a")]
    )
    assert busy.allocate([claim]) is None
    cel = [
        {
            "metadata": {"name": DRIVER},
            "spec": {"selectors": [{"cel": {"expression": "device.attributes['x'].y"}}]},
        }
    ]
    with pytest.raises(UnsupportedError):
        Allocator([slice_("p", devs)], cel, node="n1").allocate([plain_claim(1)])


def test_more_than_32_devices_per_claim_is_never_allocated() -> None:
    topo = NodeTopology(gpus=tuple(Gpu(i) for i in range(40)))
    assert allocate(topo, plain_claim(33)) is None
    got = allocate(topo, plain_claim(32))
    assert got is not None and len(got[0]) == 32
