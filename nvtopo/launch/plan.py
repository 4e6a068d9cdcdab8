"""Contract 5: the rank order and parallel groups of a placed multi-node job.

Ranks are numbered clique by clique (in the placement's clique order), node by node inside
a clique (NVLink order: the rack position the GPUs report, else the node name in natural
order) and GPU by GPU inside a node (ring order, :func:`nvtopo.launch.ring.ring_order`).
Nodes outside any clique come last, each its own NVLink domain. The order depends on the
placement's nodes and cliques, never on the order they were listed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from nvtopo.exceptions import SelectionError, TopologyError
from nvtopo.formats._cpulist import compress_cpulist, expand_cpulist, is_cpulist
from nvtopo.launch.groups import AXES, CHECKED_AXES, Axis, ParallelSizes, parallel_groups
from nvtopo.launch.ring import ring_order
from nvtopo.model import PCIE_CLASSES, Cluster, ClusterNode, NodeTopology
from nvtopo.place import PlacedNode, Placement

__all__ = [
    "DEFAULT_PORT",
    "LaunchPlan",
    "NodeLaunch",
    "RankInfo",
    "nearest_nics",
    "placement_from_json",
    "plan_launch",
]

#: torchrun's default rendezvous port.
DEFAULT_PORT = 29500
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class RankInfo:
    """One rank: where it runs and which group of each axis it is in."""

    rank: int
    node: str
    node_rank: int
    local_rank: int
    gpu: int
    uuid: str | None
    clique: str | None
    nic: str | None
    cpus: str | None
    groups: tuple[tuple[Axis, int], ...]


@dataclass(frozen=True)
class NodeLaunch:
    """One node of the job: its GPUs in ring order and the first rank they take."""

    name: str
    node_rank: int
    clique: str | None
    gpus: tuple[int, ...]
    first_rank: int

    @property
    def ranks(self) -> range:
        """The global ranks on this node."""
        return range(self.first_rank, self.first_rank + len(self.gpus))


@dataclass(frozen=True)
class LaunchPlan:
    """Ranks, groups and the facts the launcher outputs are written from.

    ``crossings`` names each tensor-, context- or expert-parallel group that lies neither
    on one node nor in one clique; ``mnnvl`` is True when every rank shares one healthy
    clique (multi-node NVLink may be used).
    """

    nodes: tuple[NodeLaunch, ...]
    ranks: tuple[RankInfo, ...]
    sizes: ParallelSizes
    groups: Mapping[Axis, tuple[tuple[int, ...], ...]]
    crossings: tuple[str, ...]
    master_addr: str
    master_port: int = DEFAULT_PORT

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def cliques(self) -> tuple[str, ...]:
        """The cliques used, in rank order."""
        seen: dict[str, None] = {}
        for n in self.nodes:
            if n.clique is not None:
                seen.setdefault(n.clique)
        return tuple(seen)

    @property
    def mnnvl(self) -> bool:
        """Whether all ranks share one healthy clique."""
        return len(self.cliques) == 1 and all(n.clique is not None for n in self.nodes)

    def node(self, key: str | int) -> NodeLaunch:
        """A node by name or by node rank."""
        for n in self.nodes:
            if n.name == key or n.node_rank == key:
                return n
        raise SelectionError(f"no node {key!r} in the launch plan")

    def domain_size(self, node: NodeLaunch) -> int:
        """Ranks of the job in ``node``'s NVLink domain (its clique, else the node)."""
        if node.clique is None:
            return len(node.gpus)
        return sum(len(n.gpus) for n in self.nodes if n.clique == node.clique)

    def explain(self) -> str:
        """A few lines for a person: ranks per node and any group that crosses."""
        lines = [
            f"{self.world_size} ranks on {len(self.nodes)} nodes, "
            + (f"{len(self.cliques)} clique(s)" if self.cliques else "no clique")
            + "; groups "
            + " ".join(f"{a}={self.sizes.size(a)}" for a in AXES)
        ]
        width = max(len(n.name) for n in self.nodes)
        for n in self.nodes:
            last = n.first_rank + len(n.gpus) - 1
            lines.append(
                f"  {n.node_rank:>3}  {n.name:<{width}}  ranks {n.first_rank}-{last}  "
                f"GPUs {','.join(map(str, n.gpus))}  {n.clique or '-'}"
            )
        if self.crossings:
            lines.extend(f"crosses: {c}" for c in self.crossings)
        else:
            lines.append("every tp, cp and ep group stays on one node or in one clique")
        return "\n".join(lines)


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


def _nvlink_position(node: ClusterNode) -> tuple[Any, ...]:
    """Where a node sits in its NVLink domain: the rack position its GPUs report."""
    platforms = [g.platform for g in node.topology.gpus if g.platform is not None]
    if platforms:
        p = platforms[0]
        key = (
            p.chassis_serial or "",
            -1 if p.slot is None else p.slot,
            -1 if p.tray is None else p.tray,
        )
    else:
        key = ("", -1, -1)
    return (*key, _natural(node.name))


def nearest_nics(topology: NodeTopology, gpus: Sequence[int]) -> dict[int, str | None]:
    """The NIC for each of ``gpus`` (taken in this order): the best PCIe path class, then a
    NIC on the GPU's NUMA node, then one no earlier GPU took, then NIC order. None where
    the node lists no NIC paths.

    Examples
    --------
    >>> import nvtopo
    >>> nearest_nics(nvtopo.system("gb200-tray"), (0, 1, 2, 3))
    {0: 'mlx5_0', 1: 'mlx5_1', 2: 'mlx5_4', 3: 'mlx5_5'}
    """
    used: set[int] = set()
    out: dict[int, str | None] = {}
    for gpu in gpus:
        position = topology.gpu_indices.index(gpu)
        g = topology.gpu(gpu)
        near = {g.numa_node, *g.numa_affinity} - {None}
        best: tuple[int, int, int, int] | None = None
        for k, nic in enumerate(topology.nics):
            if not nic.gpu_paths:
                continue
            key = (
                PCIE_CLASSES.index(nic.gpu_paths[position]),
                0 if nic.numa_node is not None and nic.numa_node in near else 1,
                1 if k in used else 0,
                k,
            )
            if best is None or key < best:
                best = key
        if best is None:
            out[gpu] = None
            continue
        used.add(best[3])
        nic = topology.nics[best[3]]
        out[gpu] = nic.device or nic.name
    return out


def _runs(cpus: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for c in cpus:
        if runs and runs[-1][-1] + 1 == c:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def _split(cpus: Sequence[int], parts: int) -> list[list[int]]:
    """``cpus`` in ``parts`` even shares. Each contiguous run is cut alike, so a share of
    ``0-55,112-167`` keeps the hardware threads that Linux numbers 112 apart (the two
    threads of one core) together: ``0-13,112-125``."""
    runs = _runs(cpus)
    if all(len(run) >= parts for run in runs):
        shares: list[list[int]] = [[] for _ in range(parts)]
        for run in runs:
            step = len(run) // parts
            for i in range(parts):
                shares[i].extend(run[i * step : (i + 1) * step])
        return shares
    step = max(1, len(cpus) // parts)
    return [list(cpus[i * step : (i + 1) * step]) or list(cpus[-1:]) for i in range(parts)]


def _cpu_shares(topology: NodeTopology, ring: Sequence[int]) -> dict[int, str | None]:
    """Each GPU's share of the CPUs near it, split evenly among the ranks sharing them."""
    by_affinity: dict[str, list[int]] = {}
    shares: dict[int, str | None] = {}
    for g in ring:
        text = topology.gpu(g).cpu_affinity
        if text and is_cpulist(text):
            by_affinity.setdefault(text, []).append(g)
        else:
            shares[g] = None
    for text, gpus in by_affinity.items():
        for g, part in zip(gpus, _split(expand_cpulist(text), len(gpus)), strict=True):
            shares[g] = compress_cpulist(part)
    return shares


def _crossings(
    plan_nodes: Sequence[NodeLaunch],
    groups: Mapping[Axis, tuple[tuple[int, ...], ...]],
) -> tuple[str, ...]:
    owner: dict[int, NodeLaunch] = {}
    for n in plan_nodes:
        for r in n.ranks:
            owner[r] = n
    found = []
    for axis in CHECKED_AXES:
        for index, group in enumerate(groups[axis]):
            nodes = list(dict.fromkeys(owner[r].name for r in group))
            if len(nodes) == 1:
                continue
            cliques = {owner[r].clique for r in group}
            if len(cliques) == 1 and None not in cliques:
                continue
            where = ", ".join(sorted(c or "no clique" for c in cliques))
            span = f"{nodes[0]} to {nodes[-1]}" if len(nodes) > 2 else " and ".join(nodes)
            found.append(
                f"{axis} group {index} (ranks {_ranks_text(group)}) spans {len(nodes)} nodes "
                f"({span}) across {where}"
            )
    return tuple(found)


def _ranks_text(group: Sequence[int]) -> str:
    if len(group) > 2 and all(b - a == group[1] - group[0] for a, b in pairwise(group)):
        step = group[1] - group[0]
        return f"{group[0]}-{group[-1]}" if step == 1 else f"{group[0]}..{group[-1]} step {step}"
    return ",".join(map(str, group))


def plan_launch(
    cluster: Cluster,
    placement: Placement,
    *,
    tp: int = 1,
    cp: int = 1,
    ep: int = 1,
    pp: int = 1,
    master_addr: str | None = None,
    master_port: int = DEFAULT_PORT,
) -> LaunchPlan:
    """The rank order and parallel groups of ``placement`` on ``cluster``.

    Parameters
    ----------
    cluster
        The cluster the placement was made on (its nodes' topologies, cliques and health).
    placement
        Nodes and GPUs of the job (:func:`nvtopo.place`, a ComputeDomain plan, or read back
        with :func:`placement_from_json`).
    tp, cp, ep, pp
        Group sizes; data parallel takes the rest of the ranks.
    master_addr, master_port
        torchrun's rendezvous address (default: the node of rank 0) and port.

    Examples
    --------
    >>> import nvtopo
    >>> racks = nvtopo.cluster("gb200-nvl72x4")
    >>> placed = nvtopo.place(racks, gpus=64, nodes=16, domain="preferred")
    >>> p = plan_launch(racks, placed, tp=4, ep=16)
    >>> p.world_size, len(p.cliques), p.crossings
    (64, 1, ())
    """
    inner = getattr(placement, "placement", None)
    if not isinstance(placement, Placement) and isinstance(inner, Placement):
        placement = inner  # a ComputeDomain plan: its placement
    if not isinstance(placement, Placement):
        raise SelectionError(f"expected a Placement, got {type(placement).__name__}")
    if not placement.nodes:
        raise SelectionError("the placement has no nodes")
    names = [n.name for n in placement.nodes]
    if len(set(names)) != len(names):
        raise SelectionError("the placement names a node twice")
    clique_order = {c: i for i, c in enumerate(placement.cliques)}
    entries: list[tuple[tuple[Any, ...], ClusterNode, PlacedNode]] = []
    for placed in placement.nodes:
        try:
            node = cluster.node(placed.name)
        except TopologyError:
            raise SelectionError(f"placement node {placed.name!r} is not in the cluster") from None
        if not placed.gpus:
            raise SelectionError(f"placement node {placed.name!r} has no GPUs")
        domain = node.domain
        if domain is not None and domain in clique_order:
            key: tuple[Any, ...] = (0, clique_order[domain], _nvlink_position(node))
        elif domain is not None:
            key = (0, len(clique_order), domain, _nvlink_position(node))
        else:
            key = (1, _natural(node.name))
        entries.append((key, node, placed))
    entries.sort(key=lambda e: e[0])

    world = sum(len(p.gpus) for _, _, p in entries)
    sizes = ParallelSizes.for_world(world, tp=tp, cp=cp, ep=ep, pp=pp)
    groups = parallel_groups(sizes)
    group_of: dict[Axis, dict[int, int]] = {
        axis: {r: i for i, g in enumerate(groups[axis]) for r in g} for axis in AXES
    }

    nodes: list[NodeLaunch] = []
    ranks: list[RankInfo] = []
    rings: dict[tuple[int, tuple[int, ...]], tuple[int, ...]] = {}  # nodes of a kind share one
    for node_rank, (_, node, placed) in enumerate(entries):
        topo = node.topology
        key = (id(topo), tuple(sorted(placed.gpus)))
        ring = rings.get(key) or rings.setdefault(key, ring_order(topo, placed.gpus))
        cpus = _cpu_shares(topo, ring)
        nics = nearest_nics(topo, ring)
        first = len(ranks)
        launch = NodeLaunch(node.name, node_rank, node.domain, ring, first)
        nodes.append(launch)
        for local, gpu in enumerate(ring):
            rank = first + local
            ranks.append(
                RankInfo(
                    rank=rank,
                    node=node.name,
                    node_rank=node_rank,
                    local_rank=local,
                    gpu=gpu,
                    uuid=topo.gpu(gpu).uuid,
                    clique=node.domain,
                    nic=nics[gpu],
                    cpus=cpus[gpu],
                    groups=tuple((axis, group_of[axis][rank]) for axis in AXES),
                )
            )
    if not isinstance(master_port, int) or not 0 < master_port < 65536:
        raise SelectionError(f"master port must be 1 to 65535, got {master_port!r}")
    return LaunchPlan(
        nodes=tuple(nodes),
        ranks=tuple(ranks),
        sizes=sizes,
        groups=groups,
        crossings=_crossings(nodes, groups),
        master_addr=master_addr or nodes[0].name,
        master_port=master_port,
    )


def placement_from_json(doc: Any, *, source: str = "<placement>") -> Placement:
    """A :class:`Placement` from ``nvtopo place --format json`` or ``compute-domain plan
    --format json`` output (its ``placement``)."""
    if isinstance(doc, Mapping) and isinstance(doc.get("placement"), Mapping):
        doc = doc["placement"]
    if not isinstance(doc, Mapping) or not isinstance(doc.get("nodes"), list):
        raise SelectionError(
            f"{source}: not a placement (expected the JSON of `nvtopo place` with a "
            '"nodes" list, or of `nvtopo compute-domain plan`)'
        )
    nodes = []
    for i, item in enumerate(doc["nodes"]):
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("gpus"), list)
            or not all(isinstance(g, int) and not isinstance(g, bool) for g in item["gpus"])
        ):
            raise SelectionError(f'{source}: nodes[{i}] needs a "name" and a "gpus" list of ints')
        nodes.append(PlacedNode(item["name"], tuple(item["gpus"])))
    cliques = doc.get("cliques", [])
    if not isinstance(cliques, list) or not all(isinstance(c, str) for c in cliques):
        raise SelectionError(f'{source}: "cliques" must be a list of strings')
    return Placement(tuple(nodes), tuple(cliques), bool(doc.get("computeDomain", False)))
