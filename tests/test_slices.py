"""DRA ResourceSlices: attributes, API limits, pool splitting, partitions, clusters, CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import nvtopo
from nvtopo import dra
from nvtopo.cli import cli, main
from nvtopo.cli.slices import claim, slices
from nvtopo.dra import limits
from nvtopo.dra.attributes import memory_quantity, to_semver
from nvtopo.dra.limits import DraLimitError
from nvtopo.exceptions import TopologyError
from nvtopo.model import Gpu, NodeTopology

NODE_SYSTEMS = [s.name for s in nvtopo.systems() if s.kind == "node"]
ROOT = Path(__file__).resolve().parent.parent
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
T = "topology.nvtopo.dev/"
R = "resource.kubernetes.io/"

# Attribute name -> value kind, as NVIDIA's GPU driver publishes them, plus nvtopo's own.
EXPECTED_KINDS = {
    "type": "string",
    "uuid": "string",
    "productName": "string",
    "brand": "string",
    "architecture": "string",
    "cudaComputeCapability": "version",
    "driverVersion": "version",
    "cudaDriverVersion": "version",
    R + "pcieRoot": "string",
    R + "pciBusID": "string",
    R + "numaNode": "int",
    T + "clique": "string",
    T + "clusterUUID": "string",
    T + "nvlinkIsland": "int",
    T + "nvlinkGeneration": "int",
    T + "nvlinkCount": "int",
    T + "numaKey": "string",
    T + "set2": "int",
    T + "set4": "int",
    T + "set8": "int",
}


def mib(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi|Ti)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": 1, "Gi": 1024, "Ti": 1024**2}[unit]


def devices_of(slices_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for s in slices_ for d in s["spec"]["devices"]]


def assert_within_limits(s: dict[str, Any]) -> None:
    """Every API limit, checked here independently of nvtopo.dra.limits."""
    assert s["apiVersion"] == "resource.k8s.io/v1" and s["kind"] == "ResourceSlice"
    assert len(s["metadata"]["name"]) <= 253 and DNS_SUBDOMAIN.match(s["metadata"]["name"])
    spec = s["spec"]
    assert len(spec["driver"]) <= 63 and DNS_SUBDOMAIN.match(spec["driver"])
    assert spec["pool"]["resourceSliceCount"] >= 1 and spec["pool"]["generation"] >= 0
    assert len(spec["devices"]) <= 128
    for d in spec["devices"]:
        assert len(d["name"]) <= 63 and DNS_LABEL.match(d["name"])
        assert len(d["attributes"]) + len(d.get("capacity", {})) <= 32
        for name, value in [*d["attributes"].items(), *d.get("capacity", {}).items()]:
            domain, _, ident = name.rpartition("/")
            assert C_IDENT.match(ident), name
            assert not domain or (len(domain) <= 63 and DNS_SUBDOMAIN.match(domain)), name
            assert len(value) == 1
        for value in d["attributes"].values():
            ((kind, v),) = value.items()
            if kind in ("string", "version"):
                assert len(v.encode()) <= 64
            if kind == "version":
                assert SEMVER.match(v), v


# -- every catalog system -------------------------------------------------------------------


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_catalog_slices_keep_every_limit_and_carry_the_attributes(name: str) -> None:
    topo = nvtopo.system(name)
    out = dra.resource_slices(topo, node="node-1")
    assert len(out) == 1
    for s in out:
        assert_within_limits(s)
        limits.check_resource_slice(s)
        assert s["spec"]["nodeName"] == "node-1" and s["spec"]["pool"]["name"] == "node-1"
    devices = devices_of(out)
    assert sorted(d["name"] for d in devices) == sorted(f"gpu-{g.minor}" for g in topo.gpus)
    by_name = {f"gpu-{g.minor}": g for g in topo.gpus}
    islands = topo.nvlink_islands()
    for d in devices:
        gpu = by_name[d["name"]]
        attrs = d["attributes"]
        for attr, value in attrs.items():
            assert attr in EXPECTED_KINDS, attr
            assert list(value) == [EXPECTED_KINDS[attr]], (attr, value)
        assert attrs["type"] == {"string": "gpu"}
        assert attrs["uuid"] == {"string": gpu.uuid}
        assert attrs["productName"] == {"string": gpu.name}
        assert attrs["brand"] == {"string": gpu.brand}
        assert attrs["architecture"] == {"string": gpu.architecture}
        assert attrs["cudaComputeCapability"]["version"] == gpu.compute_capability + ".0"
        assert attrs[R + "pciBusID"] == {"string": gpu.pci_bus_id}
        assert attrs[R + "pcieRoot"] == {"string": gpu.pcie_root}
        assert attrs[R + "numaNode"] == {"int": gpu.numa_node}
        assert list(d["capacity"]) == ["memory"]
        assert mib(d["capacity"]["memory"]["value"]) == gpu.memory_mib
        assert attrs[T + "numaKey"] == {"string": gpu.numa_key}
        island = attrs[T + "nvlinkIsland"]["int"]
        assert gpu.index in islands[island]
        assert attrs[T + "nvlinkCount"] == {"int": sum(x.state == "up" for x in gpu.nvlinks)}
        if gpu.nvlink_generation is not None:
            assert attrs[T + "nvlinkGeneration"] == {"int": gpu.nvlink_generation}
        # The catalog knows no live driver, so no driver version is made up.
        assert "driverVersion" not in attrs and "cudaDriverVersion" not in attrs
        clique = topo.clique
        assert attrs.get(T + "clique") == ({"string": clique} if clique else None)


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_set_attributes_are_the_core_partition(name: str) -> None:
    topo = nvtopo.system(name)
    devices = devices_of(dra.resource_slices(topo, node="n"))
    index_of = {f"gpu-{g.minor}": g.index for g in topo.gpus}
    n = len(topo.gpus)
    for k in (2, 4, 8):
        published: dict[int, list[int]] = {}
        for d in devices:
            v = d["attributes"].get(f"{T}set{k}")
            if v is not None:
                published.setdefault(v["int"], []).append(index_of[d["name"]])
        if k >= n:
            assert published == {}, f"set{k} on a {n}-GPU node"
            continue
        expected = nvtopo.partition(topo, k)
        assert tuple(tuple(sorted(published[i])) for i in range(len(published))) == expected


def test_gpus_outside_a_full_group_get_no_set_attribute() -> None:
    topo = nvtopo.system("dgx2-v100")  # 16 GPUs: set8 gives 2 groups, every GPU in one
    gpus = topo.gpus[:6]
    six = NodeTopology(gpus=gpus, pairs=tuple(p for p in topo.pairs if p.b < 6))
    devices = devices_of(dra.resource_slices(six, node="n"))
    with_set4 = [d for d in devices if T + "set4" in d["attributes"]]
    assert len(with_set4) == 4  # 6 = one group of 4 + 2 left over
    assert all(T + "set8" not in d["attributes"] for d in devices)  # 8 >= 6 GPUs
    assert sum(T + "set2" in d["attributes"] for d in devices) == 6


def test_versions_are_normalised_to_semver() -> None:
    topo = dataclasses.replace(
        nvtopo.system("hgx-h200"), driver_version="535.104.05", cuda_version="12.2"
    )
    attrs = devices_of(dra.resource_slices(topo, node="n"))[0]["attributes"]
    assert attrs["driverVersion"] == {"version": "535.104.5"}
    assert attrs["cudaDriverVersion"] == {"version": "12.2.0"}
    assert to_semver("v9") == "9.0.0" and to_semver("9.0-rc1") == "9.0-rc1"
    assert memory_quantity(1024 * 1024) == "1Ti" and memory_quantity(1536) == "1536Mi"


def test_unknown_values_are_left_out() -> None:
    topo = NodeTopology(gpus=(Gpu(0), Gpu(1)))
    [d0, _] = devices_of(dra.resource_slices(topo, node="bare"))
    assert d0["name"] == "gpu-0" and "capacity" not in d0
    assert set(d0["attributes"]) == {"type", T + "nvlinkIsland", T + "nvlinkCount"}


def test_gpu_minor_names_the_device() -> None:
    topo = NodeTopology(gpus=(Gpu(0, minor=3), Gpu(1, minor=1)))
    names = sorted(d["name"] for d in devices_of(dra.resource_slices(topo, node="n")))
    assert names == ["gpu-1", "gpu-3"]


# -- pools over several slices ----------------------------------------------------------------


def test_a_300_gpu_node_splits_into_three_slices_of_one_pool() -> None:
    topo = NodeTopology(gpus=tuple(Gpu(i, uuid=f"GPU-{i:04d}") for i in range(300)))
    out = dra.resource_slices(topo, node="big-node", generation=7)
    assert [len(s["spec"]["devices"]) for s in out] == [128, 128, 44]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in out} == {3}
    assert {s["spec"]["pool"]["name"] for s in out} == {"big-node"}
    assert {s["spec"]["pool"]["generation"] for s in out} == {7}
    assert [s["metadata"]["name"] for s in out] == [
        f"big-node-gpu-nvtopo-dev-{i}" for i in range(3)
    ]
    names = [d["name"] for d in devices_of(out)]
    assert len(set(names)) == 300
    for s in out:
        assert_within_limits(s)
    # Past the core's 128-GPU limit no partition is published.
    assert not any(k.startswith(T + "set") for d in devices_of(out) for k in d["attributes"])


def test_max_devices_per_slice_is_a_parameter_within_the_api_limit() -> None:
    topo = nvtopo.system("dgx2-v100")
    out = dra.resource_slices(topo, node="n", max_devices_per_slice=64)
    assert len(out) == 1
    out = dra.resource_slices(topo, node="n", max_devices_per_slice=5)
    assert [len(s["spec"]["devices"]) for s in out] == [5, 5, 5, 1]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in out} == {4}
    with pytest.raises(DraLimitError, match=r"outside 1\.\.128"):
        dra.resource_slices(topo, node="n", max_devices_per_slice=129)


def test_a_node_without_gpus_publishes_an_empty_pool() -> None:
    [s] = dra.resource_slices(NodeTopology(gpus=()), node="cpu-only")
    assert s["spec"]["devices"] == [] and s["spec"]["pool"]["resourceSliceCount"] == 1


def test_slice_names_are_deterministic_and_dns_safe() -> None:
    long_node = ".".join(["a" * 60] * 4)  # 243 characters, a valid node name
    names = [dra.slice_name(long_node, "gpu.nvtopo.dev", i) for i in range(3)]
    assert len(set(names)) == 3
    for n in names:
        assert len(n) <= 253 and DNS_SUBDOMAIN.match(n)
    assert names == [dra.slice_name(long_node, "gpu.nvtopo.dev", i) for i in range(3)]
    topo = nvtopo.system("gb200-tray")
    out = dra.resource_slices(topo, node=long_node, max_devices_per_slice=2)
    for s in out:
        assert_within_limits(s)


# -- limits refused with one line -------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert isinstance(exc.value, TopologyError)
    return msg


def test_an_over_long_string_is_refused_naming_device_attribute_and_limit() -> None:
    topo = nvtopo.system("dgx-h100")
    gpus = list(topo.gpus)
    gpus[3] = dataclasses.replace(gpus[3], name="NVIDIA " + "H" * 70)
    with pytest.raises(DraLimitError) as exc:
        dra.resource_slices(topo.replace_gpus(gpus), node="n")
    msg = one_line(exc)
    assert "device gpu-3" in msg and "attribute productName" in msg and "limit of 64" in msg


def test_a_value_of_exactly_64_bytes_passes() -> None:
    topo = nvtopo.system("gb200-tray")
    gpus = [dataclasses.replace(topo.gpus[0], name="x" * 64), *topo.gpus[1:]]
    dra.resource_slices(topo.replace_gpus(gpus), node="n")


def test_a_bad_version_is_refused() -> None:
    topo = dataclasses.replace(nvtopo.system("hgx-b200"), driver_version="r570 beta")
    with pytest.raises(DraLimitError) as exc:
        dra.resource_slices(topo, node="n")
    msg = one_line(exc)
    assert "attribute driverVersion" in msg and "semver" in msg


def test_too_many_attributes_are_refused() -> None:
    device = {
        "name": "gpu-0",
        "attributes": {f"a{i}": {"int": i} for i in range(32)},
        "capacity": {"memory": {"value": "1Gi"}},
    }
    with pytest.raises(DraLimitError) as exc:
        limits.check_device(device, where="ResourceSlice s")
    msg = one_line(exc)
    assert "device gpu-0" in msg and "33" in msg and "limit of 32" in msg
    del device["capacity"]
    limits.check_device(device, where="ResourceSlice s")


def test_too_many_devices_in_a_slice_are_refused() -> None:
    [s] = dra.resource_slices(nvtopo.system("dgx-h100"), node="n")
    dev = s["spec"]["devices"][0]
    s["spec"]["devices"] = [{**dev, "name": f"gpu-{i}"} for i in range(129)]
    with pytest.raises(DraLimitError, match="129 devices, more than the API limit of 128"):
        limits.check_resource_slice(s)
    s["spec"]["devices"] = s["spec"]["devices"][:65]
    limits.check_resource_slice(s)
    s["spec"]["devices"][0]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    with pytest.raises(DraLimitError, match="65 devices, more than the API limit of 64"):
        limits.check_resource_slice(s)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("topology.nvtopo.dev/set-4", "not a C identifier"),
        ("4set", "not a C identifier"),
        ("x/" + "a" * 33, "more than the API limit of 32"),
        ("d" * 64 + "/a", "more than the API limit of 63"),
        ("Topology.nvtopo.dev/a", "not a DNS subdomain"),
        ("a/b/c", "more than one '/'"),
        ("/a", "domain before '/' is empty"),
        ("", "name is empty"),
    ],
)
def test_bad_attribute_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(DraLimitError) as exc:
        limits.check_qualified_name(name, where="device gpu-0")
    assert reason in one_line(exc)


def test_good_attribute_names_pass() -> None:
    for name in ("type", "_x1", "resource.kubernetes.io/pcieRoot", "a" * 32, "d" * 63 + "/x"):
        limits.check_qualified_name(name, where="here")


@pytest.mark.parametrize(
    "value",
    [
        {"string": 1},
        {"int": True},
        {"int": 2**63},
        {"bool": 1},
        {"version": "1.02.3"},
        {"version": "1.2"},
        {"float": 1.0},
        {"string": "a", "int": 1},
        {},
    ],
)
def test_bad_attribute_values_are_refused(value: dict[str, Any]) -> None:
    with pytest.raises(DraLimitError) as exc:
        limits.check_attribute_value(value, where="device gpu-0, attribute a")
    assert one_line(exc).startswith("device gpu-0, attribute a: ")


def test_names_the_api_refuses_are_refused() -> None:
    topo = nvtopo.system("gb200-tray")
    with pytest.raises(DraLimitError, match="node name 'Node_1' is not a DNS subdomain"):
        dra.resource_slices(topo, node="Node_1")
    with pytest.raises(DraLimitError, match="driver name"):
        dra.resource_slices(topo, node="n", driver="gpu_nvtopo")
    with pytest.raises(DraLimitError, match="more than the API limit of 63"):
        dra.resource_slices(topo, node="n", driver="a" * 64)
    with pytest.raises(DraLimitError, match="is not a DNS label"):
        limits.check_device_name("GPU-0", where="s")
    with pytest.raises(DraLimitError, match="generation"):
        dra.resource_slices(topo, node="n", generation=-1)
    with pytest.raises(DraLimitError, match="capacity"):
        limits.check_capacity_value({"value": "lots"}, where="s")


def test_duplicate_device_names_in_a_pool_are_refused() -> None:
    topo = NodeTopology(gpus=(Gpu(0, minor=5), Gpu(1, minor=5)))
    with pytest.raises(DraLimitError, match="'gpu-5' appears twice"):
        dra.resource_slices(topo, node="n")


# -- clusters ---------------------------------------------------------------------------------


def test_cluster_slices_give_one_pool_per_node_with_its_clique() -> None:
    c = nvtopo.cluster("gb200-nvl72x2")
    out = dra.cluster_resource_slices(c)
    pools = {s["spec"]["pool"]["name"] for s in out}
    assert len(pools) == 36 and pools == {n.name for n in c.nodes}
    cliques = set()
    for s, n in zip(out, c.nodes, strict=True):
        assert_within_limits(s)
        limits.check_resource_slice(s)
        assert s["spec"]["nodeName"] == n.name
        for d in s["spec"]["devices"]:
            assert d["attributes"][T + "clique"] == {"string": n.domain}
            cliques.add(n.domain)
    assert len(cliques) == 2
    # Same result as building each node on its own, and no object shared between nodes.
    alone = dra.resource_slices(c.nodes[5].topology, node=c.nodes[5].name)
    assert out[5:6] == alone
    assert out[0]["spec"]["devices"][0] is not out[1]["spec"]["devices"][0]
    assert (
        out[0]["spec"]["devices"][0]["attributes"] is not out[1]["spec"]["devices"][0]["attributes"]
    )


def test_a_declared_clique_is_published_and_an_unhealthy_node_gets_none() -> None:
    uuid = "11111111-2222-3333-4444-555555555555"
    plain = nvtopo.system("dgx-h100")  # no fabric info: the declared clique counts
    tray = nvtopo.system("gb200-tray")
    sick = tray.replace_gpus(
        dataclasses.replace(g, fabric=dataclasses.replace(g.fabric, health="unhealthy"))
        for g in tray.gpus
    )
    c = nvtopo.Cluster(
        (
            nvtopo.ClusterNode("a", plain, clique=f"{uuid}.7"),
            nvtopo.ClusterNode("b", plain),
            nvtopo.ClusterNode("c", sick, clique=f"{uuid}.7"),
        )
    )
    a, b, sick_slice = dra.cluster_resource_slices(c)
    attrs_a = a["spec"]["devices"][0]["attributes"]
    assert attrs_a[T + "clique"] == {"string": f"{uuid}.7"}
    assert attrs_a[T + "clusterUUID"] == {"string": uuid}
    assert T + "clique" not in b["spec"]["devices"][0]["attributes"]
    assert T + "clique" not in sick_slice["spec"]["devices"][0]["attributes"]
    assert tray.clique is not None and sick.clique is None


# -- DeviceClasses and the deploy manifest ---------------------------------------------------


def test_deploy_deviceclasses_yaml_is_generated_from_the_code() -> None:
    shipped = (ROOT / "deploy" / "deviceclasses.yaml").read_text()
    assert shipped == dra.device_classes_yaml()
    [doc] = list(yaml.safe_load_all(shipped))
    assert doc == dra.device_classes()[0]
    assert doc["spec"]["selectors"][0]["cel"]["expression"] == 'device.driver == "gpu.nvtopo.dev"'
    [other] = dra.device_classes("gpu.example.com")
    assert other["metadata"]["name"] == "gpu.example.com"


# -- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    # The commands live in nvtopo.cli.slices; make sure the group has them for these tests.
    monkeypatch.setitem(cli.commands, "slices", slices)
    monkeypatch.setitem(cli.commands, "claim", claim)

    def _run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def test_cli_slices_of_a_catalog_node(run: Any) -> None:
    code, out, err = run(
        "slices", "--source", "system:dgx-h100", "--node", "gpu-1", "--format", "json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "List"
    assert doc["items"] == dra.resource_slices(nvtopo.system("dgx-h100"), node="gpu-1")


def test_cli_slices_of_a_cluster_every_node_or_one(run: Any, tmp_path: Path) -> None:
    code, out, err = run("slices", "--source", "system:gb200-nvl72x2", "--format", "yaml")
    assert code == 0, err
    items = yaml.safe_load(out)["items"]
    assert len(items) == 36 and "&id" not in out
    code, out, err = run(
        "slices",
        "--source",
        "system:gb200-nvl72x2",
        "--node",
        items[3]["spec"]["nodeName"],
        "--driver",
        "gpu.example.com",
        "--format",
        "json",
    )
    assert code == 0, err
    [one] = json.loads(out)["items"]
    assert one["spec"]["driver"] == "gpu.example.com"
    assert one["spec"]["nodeName"] == items[3]["spec"]["nodeName"]


def test_cli_slices_errors_are_one_line(run: Any) -> None:
    code, out, err = run("slices", "--source", "system:dgx-h100", "--node", "Bad_Name")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "not a DNS subdomain" in err and "Traceback" not in err
    code, _, err = run("slices", "--source", "system:gb200-nvl72x2", "--node", "nope")
    assert code == 1 and "no node 'nope'" in err


def test_cli_claim(run: Any) -> None:
    code, out, err = run("claim", "--gpus", "4", "--name", "four", "--namespace", "ml")
    assert code == 0, err
    assert yaml.safe_load(out) == dra.claim_template(gpus=4, name="four", namespace="ml")
    code, out, err = run("claim", "--gpus", "2", "--name", "two", "--format", "json")
    assert code == 0 and json.loads(out)["kind"] == "ResourceClaimTemplate"
    code, out, err = run("claim", "--gpus", "40", "--name", "too-many")
    assert code == 1 and err.count("\n") == 1 and "outside 1..32" in err


def test_gb200_numa_node_is_the_grace_cpu_not_the_gpu_memory_node() -> None:
    """resource.kubernetes.io/numaNode is the PCI device's node, as sysfs gives it."""
    [s] = dra.resource_slices(nvtopo.system("gb200-tray"), node="tray0")
    nodes = [d["attributes"][R + "numaNode"]["int"] for d in s["spec"]["devices"]]
    assert sorted(nodes) == [0, 0, 1, 1]
