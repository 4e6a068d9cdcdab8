"""The topology model: what one node's GPUs, NVLinks, NVSwitches, NICs and NUMA look like.

Every public type here is a frozen dataclass. GPU ids are the plain ``int`` indices NVML and
``nvidia-smi`` use. A pair of GPUs is described once (``i < j``) by :class:`GpuPair`; the
path class of a pair is ``NV<n>`` when it has working NVLinks, else its PCIe class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from nvtopo._core import MAX_NVLINKS as _CORE_MAX_NVLINKS
from nvtopo._core import nvlink_bandwidth as _core_nvlink_bandwidth
from nvtopo.exceptions import TopologyError
from nvtopo.model.health import ZERO_CLUSTER_UUID, fabric_problem, node_clique

__all__ = [
    "MAX_NVLINKS",
    "PCIE_CLASSES",
    "Fabric",
    "Gpu",
    "GpuPair",
    "LinkState",
    "Nic",
    "NodeTopology",
    "NvLink",
    "NvSwitch",
    "PcieClass",
    "Platform",
    "RemoteType",
    "nvlink_bandwidth",
    "parse_path_class",
]

#: PCIe path classes of ``nvidia-smi topo -m``, best first.
PcieClass = Literal["PIX", "PXB", "PHB", "NODE", "SYS"]
PCIE_CLASSES: tuple[PcieClass, ...] = ("PIX", "PXB", "PHB", "NODE", "SYS")
LinkState = Literal["up", "down", "degraded"]
RemoteType = Literal["gpu", "nvswitch", "cpu", "unknown"]
FabricState = Literal["not_supported", "not_started", "in_progress", "completed"]
FabricHealth = Literal["healthy", "degraded", "unhealthy", "unknown"]


_NV_RE = re.compile(r"^NV(\d+)$")
#: What a cell of a NIC's row of paths to the node's NICs may hold.
_NIC_CELLS = frozenset(("X", *PCIE_CLASSES))


def _nic_row_ok(row: tuple[str, ...], k: int) -> bool:
    """Whether NIC ``k``'s row is ``X`` at ``k`` alone and a PCIe class elsewhere (the
    whole row at once; the caller walks a bad row to name the cell)."""
    try:
        return row[k] == "X" and row.count("X") == 1 and _NIC_CELLS.issuperset(row)
    except TypeError:
        return False


#: Most bonded NVLinks a GPU pair may have (the core's bound, which keeps its fixed-width
#: scores exact). Real GPUs have at most 18 links each.
MAX_NVLINKS: int = _CORE_MAX_NVLINKS


def nvlink_bandwidth(generation: int | None) -> int:
    """GB/s per direction of one NVLink of ``generation``: the core's table, read from it.

    Examples
    --------
    >>> nvlink_bandwidth(5), nvlink_bandwidth(3), nvlink_bandwidth(None)
    (50, 25, 25)
    """
    if generation is None or not 0 <= generation <= 255:
        return _core_nvlink_bandwidth(0)
    return _core_nvlink_bandwidth(generation)


def parse_path_class(text: str) -> tuple[PcieClass | None, int]:
    """Split a ``topo -m`` cell into ``(pcie_class, nvlinks)``.

    ``SOC`` (older drivers) reads as ``SYS``; ``NV12`` gives ``(None, 12)``.

    Examples
    --------
    >>> parse_path_class("NV18"), parse_path_class("SOC")
    ((None, 18), ('SYS', 0))
    """
    cell = text.strip().upper()
    match = _NV_RE.match(cell)
    if match:
        count = int(match.group(1))
        if not 1 <= count <= MAX_NVLINKS:
            raise TopologyError(
                f"{text.strip()!r}: an NVLink bond has 1 to {MAX_NVLINKS} links, not {count}"
            )
        return None, count
    if cell == "SOC":
        return "SYS", 0
    if cell in PCIE_CLASSES:
        return cell, 0  # type: ignore[return-value]
    raise TopologyError(f"unknown path class {text!r} (expected NV#, PIX, PXB, PHB, NODE or SYS)")


@dataclass(frozen=True)
class NvLink:
    """One NVLink of a GPU, as NVML reports it."""

    link: int
    state: LinkState = "up"
    version: int | None = None
    remote_type: RemoteType = "unknown"
    remote_pci_bus_id: str | None = None
    remote_gpu: int | None = None


@dataclass(frozen=True)
class Fabric:
    """Multi-node NVLink fabric info of a GPU (``nvmlDeviceGetGpuFabricInfoV``)."""

    cluster_uuid: str = ZERO_CLUSTER_UUID
    clique_id: int = 0
    state: FabricState = "not_supported"
    #: NVML's fabric status, an ``nvmlReturn_t`` name in snake case (``insufficient_resources``).
    status: str = "success"
    health: FabricHealth = "unknown"
    health_mask: int = 0

    @property
    def clique(self) -> str | None:
        """``"<clusterUUID>.<cliqueId>"`` when the GPU may join a multi-node domain, else None
        (the rule: :func:`nvtopo.model.health.fabric_problem`)."""
        if fabric_problem(self) is not None:
            return None
        return f"{self.cluster_uuid}.{self.clique_id}"


@dataclass(frozen=True)
class Platform:
    """Where a GPU sits in its rack (``nvmlDeviceGetPlatformInfo``), where the GPU has it."""

    chassis_serial: str | None = None
    slot: int | None = None
    tray: int | None = None
    host_id: int | None = None
    module_id: int | None = None


@dataclass(frozen=True)
class Gpu:
    """One GPU of a node."""

    index: int
    uuid: str | None = None
    name: str | None = None
    brand: str | None = None
    architecture: str | None = None
    compute_capability: str | None = None
    memory_mib: int | None = None
    pci_bus_id: str | None = None
    pcie_root: str | None = None
    numa_node: int | None = None
    #: CPU NUMA nodes near this GPU (NVML memory affinity / ``NUMA Affinity`` column).
    numa_affinity: tuple[int, ...] = ()
    #: CPU list near this GPU, Linux cpulist notation (``"0-55,112-167"``).
    cpu_affinity: str | None = None
    mig_mode: bool | None = None
    nvlink_generation: int | None = None
    nvlinks: tuple[NvLink, ...] = ()
    fabric: Fabric | None = None
    platform: Platform | None = None
    minor: int | None = None
    #: NUMA node of the GPU's own memory where the OS sees it as one (C2C systems such as
    #: GB200: the ``GPU NUMA ID`` column of ``nvidia-smi topo -m``); None elsewhere.
    gpu_numa_id: int | None = None

    @property
    def numa_key(self) -> str:
        """The key that Contract 1 counts distinct values of: NUMA affinity, else CPU affinity."""
        if self.numa_affinity:
            return "numa:" + ",".join(map(str, self.numa_affinity))
        if self.cpu_affinity:
            return "cpus:" + self.cpu_affinity
        return "unknown"

    @property
    def degraded_links(self) -> tuple[NvLink, ...]:
        """NVLinks that are down or degraded."""
        return tuple(link for link in self.nvlinks if link.state != "up")


@dataclass(frozen=True)
class GpuPair:
    """How GPUs ``a < b`` reach each other.

    ``nvlinks`` counts the working bonded NVLinks (direct or through NVSwitch) that carry
    traffic between them; ``nvlinks_down`` the ones of that bond that are down or degraded.
    ``pcie`` is the PCIe path class, None where the source does not say (``topo -m`` prints
    only ``NV#`` for NVLink pairs).
    """

    a: int
    b: int
    nvlinks: int = 0
    pcie: PcieClass | None = None
    via_nvswitch: bool = False
    nvlinks_down: int = 0

    @property
    def known(self) -> bool:
        """Whether the source said how the pair connects (an ``nvidia-smi -q -x`` report, for
        one, has no path matrix). Placement scores an unknown path as ``SYS``."""
        return self.nvlinks > 0 or self.pcie is not None

    @property
    def path_class(self) -> str:
        """``NV<n>`` with working NVLinks, else the PCIe class; ``?`` when unknown."""
        if self.nvlinks > 0:
            return f"NV{self.nvlinks}"
        return self.pcie or "?"


@dataclass(frozen=True)
class NvSwitch:
    """One NVSwitch (a plane of the node's NVLink fabric) and the links each GPU has to it."""

    id: str
    pci_bus_id: str | None = None
    #: ``(gpu index, number of links)`` per attached GPU.
    gpu_links: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Nic:
    """A network adapter and its PCIe path class to each GPU (in GPU order)."""

    name: str
    device: str | None = None
    pci_bus_id: str | None = None
    numa_node: int | None = None
    gpu_paths: tuple[PcieClass, ...] = ()
    #: Path class to each NIC of the node, in NIC order (``X`` for itself); empty where the
    #: source does not say.
    nic_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeTopology:
    """The GPU topology of one node.

    Build one with :func:`nvtopo.discover`, :func:`nvtopo.system`,
    :meth:`from_nvidia_smi` or :meth:`from_json` (the two conveniences that reach up to
    :mod:`nvtopo.formats`; every other format has its free functions there).

    Examples
    --------
    >>> import nvtopo
    >>> t = nvtopo.system("dgx-h100")
    >>> len(t.gpus), t.path_class(0, 7)
    (8, 'NV18')
    """

    gpus: tuple[Gpu, ...]
    pairs: tuple[GpuPair, ...] = ()
    nvswitches: tuple[NvSwitch, ...] = ()
    nics: tuple[Nic, ...] = ()
    name: str | None = None
    system: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    #: CPU list of each CPU NUMA node, where known (``{0: "0-55,112-167"}``).
    numa_cpus: dict[int, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        indices = [g.index for g in self.gpus]
        if indices != sorted(set(indices)):
            raise TopologyError(f"GPU indices must be unique and ascending, got {indices}")
        owner: dict[str, int] = {}
        for g in self.gpus:
            if g.uuid is not None:
                if g.uuid in owner:
                    raise TopologyError(
                        f"GPUs {owner[g.uuid]} and {g.index} have the same UUID {g.uuid}"
                    )
                owner[g.uuid] = g.index
        # Pairs and NICs come shared between the trays of a kind (decoded parts, catalog
        # racks): each pair of objects is checked once per GPU set, and held while it counts
        # as checked, so that no other object can take its id.
        key = (tuple(indices), id(self.pairs), id(self.nics))
        held = _CHECKED.get(key)
        if held is None or held[0] is not self.pairs or held[1] is not self.nics:
            _check_pairs(self.pairs, indices)
            _check_nics(self.nics, len(self.gpus))
            if len(_CHECKED) >= _CHECKED_LIMIT:
                _CHECKED.clear()
            _CHECKED[key] = (self.pairs, self.nics)

    # -- lookups -------------------------------------------------------------------------

    @cached_property
    def _pair_index(self) -> dict[tuple[int, int], GpuPair]:
        return {(p.a, p.b): p for p in self.pairs}

    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def gpu(self, index: int) -> Gpu:
        """The GPU with NVML index ``index``."""
        for g in self.gpus:
            if g.index == index:
                return g
        raise TopologyError(f"no GPU {index} on this node (GPUs: {list(self.gpu_indices)})")

    def pair(self, a: int, b: int) -> GpuPair:
        """The pair record of GPUs ``a`` and ``b`` (a default SYS pair when none is recorded)."""
        if a == b:
            raise TopologyError(f"GPU {a} paired with itself")
        lo, hi = (a, b) if a < b else (b, a)
        found = self._pair_index.get((lo, hi))
        if found is not None:
            return found
        self.gpu(lo), self.gpu(hi)
        return GpuPair(lo, hi)

    def path_class(self, a: int, b: int) -> str:
        """``nvidia-smi topo -m`` notation for the path from ``a`` to ``b`` (``X`` if a == b)."""
        return "X" if a == b else self.pair(a, b).path_class

    def iter_pairs(self) -> Iterator[GpuPair]:
        """Every GPU pair ``a < b`` in order, recorded or default."""
        idx = self.gpu_indices
        for i, a in enumerate(idx):
            for b in idx[i + 1 :]:
                yield self.pair(a, b)

    @cached_property
    def unknown_pairs(self) -> tuple[tuple[int, int], ...]:
        """GPU pairs ``(a, b)`` whose path the source did not give (see :attr:`GpuPair.known`)."""
        return tuple((p.a, p.b) for p in self.iter_pairs() if not p.known)

    def pair_bandwidth(self, a: int, b: int) -> int:
        """NVLink GB/s per direction between ``a`` and ``b`` (0 without NVLinks).

        Symmetric, as the core scores it: the pair's NVLink generation is the lower-numbered
        GPU's, else the other's.
        """
        p = self.pair(a, b)
        gen = self.gpu(p.a).nvlink_generation or self.gpu(p.b).nvlink_generation
        return p.nvlinks * nvlink_bandwidth(gen)

    @property
    def numa_keys(self) -> tuple[str, ...]:
        return tuple(g.numa_key for g in self.gpus)

    @property
    def cliques(self) -> tuple[str | None, ...]:
        """Each GPU's clique (``"<clusterUUID>.<cliqueId>"``) or None."""
        return tuple(g.fabric.clique if g.fabric else None for g in self.gpus)

    @property
    def clique(self) -> str | None:
        """The node's NVLink domain: set only when every GPU agrees on a healthy clique
        (the rule, with the reason when there is none: :func:`nvtopo.model.health.node_clique`)."""
        return node_clique(self).clique

    @cached_property
    def unfit_gpus(self) -> frozenset[int]:
        """GPUs with a health finding: NVLinks down or degraded, or fabric health Degraded or
        Unhealthy (:mod:`nvtopo.model.gpu_health`). Placement leaves them out."""
        from nvtopo.model.gpu_health import unfit_gpus

        return unfit_gpus(self)

    def nvlink_islands(self) -> tuple[tuple[int, ...], ...]:
        """Connected components of the working-NVLink graph, each a sorted tuple of GPUs."""
        parent = {i: i for i in self.gpu_indices}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for p in self.pairs:
            if p.nvlinks > 0:
                parent[find(p.a)] = find(p.b)
        groups: dict[int, list[int]] = {}
        for i in self.gpu_indices:
            groups.setdefault(find(i), []).append(i)
        return tuple(sorted(tuple(g) for g in groups.values()))

    # -- constructors and views ------------------------------------------------------------

    @classmethod
    def from_nvidia_smi(cls, text: str | bytes, *, source: str = "<text>") -> NodeTopology:
        """Parse the output of ``nvidia-smi topo -m`` (text, or the bytes of
        ``subprocess.check_output``)."""
        from nvtopo._validate import capture_text
        from nvtopo.formats.smi_topo import parse_topo_matrix

        text = capture_text(text, source=source, command="nvidia-smi topo -m")
        return parse_topo_matrix(text, source=source)

    @classmethod
    def from_json(
        cls, data: str | bytes | dict[str, Any], *, source: str = "<json>"
    ) -> NodeTopology:
        """Read the ``nvtopo.dev/v1`` ``NodeTopology`` JSON format (text or parsed)."""
        from nvtopo._validate import require_document
        from nvtopo.formats.jsonio import node_from_json

        require_document(data, source=source)
        return node_from_json(data, source=source)

    def replace_gpus(self, gpus: Iterable[Gpu]) -> NodeTopology:
        """A copy with ``gpus`` in place of this node's GPUs (same indices)."""
        from dataclasses import replace

        return replace(self, gpus=tuple(gpus))


def _check_pairs(pairs: tuple[GpuPair, ...], indices: list[int]) -> None:
    known = set(indices)
    seen: set[tuple[int, int]] = set()
    for p in pairs:
        if p.a >= p.b or p.a not in known or p.b not in known:
            raise TopologyError(f"pair ({p.a}, {p.b}) does not name two GPUs of this node")
        if (p.a, p.b) in seen:
            raise TopologyError(f"pair ({p.a}, {p.b}) is given twice")
        for what, count in (("nvlinks", p.nvlinks), ("nvlinks_down", p.nvlinks_down)):
            if not 0 <= count <= MAX_NVLINKS:
                raise TopologyError(
                    f"pair ({p.a}, {p.b}): {what} must be 0 to {MAX_NVLINKS}, got {count}"
                )
        seen.add((p.a, p.b))


def _check_nics(nics: tuple[Nic, ...], gpu_count: int) -> None:
    for k, nic in enumerate(nics):
        if nic.gpu_paths and len(nic.gpu_paths) != gpu_count:
            raise TopologyError(
                f"NIC {nic.name} has {len(nic.gpu_paths)} GPU paths for {gpu_count} GPUs"
            )
        if nic.nic_paths and len(nic.nic_paths) != len(nics):
            raise TopologyError(
                f"NIC {nic.name} has {len(nic.nic_paths)} NIC paths for {len(nics)} NICs"
            )
        if nic.nic_paths and not _nic_row_ok(nic.nic_paths, k):
            for j, cell in enumerate(nic.nic_paths):
                if (cell == "X") != (j == k) or (cell != "X" and cell not in PCIE_CLASSES):
                    raise TopologyError(f"NIC {nic.name}: path {cell!r} to NIC {j}")


#: Pairs and NIC lists found right, by GPU indices and object identity (see __post_init__).
_CHECKED: dict[tuple[tuple[int, ...], int, int], tuple[tuple[GpuPair, ...], tuple[Nic, ...]]] = {}
_CHECKED_LIMIT = 32
