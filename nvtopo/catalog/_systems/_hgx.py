"""HGX 8-GPU baseboard servers: HGX H200 and HGX B200.

Both follow the reference layout of NVIDIA's HGX designs and the DGX B200 user guide: each
GPU shares a PCIe switch with its own 400G ConnectX-7 port (PIX), four GPUs per CPU socket,
and the GPUs meet on the baseboard's NVSwitch chips (four third-generation chips on H200
boards, two NVLink 5 chips on B200 boards), every pair at the GPU's full 18 links.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
from nvtopo.model import ZERO_CLUSTER_UUID, Fabric, NodeTopology

__all__ = ["ENTRIES"]

H200_SXM = GpuModel("NVIDIA H200", "Nvidia", "Hopper", "9.0", 143771, 4, 18, True)
B200_SXM = GpuModel("NVIDIA B200", "Nvidia", "Blackwell", "10.0", 183359, 5, 18, True)


def _eight_gpu_server(
    system: str,
    model: GpuModel,
    *,
    cpus: Mapping[int, str],
    gpu_buses: Sequence[int],
    nic_buses: Sequence[int],
    frontend: Sequence[tuple[int, int]],
    switch_links: Sequence[int],
    switch_bus: int,
    fabric: Fabric | None = None,
) -> NodeTopology:
    """GPU ``i`` and compute port ``i`` behind switch ``i``; dual-port front-end cards apart.

    ``frontend`` gives ``(NUMA node, bus)`` of each dual-port card; ``switch_links`` the links
    each GPU has to each NVSwitch chip.
    """
    slots = []
    ports: list[NicSlot] = []
    for i, (gb, nb) in enumerate(zip(gpu_buses, nic_buses, strict=True)):
        numa = i // 4
        at = Loc(f"numa{numa}", root(0, min(gb, nb) - 2), (f"sw{i}",))
        slots.append(GpuSlot(sysfs_bus(0, gb), at, numa))
        ports.append(NicSlot("", sysfs_bus(0, nb), at, numa))
    for k, (numa, bus) in enumerate(frontend):
        at = Loc(f"numa{numa}", root(0, bus - 1), (f"frontend{k}",))
        ports.extend(NicSlot("", sysfs_bus(0, bus, 0, fn), at, numa) for fn in (0, 1))
    nics = mlx5_ports(ports)
    switches = [
        SwitchSpec.on_board(sysfs_bus(0, switch_bus + s), tuple((g, n) for g in range(8)))
        for s, n in enumerate(switch_links)
    ]
    return build_node(
        system, model, slots, numa_cpus=cpus, nics=nics, switches=switches, fabric=fabric
    )


def hgx_h200() -> NodeTopology:
    """An HGX H200 8-GPU server with two 48-core Xeon sockets and one BlueField-3 front end."""
    return _eight_gpu_server(
        "hgx-h200",
        H200_SXM,
        cpus={0: cpulist((0, 47), (96, 143)), 1: cpulist((48, 95), (144, 191))},
        gpu_buses=(0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB),
        nic_buses=(0x1A, 0x2C, 0x3C, 0x5F, 0x9C, 0xAD, 0xBC, 0xDD),
        frontend=((0, 0x0F),),
        switch_links=(4, 5, 5, 4),
        switch_bus=0x05,
    )


def hgx_b200() -> NodeTopology:
    """An HGX B200 8-GPU server (the DGX B200 layout): two Xeon 8570 sockets, two BlueField-3.

    Blackwell GPUs report fabric info even outside a multi-node domain: state Completed with
    an all-zero cluster UUID, so each node is its own NVLink domain.
    """
    return _eight_gpu_server(
        "hgx-b200",
        B200_SXM,
        cpus={0: cpulist((0, 55), (112, 167)), 1: cpulist((56, 111), (168, 223))},
        gpu_buses=(0x1B, 0x43, 0x52, 0x61, 0x9D, 0xC3, 0xD1, 0xDF),
        nic_buses=(0x18, 0x40, 0x4F, 0x5E, 0x9A, 0xC0, 0xCE, 0xDC),
        frontend=((0, 0x29), (1, 0xAA)),
        switch_links=(9, 9),
        switch_bus=0x05,
        fabric=Fabric(ZERO_CLUSTER_UUID, 0, "completed", "success", "healthy"),
    )


ENTRIES = (
    NodeEntry("hgx-h200", "HGX H200: 8 H200 on 4 NVSwitches (NV18), 2 sockets, 8 CX-7",
              H200_SXM, 8, hgx_h200),
    NodeEntry("hgx-b200", "HGX B200: 8 B200 on 2 NVLink 5 switches (NV18), 2 sockets, 8 CX-7",
              B200_SXM, 8, hgx_b200),
)  # fmt: skip
