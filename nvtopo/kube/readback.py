"""Reading the cluster back from Kubernetes: :func:`nvtopo.kube.cluster_from_kubernetes`.

What a scheduler needs to call :func:`nvtopo.place` comes from two lists:

- the driver's ResourceSlices (``fieldSelector=spec.driver=<driver>``): one pool per node,
  named after it. Of each pool only the slices of its highest generation count, as for the
  scheduler. The node's topology is the document in the first slice's
  ``topology.nvtopo.dev/node-topology`` annotation (:mod:`nvtopo.dra.annotation`), which
  holds every GPU pair; its clique is the ``topology.nvtopo.dev/clique`` attribute its
  devices agree on. A pool without the annotation (published by an older or another
  publisher) is rebuilt from device attributes alone: GPUs, NUMA keys, NVLink islands, with
  NVLink counts ``min(nvlinkCount)`` inside an island and PCIe classes guessed from the PCIe
  root and NUMA node across islands, which is exact on NVSwitch machines and approximate on
  direct-link meshes;
- every ResourceClaim in every namespace: a device named in a claim's
  ``status.allocation.devices.results`` (driver, pool, device) is in use, so its GPU is not
  free. A pool named in a result of the ComputeDomain driver (``compute-domain.nvidia.com``,
  whose channels are allocated per node) marks that node as already in a ComputeDomain.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from nvtopo.dra.annotation import TOPOLOGY_ANNOTATION, decode_topology
from nvtopo.dra.attributes import STANDARD_DOMAIN, TOPOLOGY_DOMAIN, device_name
from nvtopo.dra.slices import DEFAULT_DRIVER
from nvtopo.exceptions import TopologyError
from nvtopo.kube.client import RESOURCE_CLAIMS, RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import RetryPolicy
from nvtopo.model import Gpu, GpuPair, NodeTopology, PcieClass
from nvtopo.model.cluster import Cluster, ClusterNode

__all__ = [
    "COMPUTE_DOMAIN_DRIVER",
    "allocated_devices",
    "cluster_from_kubernetes",
    "cluster_from_objects",
    "topology_from_devices",
]

log = logging.getLogger("nvtopo.kube.readback")

#: The DRA driver of NVIDIA's ComputeDomain channels.
COMPUTE_DOMAIN_DRIVER = "compute-domain.nvidia.com"
_GPU_NAME = re.compile(r"^gpu-(\d+)$")
_MIB = Decimal(1024 * 1024)


def _value(attrs: Mapping[str, Any], name: str) -> Any:
    v = attrs.get(name)
    # ``type(v) is dict`` first: the ABC check costs more than the rest of a read-back.
    if (type(v) is dict or isinstance(v, Mapping)) and len(v) == 1:
        return next(iter(v.values()))
    return None


def _memory_mib(device: Mapping[str, Any]) -> int | None:
    cap = ((device.get("capacity") or {}).get("memory") or {}).get("value")
    if cap is None:
        return None
    try:
        from kubernetes.utils import parse_quantity

        return int(parse_quantity(cap) / _MIB)  # type: ignore[no-untyped-call]
    except (ImportError, ValueError, ArithmeticError, TypeError):
        return None


def _numa(key: str | None) -> tuple[tuple[int, ...], str | None]:
    """``numa:0,1`` → NUMA affinity; ``cpus:<list>`` (or a digest) → a CPU affinity key."""
    if not key:
        return (), None
    kind, _, rest = key.partition(":")
    if kind == "numa":
        try:
            return tuple(int(x) for x in rest.split(",") if x), None
        except ValueError:
            return (), key
    return (), rest if kind == "cpus" else key


def _pcie_guess(a: Gpu, b: Gpu) -> PcieClass:
    if a.pcie_root is not None and a.pcie_root == b.pcie_root:
        return "PHB"
    if a.numa_node is not None and a.numa_node == b.numa_node:
        return "NODE"
    return "SYS"


def topology_from_devices(devices: Iterable[Mapping[str, Any]], *, node: str) -> NodeTopology:
    """A node's topology rebuilt from its published device attributes alone (see above).

    Devices not named ``gpu-<n>`` are skipped; ``n`` becomes the GPU index.
    """
    gpus, islands, counts = [], {}, {}
    t = TOPOLOGY_DOMAIN
    for d in devices:
        m = _GPU_NAME.match(str(d.get("name", "")))
        if m is None:
            continue
        attrs = d.get("attributes") or {}
        index = int(m.group(1))
        affinity, cpus = _numa(_value(attrs, f"{t}/numaKey"))
        cc = _value(attrs, "cudaComputeCapability")
        gpus.append(
            Gpu(
                index=index,
                uuid=_value(attrs, "uuid"),
                name=_value(attrs, "productName"),
                brand=_value(attrs, "brand"),
                architecture=_value(attrs, "architecture"),
                compute_capability=".".join(str(cc).split(".")[:2]) if cc else None,
                memory_mib=_memory_mib(d),
                pci_bus_id=_value(attrs, f"{STANDARD_DOMAIN}/pciBusID"),
                pcie_root=_value(attrs, f"{STANDARD_DOMAIN}/pcieRoot"),
                numa_node=_value(attrs, f"{STANDARD_DOMAIN}/numaNode"),
                numa_affinity=affinity,
                cpu_affinity=cpus,
                nvlink_generation=_value(attrs, f"{t}/nvlinkGeneration"),
                minor=index,
            )
        )
        islands[index] = _value(attrs, f"{t}/nvlinkIsland")
        counts[index] = _value(attrs, f"{t}/nvlinkCount")
    gpus.sort(key=lambda g: g.index)
    pairs = []
    for i, a in enumerate(gpus):
        for b in gpus[i + 1 :]:
            same = islands[a.index] is not None and islands[a.index] == islands[b.index]
            links = [c for c in (counts[a.index], counts[b.index]) if isinstance(c, int)]
            if same and (not links or min(links) > 0):
                pairs.append(GpuPair(a.index, b.index, nvlinks=min(links) if links else 1))
            else:
                pairs.append(GpuPair(a.index, b.index, pcie=_pcie_guess(a, b)))
    try:
        return NodeTopology(gpus=tuple(gpus), pairs=tuple(pairs), name=node)
    except TopologyError as exc:
        raise TopologyError(f"node {node}: {exc}") from None


def _generation(s: Mapping[str, Any]) -> int:
    gen = ((s.get("spec") or {}).get("pool") or {}).get("generation", 0)
    return gen if isinstance(gen, int) else 0


def _node(
    pool: str, slices: list[Mapping[str, Any]]
) -> tuple[str, NodeTopology, str | None, dict[str, int]]:
    """The node of one pool (name, topology, clique), and its device name → GPU index map."""
    newest = max(_generation(s) for s in slices)
    current = sorted(
        (s for s in slices if _generation(s) == newest),
        key=lambda s: str((s.get("metadata") or {}).get("name", "")),
    )
    name = str((current[0].get("spec") or {}).get("nodeName") or pool)
    devices = [d for s in current for d in (s.get("spec") or {}).get("devices") or []]
    text = next(
        (
            ann[TOPOLOGY_ANNOTATION]
            for s in current
            if TOPOLOGY_ANNOTATION in (ann := (s.get("metadata") or {}).get("annotations") or {})
        ),
        None,
    )
    if text is not None:
        where = f"ResourceSlice {(current[0].get('metadata') or {}).get('name')}"
        topology = decode_topology(text, where=where)
        names = {device_name(g): g.index for g in topology.gpus}
    else:
        log.info("pool %s has no %s annotation: rebuilt from attributes", pool, TOPOLOGY_ANNOTATION)
        topology = topology_from_devices(devices, node=name)
        names = {device_name(g): g.index for g in topology.gpus}
    cliques = {_value(d.get("attributes") or {}, f"{TOPOLOGY_DOMAIN}/clique") for d in devices}
    clique = cliques.pop() if len(cliques) == 1 else None
    return name, topology, clique, names


def allocated_devices(claims: Iterable[Mapping[str, Any]], driver: str) -> set[tuple[str, str]]:
    """``(pool, device)`` of every device of ``driver`` allocated in ``claims``.

    Examples
    --------
    >>> claim = {"status": {"allocation": {"devices": {"results": [
    ...     {"request": "gpus", "driver": "gpu.nvtopo.dev", "pool": "n1", "device": "gpu-3"}]}}}}
    >>> allocated_devices([claim], "gpu.nvtopo.dev")
    {('n1', 'gpu-3')}
    """
    busy: set[tuple[str, str]] = set()
    for c in claims:
        allocation = (c.get("status") or {}).get("allocation") or {}
        for r in (allocation.get("devices") or {}).get("results") or []:
            if r.get("driver") == driver and r.get("pool") and r.get("device"):
                busy.add((str(r["pool"]), str(r["device"])))
    return busy


def cluster_from_objects(
    slices: Iterable[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]] = (),
    *,
    driver: str = DEFAULT_DRIVER,
    compute_domain_driver: str = COMPUTE_DOMAIN_DRIVER,
    name: str | None = None,
) -> Cluster:
    """The :class:`Cluster` that ResourceSlice and ResourceClaim objects (as dicts) describe.

    :func:`cluster_from_kubernetes` lists them; this is the part without a server.
    """
    with _no_gc_pauses():
        return _cluster_from_objects(slices, claims, driver, compute_domain_driver, name)


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """The cyclic garbage collector off while the cluster is built, as it was before.

    Reading back builds hundreds of thousands of small objects (GPUs, links, nodes) while the
    listed slices (tens of megabytes of dicts) are alive; every collection the allocations
    trigger walks all of them, which doubled the CPU time at 18,432 nodes. Nothing built
    here is cyclic garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cluster_from_objects(
    slices: Iterable[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]],
    driver: str,
    compute_domain_driver: str,
    name: str | None,
) -> Cluster:
    claims = list(claims)
    pools: dict[str, list[Mapping[str, Any]]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pools.setdefault(str((spec.get("pool") or {}).get("name", "")), []).append(s)
    # Busy devices grouped by pool once, so each pool looks up its own: linear in
    # pools + allocations, not their product.
    busy: dict[str, set[str]] = {}
    for pool, device in allocated_devices(claims, driver):
        busy.setdefault(pool, set()).add(device)
    in_domain = {pool for pool, _ in allocated_devices(claims, compute_domain_driver)}
    nodes = []
    for pool in sorted(pools):
        name, topology, clique, names = _node(pool, pools[pool])
        taken = {names[d] for d in busy.get(pool, ()) if d in names}
        free = None if not taken else tuple(i for i in topology.gpu_indices if i not in taken)
        nodes.append(
            ClusterNode(
                name=name,
                topology=topology,
                clique=clique,
                free_gpus=free,
                in_compute_domain=pool in in_domain or name in in_domain,
            )
        )
    return Cluster(tuple(nodes), name=name)


def cluster_from_kubernetes(
    api_client: Any,
    *,
    driver: str = DEFAULT_DRIVER,
    compute_domain_driver: str = COMPUTE_DOMAIN_DRIVER,
    retry: RetryPolicy | None = None,
    name: str | None = None,
) -> Cluster:
    """The cluster as the API server holds it: nodes, topologies, cliques, free GPUs.

    Parameters
    ----------
    api_client
        A ``kubernetes.client.ApiClient`` allowed to list ResourceSlices and ResourceClaims.
    driver
        The DRA driver nvtopo published under.
    compute_domain_driver
        The driver whose allocations put a node in a ComputeDomain.
    retry
        Retry policy for 429/5xx answers.
    name
        The name given to the returned cluster.

    Raises
    ------
    KubeApiError
        A list failed for good (one line: what, status, message).
    ParseError
        A topology annotation cannot be read (names the slice).
    """
    from kubernetes.client.exceptions import ApiException

    from nvtopo.kube.retry import KubeApiError, api_message

    api = RawApi(api_client, policy=retry)
    try:
        with _no_gc_pauses():  # the pages decode into as many small objects
            slices = list(
                api.list(
                    RESOURCE_SLICES,
                    what=f"list ResourceSlices of {driver}",
                    field_selector=f"spec.driver={driver}",
                )
            )
            claims = list(api.list(RESOURCE_CLAIMS, what="list ResourceClaims in all namespaces"))
    except ApiException as exc:
        raise KubeApiError(
            f"reading the cluster from {api.host}: {api_message(exc)}", status=exc.status
        ) from None
    return cluster_from_objects(
        slices, claims, driver=driver, compute_domain_driver=compute_domain_driver, name=name
    )
