"""``resource.k8s.io/v1`` ResourceSlices: one pool per node, named after the node.

A pool holds every GPU of its node. When a node has more devices than one slice may carry
(128, or 64 when devices have taints or consume counters) the pool is split over several
slices that all say how many there are (``resourceSliceCount``), so the scheduler knows when
it has seen the whole pool. Slice names are ``<node>-<driver with dots as dashes>-<i>``,
shortened with a digest when that would pass the 253 characters of an object name.

Every manifest is checked against the API limits before it is returned
(:func:`nvtopo.dra.limits.check_resource_slice`).

Examples
--------
>>> import nvtopo
>>> from nvtopo.dra import resource_slices
>>> [s] = resource_slices(nvtopo.system("hgx-b200"), node="node-a")
>>> s["metadata"]["name"], s["spec"]["pool"], len(s["spec"]["devices"])
('node-a-gpu-nvtopo-dev-0', {'name': 'node-a', 'generation': 1, 'resourceSliceCount': 1}, 8)
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from nvtopo.dra.attributes import DEFAULT_SET_SIZES, device_name, gpu_devices, partition_groups
from nvtopo.dra.limits import (
    MAX_DEVICES_PER_SLICE,
    MAX_DEVICES_PER_SLICE_WITH_TAINTS_OR_COUNTERS,
    DraLimitError,
    check_attribute_value,
    check_device,
    check_dns_subdomain,
    check_driver_name,
    check_resource_slice,
)
from nvtopo.dra.taints import TAINTS_ANNOTATION, TaintEffect, device_taints, taints_digest
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode

__all__ = [
    "API_VERSION",
    "DEFAULT_DRIVER",
    "cluster_resource_slices",
    "resource_slices",
    "slice_name",
]

API_VERSION = "resource.k8s.io/v1"
#: The DRA driver name nvtopo publishes under unless told otherwise.
DEFAULT_DRIVER = "gpu.nvtopo.dev"
_MAX_NAME = 253

Manifest = dict[str, Any]


def slice_name(node: str, driver: str, index: int) -> str:
    """The deterministic, DNS-safe name of slice ``index`` of ``node``'s pool.

    Examples
    --------
    >>> slice_name("node-a", "gpu.nvtopo.dev", 0)
    'node-a-gpu-nvtopo-dev-0'
    >>> len(slice_name("n" * 250, "gpu.nvtopo.dev", 1))
    253
    """
    name = f"{node}-{driver.replace('.', '-')}-{index}".lower()
    if len(name) <= _MAX_NAME:
        return name
    tail = f"-{hashlib.sha256(name.encode()).hexdigest()[:10]}-{index}"
    # Cut, then trim so the kept part still ends in a letter or digit.
    head = name[: _MAX_NAME - len(tail)].rstrip("-.")
    return head + tail


def _check_args(driver: str, generation: int, max_devices_per_slice: int) -> None:
    where = "ResourceSlices"
    check_driver_name(driver, where=where)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise DraLimitError(f"{where}: pool generation {generation!r} must be an integer >= 0")
    if not 1 <= max_devices_per_slice <= MAX_DEVICES_PER_SLICE:
        raise DraLimitError(
            f"{where}: max_devices_per_slice {max_devices_per_slice} is outside 1.."
            f"{MAX_DEVICES_PER_SLICE} (the API limit)"
        )


def _with_taints(
    topology: NodeTopology, devices: list[dict[str, Any]], effect: TaintEffect | None
) -> list[dict[str, Any]]:
    """``devices`` with the health taints of their GPUs (:mod:`nvtopo.dra.taints`)."""
    if effect is None:
        return devices
    by_name = {device_name(g): device_taints(g, effect=effect) for g in topology.gpus}
    if not any(by_name.values()):
        return devices
    out = []
    for d in devices:
        taints = by_name.get(d["name"])
        out.append({**d, "taints": taints} if taints else d)
    return out


def _pool_slices(
    node: str,
    driver: str,
    generation: int,
    devices: list[dict[str, Any]],
    max_devices_per_slice: int,
) -> list[Manifest]:
    if any("taints" in d for d in devices):
        max_devices_per_slice = min(
            max_devices_per_slice, MAX_DEVICES_PER_SLICE_WITH_TAINTS_OR_COUNTERS
        )
    chunks = [
        devices[i : i + max_devices_per_slice]
        for i in range(0, len(devices), max_devices_per_slice)
    ] or [[]]
    pool = {"name": node, "generation": generation, "resourceSliceCount": len(chunks)}

    def metadata(i: int, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": slice_name(node, driver, i)}
        digest = taints_digest(chunk)
        if digest is not None:
            meta["annotations"] = {TAINTS_ANNOTATION: digest}
        return meta

    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ResourceSlice",
            "metadata": metadata(i, chunk),
            "spec": {
                "driver": driver,
                "nodeName": node,
                "pool": dict(pool),
                "devices": chunk,
            },
        }
        for i, chunk in enumerate(chunks)
    ]


def resource_slices(
    topology: NodeTopology,
    *,
    node: str,
    driver: str = DEFAULT_DRIVER,
    generation: int = 1,
    max_devices_per_slice: int = MAX_DEVICES_PER_SLICE,
    set_sizes: Iterable[int] = DEFAULT_SET_SIZES,
    clique: str | None = None,
    taint_effect: TaintEffect | None = "NoSchedule",
) -> list[Manifest]:
    """The ResourceSlice manifests (plain dicts) that publish ``topology`` as node ``node``.

    Parameters
    ----------
    topology
        The node's GPUs.
    node
        The Kubernetes node name; also the pool name.
    driver
        DRA driver name (a DNS subdomain of at most 63 characters).
    generation
        Pool generation; raise it whenever the pool's content changes.
    max_devices_per_slice
        Devices per slice, at most 128; 64 at most once any device carries a taint.
    set_sizes
        Group sizes published as ``topology.nvtopo.dev/set<k>``.
    clique
        The node's NVLink domain when known from elsewhere (a cluster file); by default the
        one its GPUs' fabric info agrees on.
    taint_effect
        The effect of the health taints on GPUs with NVLinks down or fabric health degraded
        (:mod:`nvtopo.dra.taints`); None publishes no taints.

    Raises
    ------
    DraLimitError
        A name or value breaks an API limit; the message names the device and attribute.

    Examples
    --------
    >>> import nvtopo
    >>> big = nvtopo.system("dgx2-v100")
    >>> [len(s["spec"]["devices"]) for s in resource_slices(big, node="n1",
    ...                                                      max_devices_per_slice=6)]
    [6, 6, 4]
    """
    _check_args(driver, generation, max_devices_per_slice)
    check_dns_subdomain(node, what="node name", where=f"node {node!r}")
    devices = gpu_devices(topology, clique=clique, set_sizes=set_sizes)
    devices = _with_taints(topology, devices, taint_effect)
    slices = _pool_slices(node, driver, generation, devices, max_devices_per_slice)
    names: set[str] = set()
    for s in slices:
        check_resource_slice(s)
        for d in s["spec"]["devices"]:
            if d["name"] in names:
                raise DraLimitError(
                    f"node {node!r}: device name {d['name']!r} appears twice in the pool"
                )
            names.add(d["name"])
    return slices


def _fresh(devices: list[dict[str, Any]], uuids: list[str] | None = None) -> list[dict[str, Any]]:
    # Each manifest gets its own dicts (callers may edit one node's slice; YAML output must not
    # turn shared objects into anchors), built straight from the checked template; ``uuids``
    # are the node's own GPU UUIDs where the template is a sibling node's.
    out = []
    for i, d in enumerate(devices):
        dev: dict[str, Any] = {
            "name": d["name"],
            "attributes": {k: dict(v) for k, v in d["attributes"].items()},
        }
        if uuids is not None:
            dev["attributes"]["uuid"] = {"string": uuids[i]}
        if "capacity" in d:
            dev["capacity"] = {k: dict(v) for k, v in d["capacity"].items()}
        out.append(dev)
    return out


@contextmanager
def _gc_paused() -> Iterator[None]:
    # A cluster build allocates millions of small dicts that form no reference cycles; cyclic
    # collections triggered by those allocations would walk the growing heap again and again
    # and triple the build time (measured: 2.9 s against 0.8 s for 18,432 nodes).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def cluster_resource_slices(
    cluster: Cluster,
    *,
    driver: str = DEFAULT_DRIVER,
    generation: int = 1,
    max_devices_per_slice: int = MAX_DEVICES_PER_SLICE,
    set_sizes: Iterable[int] = DEFAULT_SET_SIZES,
    taint_effect: TaintEffect | None = "NoSchedule",
) -> list[Manifest]:
    """ResourceSlices for every node of ``cluster``, in node order.

    Nodes that share one :class:`NodeTopology` object (the racks of the catalog) share its
    device list: the partition and the attribute checks run once per topology and clique,
    then each node gets its own copy under its own name. Each node's clique is its
    :attr:`ClusterNode.domain`.

    Examples
    --------
    >>> import nvtopo
    >>> slices = cluster_resource_slices(nvtopo.cluster("gb200-nvl72x2"))
    >>> len(slices), len({s["spec"]["pool"]["name"] for s in slices})
    (36, 36)
    """
    _check_args(driver, generation, max_devices_per_slice)
    templates = _Templates(tuple(set_sizes), taint_effect)
    out: list[Manifest] = []
    with _gc_paused():
        for n in cluster.nodes:
            check_dns_subdomain(n.name, what="node name", where=f"node {n.name!r}")
            devices = _fresh(*templates.devices(n))
            out.extend(_pool_slices(n.name, driver, generation, devices, max_devices_per_slice))
    return out


_MASK = {"uuid": None, "platform": None}


def _siblings(a: NodeTopology, b: NodeTopology) -> bool:
    """Whether ``a`` and ``b`` give the same devices but for GPU UUIDs: every field equal but
    the GPUs' UUIDs and rack positions (which no attribute but ``uuid`` reads). The trays of
    a catalog rack share their records, so the comparison mostly meets identical objects."""
    if a.pairs is not b.pairs and a.pairs != b.pairs:
        return False
    if (a.driver_version, a.cuda_version, len(a.gpus)) != (
        b.driver_version,
        b.cuda_version,
        len(b.gpus),
    ):
        return False
    return all(
        {**vars(g), **_MASK} == {**vars(h), **_MASK} for g, h in zip(a.gpus, b.gpus, strict=True)
    )


class _Templates:
    """Checked device lists, one per (topology object, clique), shared by the nodes using them."""

    def __init__(self, sizes: tuple[int, ...], taint_effect: TaintEffect | None) -> None:
        self.sizes = sizes
        self.taint_effect = taint_effect
        self.by_key: dict[tuple[int, str | None], list[dict[str, Any]]] = {}
        # Per clique, the last node whose list was built: the next may be its sibling.
        self.recent: dict[str | None, tuple[NodeTopology, list[dict[str, Any]]]] = {}
        self.groups: dict[int, dict[int, tuple[tuple[int, ...], ...]]] = {}
        # Holding every topology keeps the id() keys above from being reused.
        self.alive: list[NodeTopology] = []

    def devices(self, node: ClusterNode) -> tuple[list[dict[str, Any]], list[str] | None]:
        """The checked device list of ``node`` and, where it is a sibling's, its own UUIDs."""
        topo, clique = node.topology, node.domain
        key = (id(topo), clique)
        found = self.by_key.get(key)
        if found is not None:
            return found, None
        # A node that differs from the last one built only in its GPUs' UUIDs (the trays of
        # a catalog rack) shares its checked list; each gets its own UUIDs, checked alone.
        recent = self.recent.get(clique)
        if recent is not None and _siblings(recent[0], topo):
            uuids: list[str] = []
            for i, g in enumerate(topo.gpus):
                if g.uuid is None or len(g.uuid) > 64:
                    check_attribute_value({"string": g.uuid}, where=f"node {node.name}, GPU {i}")
                uuids.append(g.uuid or "")
            return recent[1], uuids
        if id(topo) not in self.groups:
            self.groups[id(topo)] = partition_groups(topo, self.sizes)
            self.alive.append(topo)
        devices = gpu_devices(topo, clique=clique, groups=self.groups[id(topo)])
        devices = _with_taints(topo, devices, self.taint_effect)
        seen: set[str] = set()
        for i, d in enumerate(devices):
            check_device(d, where=f"node {node.name}", index=i)
            if d["name"] in seen:
                raise DraLimitError(f"node {node.name!r}: device name {d['name']!r} appears twice")
            seen.add(d["name"])
        self.by_key[key] = devices
        if all(g.uuid is not None for g in topo.gpus):
            self.recent[clique] = (topo, devices)
        return devices, None
