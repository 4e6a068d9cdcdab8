"""Grace Blackwell NVL72 racks: GB200 and GB300 compute trays and whole racks.

A compute tray holds two superchips, each one Grace CPU with two Blackwell GPUs on
NVLink-C2C; the tray's four GPUs reach each other and the rest of the rack over 18 NVLink 5
links apiece, one to each NVLink switch chip of the rack's nine switch trays. A rack is 18
compute trays and one NVLink domain: every GPU reports fabric state Completed with the
rack's cluster UUID and clique id. The CPU and NUMA affinity of a real tray's
``nvidia-smi topo -m`` (``tests/data/gb200-tray-topo-m.txt``) are kept as printed: GPUs 0-1
near Grace 0 (CPUs 0-71), GPUs 2-3 near Grace 1 (CPUs 72-143), and every NIC SYS from every
GPU, since the GPUs hang off the CPUs' C2C links rather than their PCIe trees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache, lru_cache, partial
from typing import Any, TypeVar

from nvtopo.catalog._systems._build import (
    GpuModel,
    GpuSlot,
    Loc,
    NicSlot,
    NodeEntry,
    SwitchSpec,
    build_node,
    derived_uuid,
    fake_gpu_uuid,
    root,
    sysfs_bus,
)
from nvtopo.model import Fabric, NodeTopology, Platform
from nvtopo.model.cluster import Cluster, ClusterNode

__all__ = [
    "ENTRIES",
    "FAMILIES",
    "TRAYS_PER_RACK",
    "RackFamily",
    "build_racks",
    "rack_tray",
]

GB200 = GpuModel("NVIDIA GB200", "Nvidia", "Blackwell", "10.0", 189471, 5, 18, True)
GB300 = GpuModel("NVIDIA GB300", "Nvidia", "Blackwell", "10.3", 284208, 5, 18, True)

TRAYS_PER_RACK = 18
#: Clique id the fabric manager gives a rack that is not partitioned.
DEFAULT_CLIQUE_ID = 32766
# Module ids do not follow the device index on these trays: devices 0..3 report 2, 1, 4, 3.
_MODULE_IDS = (2, 1, 4, 3)
# The rack's NVLink switch chips: nine switch trays of two chips each.
_SWITCH_CHIPS = tuple(f"nvlswitch-tray{t}-{c}" for t in range(1, 10) for c in (0, 1))
# Each GPU's own memory NUMA node (`GPU NUMA ID` of `topo -m`, NVML's NUMA node id).
_GPU_MEMORY_NODES = (2, 10, 18, 26)
# NUMA affinity as `topo -m` prints it on a tray: the CPU node plus the GPU memory nodes.
_NUMA_AFFINITY = (
    (0, *range(3, 10), *range(11, 18)),
    (1, *range(19, 26), *range(27, 34)),
)


@dataclass(frozen=True)
class RackFamily:
    """An NVL72 rack kind: its name, its tray's catalog name and GPU, the GPUs' PCI bus."""

    name: str
    tray: str
    model: GpuModel
    gpu_bus: int
    description: str


FAMILIES = {
    "gb200-nvl72": RackFamily(
        "gb200-nvl72", "gb200-tray", GB200, 0x01, "GB200 NVL72 rack: 18 trays of 4 GB200"
    ),
    "gb300-nvl72": RackFamily(
        "gb300-nvl72", "gb300-tray", GB300, 0x06, "GB300 NVL72 rack: 18 trays of 4 GB300"
    ),
}


@cache
def _tray_template(family: str) -> NodeTopology:
    """The parts of a tray that no rack changes: PCIe, NVLinks, NVSwitches, NICs."""
    fam = FAMILIES[family]
    slots = []
    for i, domain in enumerate((0x0008, 0x0009, 0x0018, 0x0019)):
        grace = i // 2
        at = Loc(f"c2c{i}", root(domain, 0))  # its own domain: SYS to everything
        slots.append(
            GpuSlot(
                sysfs_bus(domain, fam.gpu_bus),
                at,
                numa_node=_GPU_MEMORY_NODES[i],
                numa_affinity=_NUMA_AFFINITY[grace],
                cpu_node=grace,
            )
        )
    nics = []
    # Per Grace: two ConnectX-7 ports, then one dual-port BlueField-3 (its ports PIX).
    for k, (domain, fn, grace) in enumerate(
        ((0x0000, 0, 0), (0x0002, 0, 0), (0x0006, 0, 0), (0x0006, 1, 0),
         (0x0010, 0, 1), (0x0012, 0, 1), (0x0016, 0, 1), (0x0016, 1, 1))
    ):  # fmt: skip
        at = Loc(f"grace{grace}", root(domain, 0), (f"card{domain:04x}",))
        nics.append(NicSlot(f"mlx5_{k}", sysfs_bus(domain, 0x03, 0, fn), at, grace))
    switches = [SwitchSpec(chip, None, tuple((g, 1) for g in range(4))) for chip in _SWITCH_CHIPS]
    cpus = {0: "0-71", 1: "72-143"}
    return build_node(fam.tray, fam.model, slots, numa_cpus=cpus, nics=nics, switches=switches)


@lru_cache(maxsize=4096)
def rack_tray(family: str, rack: int) -> NodeTopology:
    """The topology every compute tray of rack ``rack`` shares (fabric info is per rack).

    The cluster UUID is derived from the family and rack number, so rack 7 of any
    ``gb200-nvl72x<N>`` is the same NVLink domain. The trays of a cluster are made from it by
    :func:`tray`, each with GPU UUIDs of its own.
    """
    template = _tray_template(family)
    fabric = Fabric(
        cluster_uuid=derived_uuid(f"{family}/rack{rack}"),
        clique_id=DEFAULT_CLIQUE_ID,
        state="completed",
        status="success",
        health="healthy",
    )
    chassis = f"1821{rack:09d}"
    gpus = tuple(
        replace(
            g,
            uuid=fake_gpu_uuid(f"{family}/rack{rack}/gpu{g.index}"),
            fabric=fabric,
            platform=Platform(chassis_serial=chassis, host_id=1, module_id=_MODULE_IDS[g.index]),
        )
        for g in template.gpus
    )
    return NodeTopology(
        gpus=gpus,
        pairs=template.pairs,
        nvswitches=template.nvswitches,
        nics=template.nics,
        name=template.name,
        system=template.system,
        numa_cpus=dict(template.numa_cpus),
    )


def tray(family: str, rack: int, index: int) -> NodeTopology:
    """Compute tray ``index`` of rack ``rack``: the rack's topology with GPU UUIDs of its own.

    Every GPU of a cluster has its own UUID, derived from family, rack, tray and GPU index,
    so the same tray reads the same every time. The pairs, NVSwitches and NICs are the
    rack's shared tuples, and the core loads one topology for all trays of a kind.
    """
    shared = rack_tray(family, rack)
    seed = f"{family}/rack{rack}/tray{index}"
    gpus = []
    for g in shared.gpus:
        platform = g.platform if g.platform is None else _copy(g.platform, tray=index)
        gpus.append(_copy(g, uuid=fake_gpu_uuid(f"{seed}/gpu{g.index}"), platform=platform))
    # The rack's topology was checked when it was built; the copy changes only fields that
    # no check reads (UUIDs stay unique: each derives from its own GPU index).
    return _copy(shared, gpus=tuple(gpus))


_T = TypeVar("_T")


def _copy(obj: _T, **changes: Any) -> _T:
    """A frozen dataclass with ``changes``, without re-running its checks: 18,432 trays of a
    thousand racks are built this way in a fraction of a second."""
    new: _T = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


def build_racks(family: str, racks: int, name: str) -> Cluster:
    """``racks`` NVL72 racks of ``family``; nodes ``rack<r>-tray<t>``, sorted rack then tray."""
    width = max(4, len(str(racks - 1)))
    nodes: list[ClusterNode] = []
    for r in range(racks):
        clique = rack_tray(family, r).clique
        prefix = f"rack{r:0{width}d}-tray"
        nodes.extend(
            ClusterNode(f"{prefix}{t:02d}", tray(family, r, t), clique)
            for t in range(TRAYS_PER_RACK)
        )
    return Cluster(tuple(nodes), name=name)


ENTRIES = tuple(
    NodeEntry(
        fam.tray,
        f"{fam.model.name} compute tray: 4 GPUs (NV18 via the rack's switches), 2 Grace CPUs",
        fam.model,
        4,
        partial(rack_tray, fam.name, 0),
    )
    for fam in FAMILIES.values()
)
