"""Contract 2: multi-node placement inside NVLink domains (cliques), and the cluster state.

A request asks for ``gpus`` GPUs, optionally as ``nodes`` nodes of ``gpus / nodes`` each,
with a clique rule ``domain``: ``required`` (one clique or fail), ``preferred`` (as few as
possible) or ``none`` (cliques ignored, no ComputeDomain). Placements are compared, best
first, by:

1. feasibility: free GPUs only; a multi-node placement under ``required``/``preferred``
   forms a ComputeDomain and uses only nodes not already in one;
2. the fewest NVLink domains (a node without a clique is its own domain);
3. the fewest nodes;
4. best fit: the fewest free GPUs in the domains used, then on the nodes used;
5. on each node, Contract 1's GPU set (:func:`nvtopo.select_gpus`) for its share;
6. ties: the sorted domain ids (a node without a clique is named after itself), then the
   sorted node names.

Shares: with ``nodes`` each node takes ``gpus / nodes``. Without it, the fewest nodes are
chosen, then filled most-free first (ties by name), each giving all its free GPUs until
the request is met, so only the last may give part of them. ``domain="none"`` drops steps
2 and the domain half of 4 and 6. The search runs in the Rust core over per-domain
aggregates, so a request does not visit every node of a large cluster.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import nvtopo._core as _core
from nvtopo._validate import gpus_request, require_cluster
from nvtopo.exceptions import InfeasibleError, SelectionError
from nvtopo.model import Gpu, GpuPair, NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.select import core_topology

__all__ = [
    "Allocation",
    "ClusterState",
    "ComputeDomainGroup",
    "Domain",
    "PlacedNode",
    "Placement",
    "PlacementRequest",
    "place",
]

Domain = Literal["required", "preferred", "none"]
_DOMAINS: tuple[str, ...] = get_args(Domain)


def _positive(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SelectionError(f"{what} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class PlacementRequest:
    """What a job asks for.

    Examples
    --------
    >>> PlacementRequest(64, nodes=16, domain="required").gpus_per_node
    4
    """

    gpus: int
    nodes: int | None = None
    domain: Domain = "preferred"

    def __post_init__(self) -> None:
        _positive(self.gpus, "gpus")
        if self.nodes is not None:
            _positive(self.nodes, "nodes")
            if self.gpus % self.nodes:
                raise SelectionError(
                    f"{self.gpus} GPUs do not split evenly over {self.nodes} nodes"
                )
        if self.domain not in _DOMAINS:
            raise SelectionError(
                f"domain must be 'required', 'preferred' or 'none', got {self.domain!r}"
            )

    @property
    def gpus_per_node(self) -> int | None:
        """``gpus / nodes`` when ``nodes`` is given."""
        return None if self.nodes is None else self.gpus // self.nodes


@dataclass(frozen=True)
class PlacedNode:
    """One node of a placement and the GPUs taken on it.

    ``clique`` is the node's NVLink domain after the model's rule
    (:attr:`nvtopo.model.ClusterNode.domain`); ``clique_problem`` says why a node that looks
    like it belongs to one is in none (its GPUs disagree, its fabric is not ready, ...).
    """

    name: str
    gpus: tuple[int, ...]
    clique: str | None = field(default=None, compare=False, repr=False)
    clique_problem: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ComputeDomainGroup:
    """The nodes of a placement inside one clique: one ComputeDomain (one IMEX domain)."""

    clique: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    """Where a job goes.

    ``cliques`` lists the clique ids of the nodes used (nodes without one add none);
    ``compute_domain`` is True when the job is a multi-node NVLink job (several nodes,
    cliques not ignored): its nodes take no second ComputeDomain. A ComputeDomain never
    spans cliques: :attr:`compute_domains` lists one per clique the job touches.
    """

    nodes: tuple[PlacedNode, ...]
    cliques: tuple[str, ...]
    compute_domain: bool

    @property
    def gpu_count(self) -> int:
        """GPUs placed in total."""
        return sum(len(n.gpus) for n in self.nodes)

    @property
    def compute_domains(self) -> tuple[ComputeDomainGroup, ...]:
        """One ComputeDomain per clique the job touches (empty when it needs none).

        Nodes in no clique join none: multi-node NVLink stops at a clique's edge.
        """
        if not self.compute_domain:
            return ()
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.clique is not None:
                groups.setdefault(n.clique, []).append(n.name)
        return tuple(ComputeDomainGroup(c, tuple(names)) for c, names in groups.items())

    @property
    def one_compute_domain(self) -> bool:
        """True when a single ComputeDomain holds every node of the job."""
        groups = self.compute_domains
        return len(groups) == 1 and len(groups[0].nodes) == len(self.nodes)

    def compute_domain_summary(self) -> str:
        """``forms a ComputeDomain``, ``forms 2 ComputeDomains, one per clique (...)``, ..."""
        groups = self.compute_domains
        if self.one_compute_domain:
            return "forms a ComputeDomain"
        if not groups:
            if self.compute_domain:
                return "forms no ComputeDomain (its nodes are in no common clique)"
            return "needs no ComputeDomain"
        each = "; ".join(f"{g.clique}: {', '.join(g.nodes)}" for g in groups)
        lone = sum(1 for n in self.nodes if n.clique is None)
        rest = f", {lone} node{'s' if lone != 1 else ''} in none" if lone else ""
        noun = "ComputeDomain" if len(groups) == 1 else "ComputeDomains"
        return f"forms {len(groups)} {noun}, one per clique ({each}){rest}"

    def explain(self) -> str:
        """One paragraph saying where the job goes, and why a node is in no clique."""
        where = "; ".join(f"{n.name}: GPUs {', '.join(map(str, n.gpus))}" for n in self.nodes)
        count = "1 node" if len(self.nodes) == 1 else f"{len(self.nodes)} nodes"
        if not self.cliques:
            domains = "outside any clique"
        elif len(self.cliques) == 1:
            domains = f"in clique {self.cliques[0]}"
        else:
            domains = f"across {len(self.cliques)} cliques ({', '.join(self.cliques)})"
        text = f"{self.gpu_count} GPUs on {count} {domains} ({where}); "
        text += f"{self.compute_domain_summary()}."
        for n in self.nodes:
            if n.clique_problem is not None:
                text += f" Node {n.name} is in no clique: {n.clique_problem}."
        return text

    def to_json(self) -> dict[str, Any]:
        """``{"nodes": [{"name", "gpus"}], "cliques", "computeDomain", "computeDomains",
        "gpuCount"}``; ``computeDomain`` is true only where one ComputeDomain holds the whole
        job, ``computeDomains`` lists one per clique. A node in no clique for a reason says it
        (``cliqueProblem``)."""
        nodes = []
        for n in self.nodes:
            entry: dict[str, Any] = {"name": n.name, "gpus": list(n.gpus)}
            if n.clique_problem is not None:
                entry["cliqueProblem"] = n.clique_problem
            nodes.append(entry)
        return {
            "nodes": nodes,
            "cliques": list(self.cliques),
            "computeDomain": self.one_compute_domain,
            "computeDomains": [
                {"clique": g.clique, "nodes": list(g.nodes)} for g in self.compute_domains
            ],
            "gpuCount": self.gpu_count,
        }


@dataclass(frozen=True)
class Allocation:
    """A committed placement; give it back with :meth:`ClusterState.release`."""

    id: int
    placement: Placement


def _request(
    request: PlacementRequest | None,
    gpus: int | None,
    nodes: int | None,
    domain: Domain | None,
) -> PlacementRequest:
    if request is None:
        if gpus is None:
            raise SelectionError("a placement needs gpus= (or a PlacementRequest)")
        return PlacementRequest(gpus, nodes, domain or "preferred")
    if not isinstance(request, PlacementRequest):
        raise SelectionError(f"expected a PlacementRequest, got {type(request).__name__}")
    if gpus is not None or nodes is not None or domain is not None:
        raise SelectionError("give either a PlacementRequest or keywords, not both")
    return request


_Verdicts = dict[str, tuple[str | None, str | None]]


_NO_VERDICT: tuple[None, None] = (None, None)


def _placement(
    raw: tuple[list[tuple[str, list[int]]], list[str], bool], verdicts: _Verdicts
) -> Placement:
    nodes, cliques, cd = raw
    placed = []
    new = object.__new__
    for name, gpus in nodes:
        clique, problem = verdicts.get(name, _NO_VERDICT)
        # A frozen dataclass's __init__ sets each field through object.__setattr__; filling
        # the instance dict at once gives the same object in about half the time, which is
        # most of a 30-node placement's cost in Python.
        node = new(PlacedNode)
        node.__dict__.update(name=name, gpus=tuple(gpus), clique=clique, clique_problem=problem)
        placed.append(node)
    return Placement(tuple(placed), tuple(cliques), cd)


_Row = tuple[str, _core.Topology, str | None, list[int], bool]


def _gpu_shape(gpu: Gpu) -> tuple[Any, ...]:
    """What the core (index, NVLink generation, NUMA key), the clique rule (fabric) and the
    health findings (fabric, NVLink states) read of a GPU. Parts that are objects of their
    own go by identity: they stay alive while a cluster loads, and equal parts of trays of
    one kind are one object."""
    return (
        gpu.index,
        gpu.nvlink_generation,
        gpu.numa_affinity,
        gpu.cpu_affinity,
        id(gpu.fabric),
        id(gpu.nvlinks),
    )


class _Shapes:
    """What placement needs of a node, worked out once per shape of node during one load.

    A shape is the node's pairs object, its declared clique and :func:`_gpu_shape` of each
    GPU: two nodes of one shape get the same core topology, the same GPUs with a health
    finding and the same clique verdict, from the model's own rule applied to the first of
    them. Core topologies are shared by value (GPU ids, NVLink generations, pairs, NUMA
    keys), so equal topologies built apart still load once.
    """

    def __init__(self) -> None:
        self.known: dict[tuple[Any, ...], _Shape] = {}
        self._cores: dict[tuple[Any, ...], _core.Topology] = {}
        # Pairs by identity → a number per distinct value, so a tuple of thousands of pairs
        # is hashed once per object, not once per node.
        self._pair_ids: dict[int, int] = {}
        self._pair_values: dict[tuple[GpuPair, ...], int] = {}

    def add(self, key: tuple[Any, ...], node: ClusterNode) -> _Shape:
        topo = node.topology
        unfit = topo.unfit_gpus
        verdict = node.verdict
        shape = self.known[key] = (
            self._core(topo),
            [g for g in topo.gpu_indices if g not in unfit],
            unfit,
            (verdict.clique, verdict.reason),
        )
        return shape

    def _core(self, topology: NodeTopology) -> _core.Topology:
        pairs = self._pair_ids.get(id(topology.pairs))
        if pairs is None:
            pairs = self._pair_values.setdefault(topology.pairs, len(self._pair_values))
            self._pair_ids[id(topology.pairs)] = pairs
        gens = tuple(g.nvlink_generation for g in topology.gpus)
        key = (topology.gpu_indices, gens, pairs, topology.numa_keys)
        core = self._cores.get(key)
        if core is None:
            core = self._cores[key] = core_topology(topology)
        return core


_Shape = tuple[_core.Topology, list[int], frozenset[int], tuple[str | None, str | None]]


class ClusterState:
    """Free GPUs and ComputeDomains of a cluster, owned by the Rust core.

    Nodes of one kind share one core topology, and what placement reads of a node (its core
    topology, GPUs with a health finding, clique verdict) is worked out once per shape of
    node, so a cluster of tens of thousands of trays, each with GPUs of its own, loads in a
    fraction of a second. :meth:`place` answers without committing; :meth:`allocate`
    commits (a GPU is never handed out twice) and :meth:`release` gives back. Methods may
    be called from several threads.

    Examples
    --------
    >>> from nvtopo.model.cluster import Cluster, ClusterNode
    >>> from nvtopo.model import Gpu, GpuPair, NodeTopology
    >>> tray = NodeTopology(
    ...     gpus=tuple(Gpu(i) for i in range(4)),
    ...     pairs=tuple(GpuPair(a, b, nvlinks=18) for a in range(4) for b in range(a + 1, 4)),
    ... )
    >>> nodes = [ClusterNode(f"n{i}", tray, clique="rack.1") for i in range(3)]
    >>> state = ClusterState(Cluster(tuple(nodes)))
    >>> a = state.allocate(gpus=8, nodes=2, domain="required")
    >>> [n.name for n in a.placement.nodes], state.free_gpus("n0")
    (['n0', 'n1'], ())
    >>> state.release(a)
    >>> state.free_gpus("n0")
    (0, 1, 2, 3)
    """

    def __init__(self, cluster: Cluster) -> None:
        require_cluster(cluster, call="ClusterState()")
        # Each node's clique and, where it has none for a reason, the reason: the placement
        # says which ComputeDomain each node joins and why one joins none.
        self._verdicts: _Verdicts = {}
        # A bulk load makes one row per node and frees nothing: the cyclic collector would
        # only walk the whole cluster again and again (seconds at 73,728 nodes).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._core = _core.ClusterState(self._rows(cluster))
        finally:
            if collecting:
                gc.enable()

    def _rows(self, cluster: Cluster) -> list[_Row]:
        # Every tray has GPUs of its own (UUIDs, serials), so topologies are distinct objects,
        # but the parts that the core, the clique rule and the health findings read are
        # shared between trays of a kind. Those are worked out once per shape (_Shapes).
        shapes = _Shapes()
        known = shapes.known
        verdicts = self._verdicts
        rows: list[_Row] = []
        for node in cluster.nodes:
            topo = node.topology
            key = (id(topo.pairs), node.clique, *map(_gpu_shape, topo.gpus))
            shape = known.get(key)
            if shape is None:
                shape = shapes.add(key, node)
            core, everyone, unfit, verdict = shape
            verdicts[node.name] = verdict
            # As ``node.free`` reads it: GPUs with a health finding left out.
            free = (
                everyone
                if node.free_gpus is None
                else [g for g in sorted(node.free_gpus) if g not in unfit]
            )
            rows.append((node.name, core, verdict[0], free, node.in_compute_domain))
        return rows

    def __len__(self) -> int:
        return len(self._core)

    @property
    def topology_count(self) -> int:
        """Distinct core topologies held (nodes of one kind share one)."""
        return self._core.topology_count

    @property
    def free_count(self) -> int:
        """Free GPUs in the whole cluster."""
        return self._core.free_count()

    def place(
        self,
        request: PlacementRequest | int | None = None,
        /,
        *,
        gpus: int | None = None,
        nodes: int | None = None,
        domain: Domain | None = None,
    ) -> Placement:
        """The best placement of the request (Contract 2), not committed."""
        req, gpus = gpus_request(request, gpus)
        r = _request(req, gpus, nodes, domain)
        try:
            return _placement(self._core.place(r.gpus, r.nodes, r.domain), self._verdicts)
        except OverflowError:
            raise self._too_many(r) from None

    def allocate(
        self,
        request: PlacementRequest | int | None = None,
        /,
        *,
        gpus: int | None = None,
        nodes: int | None = None,
        domain: Domain | None = None,
    ) -> Allocation:
        """Place the request and commit it."""
        req, gpus = gpus_request(request, gpus)
        r = _request(req, gpus, nodes, domain)
        try:
            ident, raw = self._core.allocate(r.gpus, r.nodes, r.domain)
        except OverflowError:
            raise self._too_many(r) from None
        return Allocation(ident, _placement(raw, self._verdicts))

    def _too_many(self, r: PlacementRequest) -> InfeasibleError:
        # Past the core's 32-bit counts a request exceeds every cluster; say so plainly.
        return InfeasibleError(
            f"only {self.free_count} free GPUs in the cluster, {r.gpus} requested"
        )

    def release(self, allocation: Allocation | int) -> None:
        """Give an allocation (or its id) back."""
        ident = allocation.id if isinstance(allocation, Allocation) else allocation
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < 2**64:
            raise SelectionError(f"no allocation {ident!r}")
        self._core.release(ident)

    def free_gpus(self, node: str) -> tuple[int, ...]:
        """Free GPU ids of ``node``."""
        return tuple(self._core.free_gpus(node))

    def in_compute_domain(self, node: str) -> bool:
        """Whether ``node`` hosts a ComputeDomain."""
        return self._core.in_compute_domain(node)

    def allocations(self) -> tuple[int, ...]:
        """Ids of the allocations held."""
        return tuple(self._core.allocations())


def place(
    cluster: Cluster,
    request: PlacementRequest | int | None = None,
    /,
    *,
    gpus: int | None = None,
    nodes: int | None = None,
    domain: Domain | None = None,
) -> Placement:
    """The best placement of a request on ``cluster`` (a one-shot :class:`ClusterState`).

    Examples
    --------
    >>> from nvtopo.model.cluster import Cluster, ClusterNode
    >>> from nvtopo.model import Gpu, NodeTopology
    >>> box = NodeTopology(gpus=tuple(Gpu(i) for i in range(2)))
    >>> c = Cluster((ClusterNode("a", box, free_gpus=(1,)), ClusterNode("b", box)))
    >>> place(c, gpus=1).nodes
    (PlacedNode(name='a', gpus=(1,)),)
    >>> place(c, 2, nodes=2).nodes  # the GPU count alone, as select_gpus(topology, k)
    (PlacedNode(name='a', gpus=(1,)), PlacedNode(name='b', gpus=(0,)))
    """
    require_cluster(cluster, call="place()")
    return _one_shot_state(cluster).place(request, gpus=gpus, nodes=nodes, domain=domain)


# One-shot placement reuses one unallocated ClusterState per Cluster object: loading 18,432
# nodes into the core costs tens of milliseconds, a placement microseconds. ``place`` never
# allocates, so the cached state stays as the cluster describes it.
_STATES: dict[int, tuple[weakref.ref[Cluster], ClusterState]] = {}


def _one_shot_state(cluster: Cluster) -> ClusterState:
    key = id(cluster)
    hit = _STATES.get(key)
    if hit is not None and hit[0]() is cluster:
        return hit[1]
    state = ClusterState(cluster)
    _STATES[key] = (weakref.ref(cluster, lambda _ref: _STATES.pop(key, None)), state)
    return state
