"""PCIe GPU servers: four A100 PCIe with NVLink bridge pairs, eight L40S without NVLink.

Both are two-socket machines. The A100 box puts each GPU on its own CPU root port (NODE
within a socket, SYS across) and bridges GPUs 0-1 and 2-3 with three NVLink bridges, 12
links per pair. The L40S box hangs two GPUs and one ConnectX-7 port off each of four PCIe
switches, two switches per socket: PIX within a switch, NODE across switches of a socket,
SYS across sockets, as published ``topo -m`` outputs of such servers show.
"""

from __future__ import annotations

from nvtopo.catalog._systems._build import (
    GpuModel,
    GpuSlot,
    Loc,
    NicSlot,
    NodeEntry,
    build_node,
    cpulist,
    root,
    sysfs_bus,
)
from nvtopo.model import NodeTopology

__all__ = ["ENTRIES"]

A100_PCIE = GpuModel("NVIDIA A100 80GB PCIe", "Nvidia", "Ampere", "8.0", 81920, 3, 12, True)
L40S = GpuModel("NVIDIA L40S", "Nvidia", "Ada Lovelace", "8.9", 46068, None, 0, False)


def pcie_4x_a100_bridged() -> NodeTopology:
    """Four A100 80GB PCIe, bridged 0-1 and 2-3, two Xeon Gold 6338 sockets, 2 ConnectX-6."""
    cpus = {0: cpulist((0, 31), (64, 95)), 1: cpulist((32, 63), (96, 127))}
    slots = [
        GpuSlot(sysfs_bus(0, b), Loc(f"numa{i // 2}", root(0, b - 1)), i // 2)
        for i, b in enumerate((0x17, 0x31, 0xB1, 0xCA))
    ]
    nics = [
        NicSlot(f"mlx5_{k}", sysfs_bus(0, b), Loc(f"numa{k}", root(0, b - 1)), k)
        for k, b in enumerate((0x4B, 0xE3))
    ]
    bridges = {(0, 1): 12, (2, 3): 12}
    return build_node(
        "pcie-4x-a100-bridged", A100_PCIE, slots, numa_cpus=cpus, nics=nics, direct=bridges
    )


def pcie_8x_l40s() -> NodeTopology:
    """Eight L40S behind four PCIe switches, two Xeon 8462Y+ sockets, 4 ConnectX-7."""
    cpus = {0: cpulist((0, 31), (64, 95)), 1: cpulist((32, 63), (96, 127))}
    switch_buses = ((0x18, 0x19, 0x1A), (0x3B, 0x3C, 0x3D), (0x9A, 0x9B, 0x9C), (0xBB, 0xBC, 0xBD))
    slots: list[GpuSlot] = []
    nics: list[NicSlot] = []
    for s, (g0, g1, nic) in enumerate(switch_buses):
        at = Loc(f"numa{s // 2}", root(0, g0 - 3), (f"sw{s}",))
        slots.extend(GpuSlot(sysfs_bus(0, b), at, s // 2) for b in (g0, g1))
        nics.append(NicSlot(f"mlx5_{s}", sysfs_bus(0, nic), at, s // 2))
    return build_node("pcie-8x-l40s", L40S, slots, numa_cpus=cpus, nics=nics)


ENTRIES = (
    NodeEntry("pcie-4x-a100-bridged",
              "4 A100 PCIe, NVLink bridges 0-1 and 2-3 (NV12), 2 sockets, 2 CX-6",
              A100_PCIE, 4, pcie_4x_a100_bridged),
    NodeEntry("pcie-8x-l40s", "8 L40S, no NVLink, 2 PCIe switches per socket, 4 CX-7",
              L40S, 8, pcie_8x_l40s),
)  # fmt: skip
