"""Hypothesis strategies for random topologies and clusters."""

from __future__ import annotations

import uuid

from hypothesis import strategies as st

from nvtopo.model import (
    PCIE_CLASSES,
    Fabric,
    Gpu,
    GpuPair,
    Nic,
    NodeTopology,
    NvLink,
    NvSwitch,
    Platform,
)
from nvtopo.model.cluster import Cluster, ClusterNode

_cpulists = st.sampled_from(["0-15", "0-71", "72-143", "0-55,112-167", "56-111,168-223", "0,2,4"])


@st.composite
def fabrics(draw: st.DrawFn) -> Fabric:
    return Fabric(
        cluster_uuid=str(uuid.UUID(int=draw(st.integers(0, 3)))),
        clique_id=draw(st.integers(0, 5)),
        state=draw(st.sampled_from(["not_supported", "not_started", "in_progress", "completed"])),
        status=draw(st.sampled_from(["success", "insufficient_resources"])),
        health=draw(st.sampled_from(["healthy", "degraded", "unhealthy", "unknown"])),
        health_mask=draw(st.integers(0, 255)),
    )


@st.composite
def gpus(draw: st.DrawFn, index: int) -> Gpu:
    links = draw(st.integers(0, 4))
    return Gpu(
        index=index,
        uuid=draw(st.none() | st.just(f"GPU-{uuid.UUID(int=index + 1)}")),
        name=draw(st.none() | st.sampled_from(["NVIDIA H100 80GB HBM3", "NVIDIA B200"])),
        brand=draw(st.none() | st.just("Nvidia")),
        architecture=draw(st.none() | st.sampled_from(["Hopper", "Blackwell"])),
        compute_capability=draw(st.none() | st.sampled_from(["9.0", "10.0"])),
        memory_mib=draw(st.none() | st.integers(0, 200_000)),
        pci_bus_id=draw(st.none() | st.just(f"00000000:{index + 0x10:02X}:00.0")),
        pcie_root=draw(st.none() | st.sampled_from(["pci0000:00", "pci0000:80"])),
        numa_node=draw(st.none() | st.integers(0, 3)),
        gpu_numa_id=draw(st.none() | st.integers(0, 40)),
        numa_affinity=tuple(draw(st.lists(st.integers(0, 7), max_size=3, unique=True))),
        cpu_affinity=draw(st.none() | _cpulists),
        mig_mode=draw(st.none() | st.booleans()),
        nvlink_generation=draw(st.none() | st.integers(1, 5)),
        minor=draw(st.none() | st.just(index)),
        nvlinks=tuple(
            NvLink(
                link=k,
                state=draw(st.sampled_from(["up", "down", "degraded"])),
                version=draw(st.none() | st.integers(1, 7)),
                remote_type=draw(st.sampled_from(["gpu", "nvswitch", "cpu", "unknown"])),
                remote_pci_bus_id=draw(st.none() | st.just("00000000:C3:00.0")),
                remote_gpu=draw(st.none() | st.integers(0, 7)),
            )
            for k in range(links)
        ),
        fabric=draw(st.none() | fabrics()),
        platform=draw(
            st.none()
            | st.builds(
                Platform,
                chassis_serial=st.none() | st.just("1821323000123"),
                slot=st.none() | st.integers(0, 18),
                tray=st.none() | st.integers(0, 18),
                host_id=st.none() | st.integers(0, 4),
                module_id=st.none() | st.integers(0, 8),
            )
        ),
    )


@st.composite
def topologies(draw: st.DrawFn, max_gpus: int = 8) -> NodeTopology:
    n = draw(st.integers(1, max_gpus))
    gs = tuple(draw(gpus(i)) for i in range(n))
    pairs = []
    for a in range(n):
        for b in range(a + 1, n):
            if draw(st.booleans()):
                nv = draw(st.sampled_from([0, 0, 1, 2, 4, 12, 18]))
                pairs.append(
                    GpuPair(
                        a,
                        b,
                        nvlinks=nv,
                        pcie=draw(st.none() | st.sampled_from(PCIE_CLASSES)),
                        via_nvswitch=draw(st.booleans()),
                        nvlinks_down=draw(st.integers(0, 2)),
                    )
                )
    switches = tuple(
        NvSwitch(
            id=f"sw{k}",
            pci_bus_id=draw(st.none() | st.just(f"00000000:{k:02X}:00.0")),
            gpu_links=tuple((i, 2) for i in range(n)),
        )
        for k in range(draw(st.integers(0, 2)))
    )
    nics = tuple(
        Nic(
            name=f"NIC{k}",
            device=draw(st.none() | st.just(f"mlx5_{k}")),
            numa_node=draw(st.none() | st.integers(0, 1)),
            gpu_paths=tuple(draw(st.sampled_from(PCIE_CLASSES)) for _ in range(n)),
        )
        for k in range(draw(st.integers(0, 2)))
    )
    return NodeTopology(
        gpus=gs,
        pairs=tuple(pairs),
        nvswitches=switches,
        nics=nics,
        name=draw(st.none() | st.just("node-a")),
        system=draw(st.none() | st.just("dgx-h100")),
        driver_version=draw(st.none() | st.just("580.159.04")),
        cuda_version=draw(st.none() | st.just("13.0")),
        numa_cpus=draw(st.sampled_from([{}, {0: "0-15"}, {0: "0-71", 1: "72-143"}])),
    )


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    shared = draw(topologies(max_gpus=4))
    nodes = []
    for i in range(draw(st.integers(1, 5))):
        topo = shared if draw(st.booleans()) else draw(topologies(max_gpus=4))
        free = draw(st.none() | st.lists(st.sampled_from(topo.gpu_indices), unique=True))
        clique = draw(
            st.none() | st.sampled_from([f"{uuid.UUID(int=7)}.1", f"{uuid.UUID(int=8)}.2"])
        )
        nodes.append(
            ClusterNode(
                name=f"node{i:02d}",
                topology=topo,
                clique=clique,
                free_gpus=None if free is None else tuple(free),
                in_compute_domain=draw(st.booleans()),
            )
        )
    return Cluster(tuple(nodes), name=draw(st.none() | st.just("lab")))
