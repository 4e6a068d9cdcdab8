"""What the allocator can hand out: each node's topology, clique, devices and free GPUs.

Read from two lists, as the scheduler reads them: ResourceSlices and every ResourceClaim.
nvtopo's own slices (driver :data:`~nvtopo.dra.slices.DEFAULT_DRIVER`) give each node's
topology and clique. The devices handed out are those of the *target* driver:

- nvtopo's own (``gpu.nvtopo.dev``): device ``gpu-<minor>`` of the node's pool;
- companion mode (``gpu.nvidia.com``, NVIDIA's GPU driver): the device of NVIDIA's slice for
  the same node whose ``uuid`` attribute is the GPU's UUID in nvtopo's topology. A GPU that
  NVIDIA does not publish is not handed out.

A GPU is free unless a claim's ``status.allocation`` names its device, or its device
carries a ``NoSchedule``/``NoExecute`` taint in the target slices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nvtopo.dra.attributes import device_name, device_uuid
from nvtopo.dra.slices import DEFAULT_DRIVER
from nvtopo.kube.readback import COMPUTE_DOMAIN_DRIVER, allocated_devices, cluster_from_objects
from nvtopo.model import Cluster, ClusterNode

__all__ = ["Device", "Inventory", "TopologyCache", "read_inventory"]

_BLOCKING_TAINTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Device:
    """A device of the target driver: ``(driver, pool, device)`` as a claim result names it."""

    driver: str
    pool: str
    name: str


@dataclass(frozen=True)
class Inventory:
    """The cluster with free GPUs as the claims leave them, and each GPU's device."""

    cluster: Cluster
    devices: Mapping[str, Mapping[int, Device]]
    #: ``(pool, device)`` of every target-driver device some claim holds.
    busy: frozenset[tuple[str, str]]

    def fingerprint(self) -> tuple[Any, ...]:
        """Changes whenever capacity does: retry a refused gang only then."""
        return (
            tuple(sorted((n.name, n.free, n.domain) for n in self.cluster.nodes)),
            self.busy,
        )


def _target_devices(
    slices: Iterable[Mapping[str, Any]], driver: str
) -> tuple[dict[str, list[tuple[str, Mapping[str, Any]]]], set[tuple[str, str]]]:
    """Per node name: (pool, device object) of ``driver``; and the tainted (pool, device)."""
    by_node: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    tainted: set[tuple[str, str]] = set()
    newest: dict[str, int] = {}
    kept = []
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pool = spec.get("pool") or {}
        name, gen = str(pool.get("name", "")), int(pool.get("generation", 0) or 0)
        newest[name] = max(newest.get(name, gen), gen)
        kept.append((name, gen, spec))
    for pool, gen, spec in kept:
        if gen != newest[pool]:
            continue  # an older generation is being replaced; the scheduler ignores it too
        node = str(spec.get("nodeName") or pool)
        for d in spec.get("devices") or []:
            by_node.setdefault(node, []).append((pool, d))
            if any(t.get("effect") in _BLOCKING_TAINTS for t in d.get("taints") or []):
                tainted.add((pool, str(d.get("name"))))
    return by_node, tainted


class TopologyCache:
    """The nodes' topologies, decoded again only when the topology slices change.

    Decoding a thousand topology annotations takes a good part of a second; the slices
    change rarely, the claims at every placement.
    """

    def __init__(self) -> None:
        self._key: tuple[tuple[str, str], ...] | None = None
        self._cluster: Cluster | None = None

    def cluster(self, slices: list[Mapping[str, Any]], driver: str) -> Cluster:
        """Every node with its topology and clique (free and ComputeDomain left unset)."""
        mine = [s for s in slices if (s.get("spec") or {}).get("driver") == driver]
        key = tuple(
            sorted(
                (str(m.get("name")), str(m.get("resourceVersion") or m.get("generation") or ""))
                for m in (s.get("metadata") or {} for s in mine)
            )
        )
        if self._cluster is None or key != self._key:
            self._cluster = cluster_from_objects(mine, (), driver=driver)
            self._key = key
        return self._cluster


def read_inventory(
    slices: Iterable[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]],
    *,
    driver: str = DEFAULT_DRIVER,
    topology_driver: str = DEFAULT_DRIVER,
    cache: TopologyCache | None = None,
    base: Cluster | None = None,
) -> Inventory:
    """The :class:`Inventory` that ``slices`` and ``claims`` (API objects as dicts) describe.

    ``topology_driver`` publishes the topology (nvtopo's node agent); ``driver`` owns the
    devices handed out (the same, or ``gpu.nvidia.com`` in companion mode). ``cache``
    keeps decoded topologies from one call to the next; ``base``, when given, is the
    topology slices already decoded (a :class:`~nvtopo.kube.view.Snapshot`'s cluster): only
    its nodes' names, topologies and cliques are used.
    """
    slices, claims = list(slices), list(claims)
    if base is None:
        base = (cache or TopologyCache()).cluster(slices, topology_driver)
    # Claims of the ComputeDomain driver mark nodes already in a ComputeDomain.
    in_domain = {pool for pool, _ in allocated_devices(claims, COMPUTE_DOMAIN_DRIVER)}
    busy = frozenset(allocated_devices(claims, driver))
    targets, tainted = _target_devices(slices, driver)
    nodes: list[ClusterNode] = []
    devices: dict[str, dict[int, Device]] = {}
    for node in base.nodes:
        mine = targets.get(node.name, [])
        if driver == topology_driver:
            by_name = {str(d.get("name")): pool for pool, d in mine}
            found = {
                g.index: Device(driver, by_name[device_name(g)], device_name(g))
                for g in node.topology.gpus
                if device_name(g) in by_name
            }
        else:
            by_uuid = {
                uuid: (pool, str(d.get("name")))
                for pool, d in mine
                if (uuid := device_uuid(d)) is not None
            }
            found = {
                g.index: Device(driver, *by_uuid[g.uuid])
                for g in node.topology.gpus
                if g.uuid is not None and g.uuid in by_uuid
            }
        free = tuple(
            i
            for i, dev in sorted(found.items())
            if (dev.pool, dev.name) not in busy and (dev.pool, dev.name) not in tainted
        )
        devices[node.name] = found
        nodes.append(
            ClusterNode(
                name=node.name,
                topology=node.topology,
                clique=node.clique,
                free_gpus=free,
                in_compute_domain=node.name in in_domain,
            )
        )
    return Inventory(Cluster(tuple(nodes)), devices, busy)
