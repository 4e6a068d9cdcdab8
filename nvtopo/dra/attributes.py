"""The DRA device of each GPU: attributes and capacity in ``resource.k8s.io/v1`` form.

Names and types follow NVIDIA's GPU DRA driver, so CEL selectors written for it keep working
when the driver name is the same: ``type``, ``uuid``, ``productName``, ``brand`` and
``architecture`` are strings; ``cudaComputeCapability``, ``driverVersion`` and
``cudaDriverVersion`` are versions; the standard ``resource.kubernetes.io/pcieRoot`` and
``resource.kubernetes.io/pciBusID`` are strings and ``resource.kubernetes.io/numaNode`` an int;
capacity ``memory`` is a quantity. nvtopo adds the topology under ``topology.nvtopo.dev/``:
``clique`` and ``clusterUUID`` (strings), ``nvlinkIsland``, ``nvlinkGeneration`` and
``nvlinkCount`` (ints), ``numaKey`` (string) and ``set2``/``set4``/``set8`` (ints: the index of
the GPU's group in Contract 1's greedy partition, see :func:`partition_groups`).

An attribute whose value is unknown is left out rather than published empty.

Examples
--------
>>> import nvtopo
>>> from nvtopo.dra.attributes import gpu_devices
>>> dev = gpu_devices(nvtopo.system("dgx-h100"))[0]
>>> dev["name"], dev["attributes"]["cudaComputeCapability"], dev["capacity"]["memory"]
('gpu-0', {'version': '9.0.0'}, {'value': '81559Mi'})
>>> dev["attributes"]["topology.nvtopo.dev/set4"]
{'int': 0}
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from nvtopo.dra.limits import MAX_ATTRIBUTE_VALUE_BYTES
from nvtopo.model import Gpu, NodeTopology

__all__ = [
    "DEFAULT_SET_SIZES",
    "MAX_PARTITION_GPUS",
    "STANDARD_DOMAIN",
    "TOPOLOGY_DOMAIN",
    "device_name",
    "device_uuid",
    "gpu_devices",
    "memory_quantity",
    "partition_groups",
    "to_semver",
]

#: Domain of nvtopo's topology attributes.
TOPOLOGY_DOMAIN = "topology.nvtopo.dev"
#: Domain of the attributes Kubernetes standardises across drivers.
STANDARD_DOMAIN = "resource.kubernetes.io"
#: Group sizes published as ``set<k>``.
DEFAULT_SET_SIZES: tuple[int, ...] = (2, 4, 8)
#: Most GPUs of a node the core partitions (its GPU-set bit width); larger synthetic nodes
#: get no ``set<k>`` attributes.
MAX_PARTITION_GPUS = 128

_VERSION_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")

Attributes = dict[str, dict[str, Any]]


def to_semver(text: str) -> str:
    """``text`` as the semver 2.0.0 string the API wants, when it is a plain dotted version.

    Missing parts become 0 and leading zeros go (``"9.0"`` → ``"9.0.0"``,
    ``"535.104.05"`` → ``"535.104.5"``), the way NVIDIA's driver normalises its versions. Text
    that is no such version is returned unchanged, for the limit check to refuse.

    Examples
    --------
    >>> to_semver("9.0"), to_semver("535.104.05"), to_semver("12.4.1"), to_semver("n/a")
    ('9.0.0', '535.104.5', '12.4.1', 'n/a')
    """
    match = _VERSION_RE.match(text.strip())
    if not match:
        return text
    return ".".join(str(int(p or 0)) for p in match.groups())


_BINARY_SUFFIXES = ("Mi", "Gi", "Ti", "Pi", "Ei")


def memory_quantity(mib: int) -> str:
    """A MiB count as the canonical binary quantity Kubernetes stores (``81559Mi``, ``16Gi``).

    Examples
    --------
    >>> memory_quantity(81559), memory_quantity(16384), memory_quantity(0)
    ('81559Mi', '16Gi', '0')
    """
    if mib == 0:
        return "0"
    value, unit = mib, 0
    while value % 1024 == 0 and unit < len(_BINARY_SUFFIXES) - 1:
        value //= 1024
        unit += 1
    return f"{value}{_BINARY_SUFFIXES[unit]}"


def device_name(gpu: Gpu) -> str:
    """``gpu-<minor>``, the name NVIDIA's driver gives a whole GPU (index when no minor)."""
    return f"gpu-{gpu.minor if gpu.minor is not None else gpu.index}"


def device_uuid(device: Mapping[str, Any]) -> str | None:
    """The GPU UUID a ResourceSlice device publishes (attribute ``uuid``, or
    ``<domain>/uuid`` as other drivers may qualify it), or None when it publishes none.

    Examples
    --------
    >>> device_uuid({"name": "gpu-0", "attributes": {"uuid": {"string": "GPU-1"}}})
    'GPU-1'
    >>> device_uuid({"name": "gpu-0", "attributes": {"uuid": {"int": 3}}}) is None
    True
    """
    for name, value in (device.get("attributes") or {}).items():
        if (name == "uuid" or name.endswith("/uuid")) and isinstance(value, Mapping):
            text = value.get("string")
            if isinstance(text, str) and text:
                return text
    return None


def partition_groups(
    topology: NodeTopology, sizes: Iterable[int] = DEFAULT_SET_SIZES
) -> dict[int, tuple[tuple[int, ...], ...]]:
    """Contract 1 groups of each published size: ``{k: nvtopo.partition(topology, k)}``.

    Only sizes smaller than the node's GPU count are kept (a single group of every GPU says
    nothing), and none for nodes over :data:`MAX_PARTITION_GPUS` GPUs.
    """
    n = len(topology.gpus)
    wanted = sorted({k for k in sizes if 1 < k < n})
    if not wanted or n > MAX_PARTITION_GPUS:
        return {}
    from nvtopo.select import partition

    return {k: partition(topology, k) for k in wanted}


def _short(text: str) -> str:
    """A key that fits a string attribute: itself, or a stable digest when too long."""
    if len(text.encode("utf-8")) <= MAX_ATTRIBUTE_VALUE_BYTES:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _nvlink_count(topology: NodeTopology, gpu: Gpu) -> int | None:
    if gpu.nvlinks:
        return sum(1 for link in gpu.nvlinks if link.state == "up")
    # No per-link record: a GPU with no NVLink pair has none; one with NVLink pairs (a
    # ``topo -m`` capture) has an unknown count.
    has_pairs = any(p.nvlinks > 0 and gpu.index in (p.a, p.b) for p in topology.pairs)
    return None if has_pairs else 0


def _gpu_attributes(
    topology: NodeTopology,
    gpu: Gpu,
    *,
    clique: str | None,
    island: int,
    sets: dict[int, int],
) -> Attributes:
    attrs: Attributes = {"type": {"string": "gpu"}}

    def put(name: str, kind: str, value: Any) -> None:
        if value is not None and value != "":
            attrs[name] = {kind: value}

    put("uuid", "string", gpu.uuid)
    put("productName", "string", gpu.name)
    put("brand", "string", gpu.brand)
    put("architecture", "string", gpu.architecture)
    if gpu.compute_capability:
        put("cudaComputeCapability", "version", to_semver(gpu.compute_capability))
    if topology.driver_version:
        put("driverVersion", "version", to_semver(topology.driver_version))
    if topology.cuda_version:
        put("cudaDriverVersion", "version", to_semver(topology.cuda_version))
    put(f"{STANDARD_DOMAIN}/pcieRoot", "string", gpu.pcie_root)
    put(f"{STANDARD_DOMAIN}/pciBusID", "string", gpu.pci_bus_id)
    put(f"{STANDARD_DOMAIN}/numaNode", "int", gpu.numa_node)
    t = TOPOLOGY_DOMAIN
    if clique is not None:
        put(f"{t}/clique", "string", clique)
        put(f"{t}/clusterUUID", "string", clique.rpartition(".")[0] or None)
    put(f"{t}/nvlinkIsland", "int", island)
    put(f"{t}/nvlinkGeneration", "int", gpu.nvlink_generation)
    put(f"{t}/nvlinkCount", "int", _nvlink_count(topology, gpu))
    if gpu.numa_affinity or gpu.cpu_affinity:
        put(f"{t}/numaKey", "string", _short(gpu.numa_key))
    for k, group in sorted(sets.items()):
        put(f"{t}/set{k}", "int", group)
    return attrs


def gpu_devices(
    topology: NodeTopology,
    *,
    clique: str | None = None,
    set_sizes: Iterable[int] = DEFAULT_SET_SIZES,
    groups: dict[int, tuple[tuple[int, ...], ...]] | None = None,
) -> list[dict[str, Any]]:
    """One ``resource.k8s.io/v1`` device per GPU of ``topology``, in allocation order.

    Parameters
    ----------
    topology
        The node.
    clique
        The node's NVLink domain; by default the one every GPU's fabric agrees on
        (:attr:`NodeTopology.clique`).
    set_sizes
        Group sizes to publish as ``set<k>`` (see :func:`partition_groups`).
    groups
        Precomputed :func:`partition_groups` (callers building many nodes share them).

    Notes
    -----
    The stock allocator is first fit in slice order, so the order of devices decides which
    group a ``matchAttribute: set<k>`` claim gets on a free node: the group of the first
    device. Devices are therefore listed group by group (by ``set8``, then ``set4``, then
    ``set2`` index, then GPU index, GPUs in no group last), which puts Contract 1's best group
    of every size first whenever those groups nest (the best pair inside the best four inside
    the best eight, as on every catalog machine), and keeps the best-connected GPUs together
    for plain count claims. Where they do not nest (a degraded DGX-1 whose best pair lies
    outside its best four), the larger size wins and a smaller claim gets a group inside the
    larger best group instead.
    """
    if clique is None:
        clique = topology.clique
    if groups is None:
        groups = partition_groups(topology, set_sizes)
    member: dict[int, dict[int, int]] = {g.index: {} for g in topology.gpus}
    for k, ks_groups in groups.items():
        for gi, group in enumerate(ks_groups):
            for index in group:
                member[index][k] = gi
    island_of = {i: n for n, island in enumerate(topology.nvlink_islands()) for i in island}
    never = len(topology.gpus) + 1
    sizes_desc = sorted(groups, reverse=True)

    def order(gpu: Gpu) -> tuple[int, ...]:
        sets = member[gpu.index]
        return (*(sets.get(k, never) for k in sizes_desc), gpu.index)

    devices = []
    for gpu in sorted(topology.gpus, key=order):
        attrs = _gpu_attributes(
            topology, gpu, clique=clique, island=island_of[gpu.index], sets=member[gpu.index]
        )
        device: dict[str, Any] = {"name": device_name(gpu), "attributes": attrs}
        if gpu.memory_mib is not None:
            device["capacity"] = {"memory": {"value": memory_quantity(gpu.memory_mib)}}
        devices.append(device)
    return devices
