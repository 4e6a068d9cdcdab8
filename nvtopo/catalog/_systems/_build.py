"""Shared construction code for the catalog systems.

A catalog system is described as data: the GPU product (:class:`GpuModel`), where each GPU
and NIC sits in the PCIe tree (:class:`Loc`), the NVSwitch planes or direct NVLink bonds,
and the CPU list of each NUMA node. :func:`build_node` turns that into a
:class:`~nvtopo.model.NodeTopology`, deriving every path class the way ``nvidia-smi topo -m``
does from the same tree, so a system file states facts once and never a matrix by hand.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from nvtopo.exceptions import TopologyError
from nvtopo.model import (
    Fabric,
    Gpu,
    GpuPair,
    Nic,
    NodeTopology,
    NvLink,
    NvSwitch,
    PcieClass,
    Platform,
)

__all__ = [
    "GpuModel",
    "GpuSlot",
    "Loc",
    "NicSlot",
    "NodeEntry",
    "SwitchSpec",
    "build_node",
    "cpulist",
    "derived_uuid",
    "fake_gpu_uuid",
    "mlx5_ports",
    "pcie_class",
    "root",
    "sysfs_bus",
]

# Fixed namespace for every identifier the catalog derives, so that the same system (or
# rack number) always gets the same GPU and cluster UUIDs, run after run.
_NAMESPACE = uuid.UUID("e649f84d-e040-4b7d-a820-7e137417b5f3")


def derived_uuid(seed: str) -> str:
    """A deterministic RFC 4122 UUID (version 5) for ``seed``.

    ``uuid.uuid5`` computed without building a ``UUID`` object: a thousand racks derive
    73,728 GPU UUIDs.

    Examples
    --------
    >>> derived_uuid("rack7") == str(uuid.uuid5(_NAMESPACE, "rack7"))
    True
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE.bytes + seed.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fake_gpu_uuid(seed: str) -> str:
    """A deterministic GPU UUID in NVML's ``GPU-xxxxxxxx-xxxx-...`` form."""
    return "GPU-" + derived_uuid(seed)


def sysfs_bus(domain: int, bus: int, device: int = 0, function: int = 0) -> str:
    """A PCI address as Linux sysfs and NVML discovery spell it (``0000:1b:00.0``)."""
    return f"{domain:04x}:{bus:02x}:{device:02x}.{function:x}"


def root(domain: int, bus: int) -> str:
    """A PCIe root complex id as the ``resource.kubernetes.io/pcieRoot`` attribute spells it."""
    return f"pci{domain:04x}:{bus:02x}"


def mlx5_ports(ports: Iterable[NicSlot]) -> list[NicSlot]:
    """Name network ports ``mlx5_<k>`` in PCI address order, as the mlx5 driver numbers them."""
    ordered = sorted(ports, key=lambda p: p.bus_id)
    return [replace(p, device=f"mlx5_{k}") for k, p in enumerate(ordered)]


def cpulist(*ranges: tuple[int, int]) -> str:
    """Linux cpulist notation for inclusive ``(first, last)`` ranges."""
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


@dataclass(frozen=True)
class GpuModel:
    """A GPU product: what NVML says of every board of that kind."""

    name: str
    brand: str
    architecture: str
    compute_capability: str
    memory_mib: int
    nvlink_generation: int | None
    nvlinks: int
    mig_capable: bool


@dataclass(frozen=True)
class Loc:
    """Where a PCIe device sits: NUMA domain, root complex, and the switches above it.

    ``switches`` runs from the root downwards. Two devices under the same chain share a
    switch (``PIX``); a common top but different leaves is ``PXB``; the same root with no
    common switch is ``PHB``; another root in the same NUMA domain is ``NODE``; another
    domain is ``SYS``.
    """

    domain: str
    root: str
    switches: tuple[str, ...] = ()


def pcie_class(a: Loc, b: Loc) -> PcieClass:
    """The ``nvidia-smi topo -m`` class of the PCIe path between two devices."""
    if a.domain != b.domain:
        return "SYS"
    if a.root != b.root:
        return "NODE"
    if not a.switches or not b.switches or a.switches[0] != b.switches[0]:
        return "PHB"
    if a.switches == b.switches:
        return "PIX"
    return "PXB"


@dataclass(frozen=True)
class GpuSlot:
    """One GPU's place: PCI bus id, PCIe location and NUMA node.

    ``numa_node`` is what NVML reports: the CPU node the device hangs off, or on
    C2C-coherent systems the GPU's own memory node (the topology's ``gpu_numa_id``), in
    which case ``cpu_node`` names the CPU node the PCI device belongs to and whose CPU list
    is the GPU's affinity.
    """

    bus_id: str
    loc: Loc
    numa_node: int
    #: NUMA nodes near the GPU; ``(cpu_node,)`` when not given.
    numa_affinity: tuple[int, ...] | None = None
    platform: Platform | None = None
    cpu_node: int | None = None

    @property
    def cpus_of(self) -> int:
        """The CPU NUMA node whose CPUs are near this GPU."""
        return self.numa_node if self.cpu_node is None else self.cpu_node


@dataclass(frozen=True)
class NicSlot:
    """One network port: its RDMA device name, PCI address and place."""

    device: str
    bus_id: str
    loc: Loc
    numa_node: int


@dataclass(frozen=True)
class SwitchSpec:
    """An NVSwitch chip and how many NVLinks each GPU of the node has to it.

    ``id`` is the chip's PCI address where the node sees it (as discovery names switches),
    else a name for a switch outside the node.
    """

    id: str
    bus_id: str | None
    gpu_links: tuple[tuple[int, int], ...]

    @classmethod
    def on_board(cls, bus_id: str, gpu_links: tuple[tuple[int, int], ...]) -> SwitchSpec:
        """A switch chip on the node's PCIe, named by its address."""
        return cls(bus_id, bus_id, gpu_links)


@dataclass(frozen=True)
class NodeEntry:
    """A single-node catalog system: its facts for ``nvtopo systems`` and its builder."""

    name: str
    description: str
    model: GpuModel
    gpus: int
    build: Callable[[], NodeTopology]


def _links_of(
    n: int,
    slots: Sequence[GpuSlot],
    model: GpuModel,
    switches: Sequence[SwitchSpec],
    direct: Mapping[tuple[int, int], int],
) -> list[tuple[NvLink, ...]]:
    """Each GPU's NVLinks, numbered in switch order (or by peer for direct bonds)."""
    per_gpu: list[list[NvLink]] = [[] for _ in range(n)]
    gen = model.nvlink_generation
    for sw in switches:
        for gpu, count in sw.gpu_links:
            for _ in range(count):
                link = NvLink(len(per_gpu[gpu]), "up", gen, "nvswitch", remote_pci_bus_id=sw.bus_id)
                per_gpu[gpu].append(link)
    for (a, b), count in sorted(direct.items()):
        for src, dst in ((a, b), (b, a)):
            for _ in range(count):
                link = NvLink(
                    len(per_gpu[src]), "up", gen, "gpu", slots[dst].bus_id, remote_gpu=dst
                )
                per_gpu[src].append(link)
    return [tuple(links) for links in per_gpu]


def build_node(
    system: str,
    model: GpuModel,
    slots: Sequence[GpuSlot],
    *,
    numa_cpus: Mapping[int, str],
    nics: Sequence[NicSlot] = (),
    switches: Sequence[SwitchSpec] = (),
    direct: Mapping[tuple[int, int], int] | None = None,
    fabric: Fabric | None = None,
    uuid_scope: str | None = None,
) -> NodeTopology:
    """Build the topology of one node from its facts.

    Parameters
    ----------
    system
        Catalog name; also the seed of the GPU UUIDs (with ``uuid_scope`` when given).
    model
        The GPU product every slot holds.
    slots
        GPUs in NVML index order.
    numa_cpus
        CPU list of each CPU NUMA node; a GPU's CPU affinity is its node's list.
    nics
        Network ports in ``mlx5_N`` order.
    switches
        NVSwitch chips: every pair of GPUs on them talks over ``min`` of their link counts.
    direct
        GPU-to-GPU NVLink bonds ``{(a, b): links}`` (hybrid cube mesh, bridges).
    fabric
        Fabric info given to every GPU (multi-node NVLink systems).
    """
    direct = dict(direct or {})
    n = len(slots)
    links = _links_of(n, slots, model, switches, direct)
    for i, own in enumerate(links):
        if len(own) != model.nvlinks:
            raise TopologyError(
                f"catalog {system}: GPU {i} has {len(own)} NVLinks, {model.name} has "
                f"{model.nvlinks}"
            )
    on_switch = [0] * n
    for sw in switches:
        for gpu, count in sw.gpu_links:
            on_switch[gpu] += count
    scope = f"{system}/{uuid_scope}" if uuid_scope else system
    gpus = tuple(
        Gpu(
            index=i,
            uuid=fake_gpu_uuid(f"{scope}/gpu{i}"),
            name=model.name,
            brand=model.brand,
            architecture=model.architecture,
            compute_capability=model.compute_capability,
            memory_mib=model.memory_mib,
            pci_bus_id=slot.bus_id,
            pcie_root=slot.loc.root,
            # The PCI device's node (what sysfs and resource.kubernetes.io/numaNode mean); on
            # C2C systems the GPU's own memory node is gpu_numa_id.
            numa_node=slot.cpus_of,
            numa_affinity=slot.numa_affinity or (slot.cpus_of,),
            cpu_affinity=numa_cpus[slot.cpus_of],
            mig_mode=False if model.mig_capable else None,
            nvlink_generation=model.nvlink_generation,
            nvlinks=links[i],
            fabric=fabric,
            platform=slot.platform,
            minor=i,
            # C2C-coherent GPUs (cpu_node set) have their memory as a NUMA node of its own.
            gpu_numa_id=None if slot.cpu_node is None else slot.numa_node,
        )
        for i, slot in enumerate(slots)
    )
    pairs = []
    for a in range(n):
        for b in range(a + 1, n):
            bond = direct.get((a, b), 0)
            via = bond == 0 and on_switch[a] > 0 and on_switch[b] > 0
            count = min(on_switch[a], on_switch[b]) if via else bond
            pairs.append(GpuPair(a, b, count, pcie_class(slots[a].loc, slots[b].loc), via))
    return NodeTopology(
        gpus=gpus,
        pairs=tuple(pairs),
        nvswitches=tuple(NvSwitch(sw.id, sw.bus_id, sw.gpu_links) for sw in switches),
        nics=tuple(
            Nic(
                name=f"NIC{k}",
                device=nic.device,
                pci_bus_id=nic.bus_id,
                numa_node=nic.numa_node,
                gpu_paths=tuple(pcie_class(nic.loc, s.loc) for s in slots),
                nic_paths=tuple(
                    "X" if j == k else pcie_class(nic.loc, other.loc)
                    for j, other in enumerate(nics)
                ),
            )
            for k, nic in enumerate(nics)
        ),
        name=system,
        system=system,
        numa_cpus=dict(numa_cpus),
    )
