"""The embedded system catalog: facts of each machine, invariants, racks, errors, degrading."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

import nvtopo
from nvtopo import catalog
from nvtopo.catalog import cluster, load_system, system, systems, with_lost_nvlinks
from nvtopo.catalog._systems import _gb200
from nvtopo.exceptions import NvtopoError, TopologyError, UnknownSystemError
from nvtopo.formats.jsonio import node_to_json
from nvtopo.model import ZERO_CLUSTER_UUID, NodeTopology
from nvtopo.model.cluster import Cluster

DATA = Path(__file__).parent / "data"
NODE_SYSTEMS = [s.name for s in systems() if s.kind == "node"]
UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BUS_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def expand(cpulist: str) -> list[int]:
    out: list[int] = []
    for part in cpulist.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def matrix(t: NodeTopology) -> list[list[str]]:
    return [[t.path_class(a, b) for b in t.gpu_indices] for a in t.gpu_indices]


# -- invariants every catalog topology keeps ------------------------------------------------


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_pairs_complete_and_classed(name: str) -> None:
    t = system(name)
    want = set(itertools.combinations(t.gpu_indices, 2))
    assert [(p.a, p.b) for p in t.pairs] == sorted(want)
    for p in t.pairs:
        assert p.pcie in ("PIX", "PXB", "PHB", "NODE", "SYS"), (p.a, p.b)
        assert p.nvlinks_down == 0
    m = matrix(t)
    assert all(m[i][j] == m[j][i] for i in range(len(m)) for j in range(len(m)))


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_gpu_fields_filled(name: str) -> None:
    t = system(name)
    assert t.system == name and t.driver_version is None
    uuids = [g.uuid for g in t.gpus]
    buses = [g.pci_bus_id for g in t.gpus]
    assert len(set(uuids)) == len(uuids) and all(u and UUID_RE.match(u) for u in uuids)
    assert len(set(buses)) == len(buses) and all(b and BUS_RE.match(b) for b in buses)
    for g in t.gpus:
        assert g.name and g.brand and g.architecture and g.compute_capability
        assert g.memory_mib and g.memory_mib > 10_000
        assert g.pcie_root and re.match(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$", g.pcie_root)
        assert g.numa_node is not None and g.numa_affinity and g.minor == g.index
        # CPU affinity is the CPU list of the NUMA node the GPU is near.
        assert g.cpu_affinity in t.numa_cpus.values()
        assert g.cpu_affinity == t.numa_cpus[g.numa_affinity[0]]


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_nvlink_records_agree_with_pairs(name: str) -> None:
    t = system(name)
    for g in t.gpus:
        assert [nv.link for nv in g.nvlinks] == list(range(len(g.nvlinks)))
        assert all(nv.state == "up" and nv.version == g.nvlink_generation for nv in g.nvlinks)
    for p in t.pairs:
        a, b = t.gpu(p.a), t.gpu(p.b)
        direct = sum(1 for nv in a.nvlinks if nv.remote_gpu == p.b)
        assert direct == sum(1 for nv in b.nvlinks if nv.remote_gpu == p.a)
        if p.via_nvswitch:
            assert direct == 0 and p.nvlinks == min(len(a.nvlinks), len(b.nvlinks))
        else:
            assert p.nvlinks == direct
    # Every link to a switch is counted in that switch's record, and nowhere else.
    by_switch = {sw.pci_bus_id: dict(sw.gpu_links) for sw in t.nvswitches if sw.pci_bus_id}
    for g in t.gpus:
        to_switch = [nv for nv in g.nvlinks if nv.remote_type == "nvswitch"]
        assert len(to_switch) == sum(dict(sw.gpu_links).get(g.index, 0) for sw in t.nvswitches)
        for bus, links in by_switch.items():
            assert sum(1 for nv in to_switch if nv.remote_pci_bus_id == bus) == links.get(
                g.index, 0
            )


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_nics_sized_and_named(name: str) -> None:
    t = system(name)
    assert t.nics
    assert [n.name for n in t.nics] == [f"NIC{k}" for k in range(len(t.nics))]
    assert [n.device for n in t.nics] == [f"mlx5_{k}" for k in range(len(t.nics))]
    for n in t.nics:
        assert len(n.gpu_paths) == len(t.gpus)
        assert n.numa_node in t.numa_cpus
        assert n.pci_bus_id and BUS_RE.match(n.pci_bus_id)


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_deterministic_and_json_round_trip(name: str) -> None:
    entry = catalog._NODES[name]
    first = entry.build()
    # Rack trays are cached per rack; build the second one from scratch.
    _gb200.rack_tray.cache_clear()
    _gb200._tray_template.cache_clear()
    second = entry.build()
    assert first == second and first is not second
    assert first.numa_cpus == second.numa_cpus
    back = NodeTopology.from_json(node_to_json(first))
    assert back == first


# -- facts of each machine -------------------------------------------------------------------


def test_dgx1_hybrid_cube_mesh() -> None:
    t = system("dgx1-v100")
    # The NVLink block of the real `nvidia-smi topo -m` of a DGX-1 with V100.
    assert matrix(t) == [
        ["X", "NV1", "NV1", "NV2", "NV2", "SYS", "SYS", "SYS"],
        ["NV1", "X", "NV2", "NV1", "SYS", "NV2", "SYS", "SYS"],
        ["NV1", "NV2", "X", "NV2", "SYS", "SYS", "NV1", "SYS"],
        ["NV2", "NV1", "NV2", "X", "SYS", "SYS", "SYS", "NV1"],
        ["NV2", "SYS", "SYS", "SYS", "X", "NV1", "NV1", "NV2"],
        ["SYS", "NV2", "SYS", "SYS", "NV1", "X", "NV2", "NV1"],
        ["SYS", "SYS", "NV1", "SYS", "NV1", "NV2", "X", "NV2"],
        ["SYS", "SYS", "SYS", "NV1", "NV2", "NV1", "NV2", "X"],
    ]
    assert all(len(g.nvlinks) == 6 for g in t.gpus)
    assert t.pair(0, 1).pcie == "PIX" and t.pair(0, 2).pcie == "PHB"
    assert t.pair(0, 4).pcie == "SYS" and t.pair(0, 4).nvlinks == 2
    assert len(t.nics) == 4 and not t.nvswitches
    assert t.nics[0].gpu_paths == ("PIX", "PIX", "PHB", "PHB", "SYS", "SYS", "SYS", "SYS")
    assert {g.cpu_affinity for g in t.gpus[:4]} == {"0-19,40-59"}
    assert t.nvlink_islands() == (tuple(range(8)),)
    assert t.pair_bandwidth(0, 3) == 50


def test_dgx2_sixteen_gpus_on_twelve_switches() -> None:
    t = system("dgx2-v100")
    assert len(t.gpus) == 16 and len(t.nvswitches) == 12 and len(t.nics) == 8
    assert {p.path_class for p in t.pairs} == {"NV6"}
    assert all(p.via_nvswitch for p in t.pairs)
    assert [t.pair(0, b).pcie for b in (1, 2, 4, 8)] == ["PIX", "PXB", "NODE", "SYS"]
    assert {g.numa_node for g in t.gpus[:8]} == {0} and {g.numa_node for g in t.gpus[8:]} == {1}
    assert t.nics[0].gpu_paths[:4] == ("PIX", "PIX", "PXB", "PXB")
    # Each board's six switches carry one link of each of its eight GPUs.
    assert all(len(sw.gpu_links) == 8 and {n for _, n in sw.gpu_links} == {1}
               for sw in t.nvswitches)  # fmt: skip


def test_dgx_a100_nps4_layout() -> None:
    t = system("dgx-a100")
    assert {p.path_class for p in t.pairs} == {"NV12"}
    assert len(t.nvswitches) == 6 and len(t.nics) == 12
    assert [g.numa_node for g in t.gpus] == [3, 3, 1, 1, 7, 7, 5, 5]
    assert t.gpu(0).cpu_affinity == "48-63,176-191"
    assert t.gpu(4).cpu_affinity == "112-127,240-255"
    assert len(set(t.numa_keys)) == 4
    assert t.pair(0, 1).pcie == "PXB" and t.pair(0, 2).pcie == "SYS"
    paths = {n.device: n.gpu_paths for n in t.nics}
    assert paths["mlx5_0"] == ("PXB", "PXB", *["SYS"] * 6)
    assert paths["mlx5_8"] == (*["SYS"] * 6, "PXB", "PXB")
    for storage in ("mlx5_4", "mlx5_5", "mlx5_10", "mlx5_11"):
        assert set(paths[storage]) == {"SYS"}
    assert len(t.numa_cpus) == 8


def test_dgx_h100_layout() -> None:
    t = system("dgx-h100")
    assert {p.path_class for p in t.pairs} == {"NV18"}
    assert [g.numa_node for g in t.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [sorted({n for _, n in sw.gpu_links}) for sw in t.nvswitches] == [[4], [5], [5], [4]]
    assert all(g.nvlink_generation == 4 for g in t.gpus)
    assert len(t.nics) == 12
    pix = [n.device for n in t.nics if "PIX" in n.gpu_paths]
    assert pix == ["mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10",
                   "mlx5_11"]  # fmt: skip
    for gpu in range(8):
        assert sum(1 for n in t.nics if n.gpu_paths[gpu] == "PIX") == 1
    assert t.pair(0, 1).pcie == "NODE" and t.pair(3, 4).pcie == "SYS"
    assert t.pair_bandwidth(0, 7) == 18 * 25


def test_hgx_h200_and_b200() -> None:
    h200, b200 = system("hgx-h200"), system("hgx-b200")
    assert h200.gpu(0).memory_mib == 143771 and h200.gpu(0).nvlink_generation == 4
    assert len(h200.nvswitches) == 4 and len(h200.nics) == 10
    assert len(b200.nvswitches) == 2
    assert [dict(sw.gpu_links) for sw in b200.nvswitches] == [dict.fromkeys(range(8), 9)] * 2
    assert {p.path_class for p in b200.pairs} == {"NV18"}
    assert b200.gpu(0).architecture == "Blackwell" and b200.gpu(0).compute_capability == "10.0"
    assert b200.pair_bandwidth(1, 6) == 18 * 50
    # A Blackwell node outside a multi-node domain: fabric Completed, zero cluster UUID.
    fab = b200.gpu(0).fabric
    assert fab is not None and fab.state == "completed"
    assert fab.cluster_uuid == ZERO_CLUSTER_UUID and b200.clique is None


def test_gb200_tray_matches_the_real_tray() -> None:
    t = system("gb200-tray")
    rows = [
        line.split()
        for line in (DATA / "gb200-tray-topo-m.txt").read_text().splitlines()
        if line.startswith("GPU")
    ]
    assert len(rows) == len(t.gpus) == 4
    for i, row in enumerate(rows):
        g = t.gpu(i)
        assert row[1:5] == matrix(t)[i]
        assert g.cpu_affinity == row[5]
        assert list(g.numa_affinity) == expand(row[6])
        assert g.gpu_numa_id == int(row[7])  # the GPU NUMA ID column: its memory node
        assert g.numa_node == i // 2  # the PCI device's node: the Grace CPU it hangs off
    assert len(t.nics) == 8 and all(set(n.gpu_paths) == {"SYS"} for n in t.nics)
    assert len(t.nvswitches) == 18 and all(nv.remote_type == "nvswitch" for nv in t.gpu(0).nvlinks)
    assert sorted(t.numa_cpus) == [0, 1]
    assert [g.platform.module_id for g in t.gpus if g.platform] == [2, 1, 4, 3]
    assert t.clique is not None and t.clique.endswith(".32766")


def test_gb300_tray() -> None:
    t = system("gb300-tray")
    g = t.gpu(0)
    assert g.name == "NVIDIA GB300" and g.compute_capability == "10.3"
    assert g.memory_mib == 284208 and g.pci_bus_id == "0008:06:00.0"
    assert t.clique is not None and t.clique != system("gb200-tray").clique


def test_pcie_4x_a100_bridged() -> None:
    t = system("pcie-4x-a100-bridged")
    assert t.nvlink_islands() == ((0, 1), (2, 3))
    assert matrix(t)[0] == ["X", "NV12", "SYS", "SYS"]
    assert t.pair(0, 1).pcie == "NODE" and not t.pair(0, 1).via_nvswitch
    assert all(nv.remote_type == "gpu" and nv.remote_gpu == 1 for nv in t.gpu(0).nvlinks)
    assert not t.nvswitches and len(t.nics) == 2
    assert [g.numa_node for g in t.gpus] == [0, 0, 1, 1]


def test_pcie_8x_l40s() -> None:
    t = system("pcie-8x-l40s")
    assert t.nvlink_islands() == tuple((i,) for i in range(8))
    assert all(not g.nvlinks and g.nvlink_generation is None for g in t.gpus)
    assert matrix(t)[0] == ["X", "PIX", "NODE", "NODE", "SYS", "SYS", "SYS", "SYS"]
    assert matrix(t)[6] == ["SYS", "SYS", "SYS", "SYS", "NODE", "NODE", "X", "PIX"]
    assert [n.gpu_paths.count("PIX") for n in t.nics] == [2, 2, 2, 2]
    assert t.nics[0].gpu_paths[:2] == ("PIX", "PIX")
    assert t.gpu(0).mig_mode is None and t.gpu(0).architecture == "Ada Lovelace"


# -- racks -----------------------------------------------------------------------------------


def test_four_racks() -> None:
    c = cluster("gb200-nvl72x4")
    assert isinstance(c, Cluster) and c.name == "gb200-nvl72x4"
    assert len(c.nodes) == 72 and c.gpu_count == 288
    names = [n.name for n in c.nodes]
    assert names == sorted(names) and len(set(names)) == 72
    assert all(DNS_LABEL_RE.match(n) for n in names)
    assert names[0] == "rack0000-tray00" and names[19] == "rack0001-tray01"
    assert len(c.cliques) == 4
    assert all(len(members) == 18 for members in c.cliques.values())
    uuids = {clique.split(".")[0] for clique in c.cliques}
    assert len(uuids) == 4 and ZERO_CLUSTER_UUID not in uuids
    for r in range(4):
        rack = c.nodes[18 * r : 18 * (r + 1)]
        # Trays share the rack's pairs, switches and NICs; each has GPU UUIDs of its own.
        assert len({id(n.topology.pairs) for n in rack}) == 1
        assert len({id(n.topology) for n in rack}) == 18
        assert {n.domain for n in rack} == {rack[0].topology.clique}
        assert c.cliques[rack[0].domain or ""] == tuple(n.name for n in rack)


def test_rack_uuids_derive_from_the_rack_number() -> None:
    one, four = cluster("gb200-nvl72"), cluster("gb200-nvl72x4")
    assert len(one.nodes) == 18 and len(one.cliques) == 1 and one.name == "gb200-nvl72"
    assert one.nodes[0].clique == four.nodes[0].clique == system("gb200-tray").clique
    assert four.nodes[18].clique != one.nodes[0].clique
    assert cluster("GB200-NVL72x4") is four
    gb300 = cluster("gb300-nvl72x2")
    assert gb300.nodes[0].topology.gpu(0).name == "NVIDIA GB300"
    assert not set(gb300.cliques) & set(four.cliques)


def test_thousand_racks_share_one_core_topology_and_have_unique_gpu_uuids() -> None:
    c = cluster("gb200-nvl72x1024")
    assert len(c.nodes) == 18_432 and c.gpu_count == 73_728
    assert len({id(n.topology.pairs) for n in c.nodes}) == 1
    assert c.nodes[-1].name == "rack1023-tray17"
    assert len({n.clique for n in c.nodes}) == 1024
    uuids = [g.uuid for n in c.nodes for g in n.topology.gpus]
    assert len(set(uuids)) == len(uuids) == 73_728
    assert nvtopo.ClusterState(c).topology_count == 1


def test_tray_gpu_uuids_are_deterministic_and_name_their_tray() -> None:
    first, again = cluster("gb200-nvl72x2"), cluster("gb300-nvl72x2")
    tray = first.nodes[5].topology
    assert [g.platform.tray for g in tray.gpus if g.platform] == [5] * 4
    assert _gb200.tray("gb200-nvl72", 0, 5).gpus == tray.gpus
    assert not {g.uuid for n in first for g in n.topology.gpus} & {
        g.uuid for n in again for g in n.topology.gpus
    }


def test_single_node_system_as_cluster() -> None:
    c = cluster("dgx-h100")
    assert len(c.nodes) == 1 and c.nodes[0].name == "dgx-h100"
    assert c.nodes[0].topology is system("dgx-h100") and c.cliques == {}
    tray = cluster("gb200-tray")
    assert list(tray.cliques.values()) == [("gb200-tray",)]


def test_load_system() -> None:
    assert isinstance(load_system("pcie-8x-l40s"), NodeTopology)
    assert isinstance(load_system("gb300-nvl72"), Cluster)
    assert len(load_system("gb200-nvl72x2")) == 36  # type: ignore[arg-type]


# -- errors ------------------------------------------------------------------------------------


def test_unknown_system_names_close_matches() -> None:
    with pytest.raises(UnknownSystemError) as exc:
        system("dgx-h10")
    msg = str(exc.value)
    assert "\n" not in msg and "'dgx-h10'" in msg
    assert "dgx-h100" in msg and "nvtopo systems" in msg
    assert isinstance(exc.value, NvtopoError) and isinstance(exc.value, KeyError)
    with pytest.raises(UnknownSystemError, match="gb200-nvl72"):
        cluster("gb200-nvl27")
    with pytest.raises(UnknownSystemError) as none_close:
        system("zzzzzz")
    assert "did you mean" not in str(none_close.value)
    with pytest.raises(UnknownSystemError):
        system(7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "nodes", "use"),
    [("gb200-nvl72", 18, "gb200-nvl72"), ("GB300-NVL72x4", 72, "gb300-nvl72x4")],
)
def test_cluster_name_given_to_system(name: str, nodes: int, use: str) -> None:
    with pytest.raises(TopologyError) as exc:
        system(name)
    assert str(exc.value) == (f"{use} is a cluster of {nodes} nodes; use nvtopo.cluster({use!r})")


@pytest.mark.parametrize("name", ["gb200-nvl72x0", f"gb200-nvl72x{catalog.MAX_RACKS + 1}"])
def test_rack_count_out_of_range(name: str) -> None:
    with pytest.raises(TopologyError, match="rack count must be 1 to"):
        cluster(name)


# -- degraded variants ---------------------------------------------------------------------------


def test_b200_gpu2_lost_its_nvlinks() -> None:
    base = system("hgx-b200")
    t = with_lost_nvlinks(base, [2])
    for p in t.pairs:
        before = base.pair(p.a, p.b)
        assert p.pcie == before.pcie
        if 2 in (p.a, p.b):
            assert (p.nvlinks, p.nvlinks_down) == (0, 18)
            assert p.path_class == p.pcie
        else:
            assert p == before
    assert all(nv.state == "down" for nv in t.gpu(2).nvlinks)
    assert all(nv.state == "up" for g in t.gpus if g.index != 2 for nv in g.nvlinks)
    assert t.nvlink_islands() == ((0, 1, 3, 4, 5, 6, 7), (2,))
    assert t.gpu(2).degraded_links == t.gpu(2).nvlinks
    # The catalog's own copy is untouched, and the keyword form gives the same result.
    assert base.path_class(2, 3) == "NV18"
    assert system("hgx-b200", degraded_gpus=(2,)) == t


def test_direct_links_go_down_on_both_ends() -> None:
    t = with_lost_nvlinks(system("dgx1-v100"), [0])
    assert [t.path_class(0, b) for b in range(1, 5)] == ["PIX", "PHB", "PHB", "SYS"]
    assert t.pair(0, 3).nvlinks_down == 2 and t.pair(1, 2).path_class == "NV2"
    states = [nv.state for nv in t.gpu(3).nvlinks if nv.remote_gpu == 0]
    assert states == ["down", "down"]
    assert all(nv.state == "up" for nv in t.gpu(3).nvlinks if nv.remote_gpu != 0)


def test_lost_nvlinks_bad_gpu() -> None:
    base = system("pcie-4x-a100-bridged")
    assert with_lost_nvlinks(base, []) is base
    with pytest.raises(TopologyError) as exc:
        with_lost_nvlinks(base, [1, 9])
    assert "GPU 9" in str(exc.value) and "\n" not in str(exc.value)


# -- the catalog listing --------------------------------------------------------------------------


def test_systems_listing() -> None:
    infos = systems()
    names = [i.name for i in infos]
    assert len(set(names)) == len(names)
    for wanted in ("dgx1-v100", "dgx2-v100", "dgx-a100", "dgx-h100", "hgx-h200", "hgx-b200",
                   "gb200-tray", "gb200-nvl72", "gb200-nvl72x<N>", "gb300-nvl72",
                   "pcie-4x-a100-bridged", "pcie-8x-l40s"):  # fmt: skip
        assert wanted in names
    for info in infos:
        if info.kind == "node":
            t = system(info.name)
            assert info.nodes == 1 and len(t.gpus) == info.gpus_per_node
            assert t.gpu(0).name == info.gpu
        elif info.nodes is None:
            assert info.name.endswith("x<N>")
        else:
            c = cluster(info.name)
            assert len(c.nodes) == info.nodes
            assert {len(n.topology.gpus) for n in c.nodes} == {info.gpus_per_node}
    with pytest.raises(AttributeError):
        infos[0].name = "x"  # type: ignore[misc]


def test_top_level_exports() -> None:
    assert nvtopo.system is system and nvtopo.cluster is cluster and nvtopo.systems is systems
    assert {"system", "cluster", "systems"} <= set(nvtopo.__all__)
