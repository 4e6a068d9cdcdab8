"""NVIDIA DGX systems: DGX-1 (V100), DGX-2, DGX A100, DGX H100.

Facts come from NVIDIA's DGX user guides and architecture whitepapers and from published
``nvidia-smi topo -m`` outputs and NCCL topology dumps of these machines: NVLink bonds and
NVSwitch counts, which GPU and NIC share a PCIe switch, CPU lists per NUMA node, PCI bus ids.
"""

from __future__ import annotations

from nvtopo.catalog._systems._build import (
    GpuModel,
    GpuSlot,
    Loc,
    NicSlot,
    NodeEntry,
    SwitchSpec,
    build_node,
    cpulist,
    mlx5_ports,
    root,
    sysfs_bus,
)
from nvtopo.model import NodeTopology

__all__ = ["ENTRIES"]

V100_SXM2 = GpuModel("Tesla V100-SXM2-16GB", "Tesla", "Volta", "7.0", 16160, 2, 6, False)
V100_SXM3 = GpuModel("Tesla V100-SXM3-32GB", "Tesla", "Volta", "7.0", 32510, 2, 6, False)
A100_SXM4 = GpuModel("NVIDIA A100-SXM4-80GB", "Nvidia", "Ampere", "8.0", 81920, 3, 12, True)
H100_SXM5 = GpuModel("NVIDIA H100 80GB HBM3", "Nvidia", "Hopper", "9.0", 81559, 4, 18, True)


def dgx1_v100() -> NodeTopology:
    """DGX-1 with V100: hybrid cube mesh, two E5-2698 v4 sockets, four EDR InfiniBand ports.

    Each PLX switch carries two GPUs and one ConnectX-4; two switches per socket.
    """
    cpus = {0: cpulist((0, 19), (40, 59)), 1: cpulist((20, 39), (60, 79))}

    def loc(socket: int, plx: int) -> Loc:
        return Loc(f"numa{socket}", root(0, 0x80 * socket), (f"plx{plx}",))

    buses = (0x06, 0x07, 0x0A, 0x0B, 0x85, 0x86, 0x89, 0x8A)
    slots = [GpuSlot(sysfs_bus(0, b), loc(i // 4, i // 2), i // 4) for i, b in enumerate(buses)]
    nics = [
        NicSlot(f"mlx5_{k}", sysfs_bus(0, b), loc(k // 2, k), k // 2)
        for k, b in enumerate((0x05, 0x0C, 0x84, 0x8B))
    ]
    # The hybrid cube mesh: two quads (0-3, 4-7) joined at matching corners; six links per
    # GPU, doubled on the edges that `topo -m` prints as NV2.
    mesh = {
        (0, 1): 1, (0, 2): 1, (0, 3): 2, (0, 4): 2,
        (1, 2): 2, (1, 3): 1, (1, 5): 2,
        (2, 3): 2, (2, 6): 1,
        (3, 7): 1,
        (4, 5): 1, (4, 6): 1, (4, 7): 2,
        (5, 6): 2, (5, 7): 1,
        (6, 7): 2,
    }  # fmt: skip
    return build_node("dgx1-v100", V100_SXM2, slots, numa_cpus=cpus, nics=nics, direct=mesh)


def dgx2_v100() -> NodeTopology:
    """DGX-2: 16 V100 on two baseboards, 12 NVSwitches (6 per board), two Xeon 8168 sockets.

    Every GPU has one NVLink to each of its board's six NVSwitches; the boards are joined
    switch to switch, so every pair reads NV6. Per socket two PCIe trees, each with two leaf
    switches of two GPUs and one EDR InfiniBand port.
    """
    cpus = {0: cpulist((0, 23), (48, 71)), 1: cpulist((24, 47), (72, 95))}
    tree_roots = (0x30, 0x50, 0xB0, 0xD8)

    def loc(tree: int, leaf: int) -> Loc:
        return Loc(f"numa{tree // 2}", root(0, tree_roots[tree]), (f"sw{tree}", f"sw{tree}.{leaf}"))

    buses = (0x34, 0x36, 0x39, 0x3B, 0x57, 0x59, 0x5C, 0x5E,
             0xB7, 0xB9, 0xBC, 0xBE, 0xE0, 0xE2, 0xE5, 0xE7)  # fmt: skip
    slots = [
        GpuSlot(sysfs_bus(0, b), loc(i // 4, (i // 2) % 2), i // 8) for i, b in enumerate(buses)
    ]
    nic_buses = (0x35, 0x3A, 0x58, 0x5D, 0xB8, 0xBD, 0xE1, 0xE6)
    nics = [
        NicSlot(f"mlx5_{k}", sysfs_bus(0, b), loc(k // 2, k % 2), k // 4)
        for k, b in enumerate(nic_buses)
    ]
    switches = [
        SwitchSpec.on_board(
            sysfs_bus(0, (0x60 if s < 6 else 0xE8) + s % 6),
            tuple((g, 1) for g in (range(8) if s < 6 else range(8, 16))),
        )
        for s in range(12)
    ]
    return build_node("dgx2-v100", V100_SXM3, slots, numa_cpus=cpus, nics=nics, switches=switches)


def dgx_a100() -> NodeTopology:
    """DGX A100: 8 A100 on 6 NVSwitches (two links each), two EPYC 7742 in NPS4 mode.

    Eight NUMA nodes of 16 cores; GPU pairs sit on nodes 3, 1, 7 and 5 behind a two-level
    PCIe switch shared with their two ConnectX-6 compute ports (all PXB). The two dual-port
    storage ConnectX-6 cards sit on nodes 0 and 4, SYS from every GPU.
    """
    cpus = {n: cpulist((16 * n, 16 * n + 15), (128 + 16 * n, 128 + 16 * n + 15)) for n in range(8)}
    # (NUMA node, root bus, GPU buses, compute NIC buses) per GPU pair.
    groups = (
        (3, 0x00, (0x07, 0x0F), (0x0C, 0x12)),
        (1, 0x40, (0x47, 0x4E), (0x4B, 0x54)),
        (7, 0x80, (0x87, 0x90), (0x8D, 0x94)),
        (5, 0xA0, (0xB7, 0xBD), (0xBA, 0xCC)),
    )
    slots: list[GpuSlot] = []
    ports: list[NicSlot] = []
    for g, (numa, rc, gpu_buses, nic_buses) in enumerate(groups):
        for k, b in enumerate(gpu_buses):
            at = Loc(f"numa{numa}", root(0, rc), (f"sw{g}", f"sw{g}.gpu{k}"))
            slots.append(GpuSlot(sysfs_bus(0, b), at, numa))
        for k, b in enumerate(nic_buses):
            at = Loc(f"numa{numa}", root(0, rc), (f"sw{g}", f"sw{g}.nic{k}"))
            ports.append(NicSlot("", sysfs_bus(0, b), at, numa))
    for numa, bus in ((0, 0x61), (4, 0xE1)):
        at = Loc(f"numa{numa}", root(0, bus & 0xE0), (f"storage{numa}",))
        ports.extend(NicSlot("", sysfs_bus(0, bus, 0, fn), at, numa) for fn in (0, 1))
    nics = mlx5_ports(ports)
    switches = [
        SwitchSpec.on_board(sysfs_bus(0, 0xC4 + s), tuple((g, 2) for g in range(8)))
        for s in range(6)
    ]
    return build_node("dgx-a100", A100_SXM4, slots, numa_cpus=cpus, nics=nics, switches=switches)


def dgx_h100() -> NodeTopology:
    """DGX H100: 8 H100 on 4 NVSwitch chips (4/5/5/4 links), two Xeon 8480C sockets.

    GPUs 0-3 on NUMA 0, 4-7 on NUMA 1; each GPU shares a PCIe switch with its ConnectX-7
    compute port (PIX); two dual-port storage ConnectX-7 cards, one per socket.
    """
    cpus = {0: cpulist((0, 55), (112, 167)), 1: cpulist((56, 111), (168, 223))}
    gpu_buses = (0x1B, 0x43, 0x52, 0x61, 0x9D, 0xC3, 0xD1, 0xDF)
    nic_buses = (0x18, 0x40, 0x4F, 0x5E, 0x9A, 0xC0, 0xCE, 0xDC)
    slots = []
    ports = []
    for i, (gb, nb) in enumerate(zip(gpu_buses, nic_buses, strict=True)):
        numa = i // 4
        at = Loc(f"numa{numa}", root(0, nb - 3), (f"sw{i}",))
        slots.append(GpuSlot(sysfs_bus(0, gb), at, numa))
        ports.append(NicSlot("", sysfs_bus(0, nb), at, numa))
    for numa, bus in ((0, 0x29), (1, 0xAA)):
        at = Loc(f"numa{numa}", root(0, bus - 2), (f"storage{numa}",))
        ports.extend(NicSlot("", sysfs_bus(0, bus, 0, fn), at, numa) for fn in (0, 1))
    nics = mlx5_ports(ports)
    switches = [
        SwitchSpec.on_board(sysfs_bus(0, 0x05 + s), tuple((g, links) for g in range(8)))
        for s, links in enumerate((4, 5, 5, 4))
    ]
    return build_node("dgx-h100", H100_SXM5, slots, numa_cpus=cpus, nics=nics, switches=switches)


ENTRIES = (
    NodeEntry("dgx1-v100", "DGX-1: 8 V100 in a hybrid cube mesh (NV1/NV2), 2 sockets, 4 IB",
              V100_SXM2, 8, dgx1_v100),
    NodeEntry("dgx2-v100", "DGX-2: 16 V100 on 12 NVSwitches (NV6), 2 sockets, 8 IB",
              V100_SXM3, 16, dgx2_v100),
    NodeEntry("dgx-a100", "DGX A100: 8 A100 on 6 NVSwitches (NV12), 2 EPYC in NPS4, 8+4 CX-6",
              A100_SXM4, 8, dgx_a100),
    NodeEntry("dgx-h100", "DGX H100: 8 H100 on 4 NVSwitches (NV18), 2 sockets, 8+4 CX-7",
              H100_SXM5, 8, dgx_h100),
)  # fmt: skip
