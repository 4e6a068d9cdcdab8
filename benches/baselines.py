"""The allocators nvtopo is measured against, and a brute-force reference of Contract 1.

Baselines live here and nowhere in the library. Each is written from a description of the
policy it stands for, not from that policy's code:

* :func:`device_plugin_best_effort` — NVIDIA's device-plugin "best effort" GPU allocator:
  pairs scored by PCIe distance plus a bonus per *direct* NVLink, every split of the
  available GPUs into groups of ``k`` tried (exponential by design).
* :func:`first_fit` — the stock DRA allocator: the ``k`` lowest-numbered free GPUs.
* :func:`first_fit_place` / :func:`random_place` — cluster placers over
  :class:`SimpleClusterState`, a small pure-Python cluster state independent of nvtopo's.
* :func:`brute_force_select` — Contract 1's objective by ``itertools.combinations``: the
  reference the core must agree with and be measured against.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

__all__ = [
    "CONTRACT_PCIE_SCORE",
    "DEVICE_PLUGIN_PCIE_SCORE",
    "DidNotFinish",
    "ScoreMatrix",
    "SetScore",
    "SimpleClusterState",
    "SimplePlacement",
    "brute_force_select",
    "count_splits",
    "device_plugin_best_effort",
    "device_plugin_pair_score",
    "first_fit",
    "first_fit_place",
    "random_place",
]

#: Device-plugin pair score by PCIe level (a pair with no known class counts as SYS).
DEVICE_PLUGIN_PCIE_SCORE = {"SYS": 10, "NODE": 20, "PHB": 30, "PXB": 40, "PIX": 50}
#: Two GPUs on one board; nvtopo's model records no boards, so this level never arises here.
DEVICE_PLUGIN_SAME_BOARD = 60
#: Device-plugin bonus per NVLink that goes straight to the peer GPU.
DEVICE_PLUGIN_NVLINK = 100

#: Contract 1's score of a pair without NVLinks, by PCIe class.
CONTRACT_PCIE_SCORE = {"PIX": 50, "PXB": 40, "PHB": 30, "NODE": 20, "SYS": 10}
#: Contract 1's base score of a pair with NVLinks (plus GB/s per direction).
CONTRACT_NVLINK_BASE = 1000


class DidNotFinish(Exception):
    """The exponential baseline ran past its time budget."""

    def __init__(self, budget_s: float, splits: int) -> None:
        super().__init__(f"did not finish in {budget_s:g} s ({splits:,} splits scored)")
        self.budget_s = budget_s
        self.splits = splits


def _available(topology: NodeTopology, k: int, available: Iterable[int] | None) -> list[int]:
    avail = sorted(set(topology.gpu_indices if available is None else available))
    known = set(topology.gpu_indices)
    bad = [g for g in avail if g not in known]
    if bad:
        raise ValueError(f"GPU {bad[0]} is not on the node (GPUs: {sorted(known)})")
    if not 1 <= k <= len(avail):
        raise ValueError(f"k={k} out of range: {len(avail)} GPUs available")
    return avail


# -- intra-node baselines ------------------------------------------------------------------


def first_fit(
    topology: NodeTopology, k: int, available: Iterable[int] | None = None
) -> tuple[int, ...]:
    """The ``k`` lowest-numbered available GPUs, as a first-fit allocator returns them."""
    return tuple(_available(topology, k, available)[:k])


def device_plugin_pair_score(topology: NodeTopology, a: int, b: int) -> int:
    """Pair score of the device-plugin policy: PCIe level plus 100 per direct NVLink.

    NVLinks that reach the peer through an NVSwitch end at the switch, not at the peer GPU,
    so a pair with ``via_nvswitch`` gets no NVLink credit: that is the policy's blind spot.
    """
    pair = topology.pair(a, b)
    pcie = DEVICE_PLUGIN_PCIE_SCORE[pair.pcie or "SYS"]
    direct = 0 if pair.via_nvswitch else pair.nvlinks
    return pcie + DEVICE_PLUGIN_NVLINK * direct


def count_splits(n: int, k: int) -> int:
    """How many splits of ``n`` GPUs into groups of ``k`` plus a leftover the baseline scores."""
    groups, rest = divmod(n, k)
    per_group: int = math.factorial(k) ** groups
    within = math.factorial(n - rest) // (per_group * math.factorial(groups))
    return math.comb(n, rest) * within


def device_plugin_best_effort(
    topology: NodeTopology,
    k: int,
    available: Iterable[int] | None = None,
    *,
    budget_s: float | None = None,
) -> tuple[int, ...]:
    """Best-effort allocation in the manner of NVIDIA's device plugin.

    Every split of the available GPUs into ``len(available) // k`` groups of ``k`` (the rest
    left over) is scored by the sum over its groups of their pair-score sums
    (:func:`device_plugin_pair_score`); the first best split wins, and its best group (the
    first on ties) is returned, sorted. The number of splits is :func:`count_splits`:
    exponential in the number of available GPUs, by design of the policy.

    Raises
    ------
    DidNotFinish
        When ``budget_s`` is given and the search runs past it.
    ValueError
        When ``k`` is out of range or a GPU is not on the node.
    """
    avail = _available(topology, k, available)
    n = len(avail)
    if k == n:
        return tuple(avail)
    w = [
        [0 if i == j else device_plugin_pair_score(topology, a, b) for j, b in enumerate(avail)]
        for i, a in enumerate(avail)
    ]
    group_cache: dict[tuple[int, ...], int] = {}

    def group_score(group: tuple[int, ...]) -> int:
        s = group_cache.get(group)
        if s is None:
            s = sum(w[i][j] for i, j in itertools.combinations(group, 2))
            group_cache[group] = s
        return s

    deadline = None if budget_s is None else time.perf_counter() + budget_s
    best_score = -1
    best_groups: list[tuple[int, ...]] = []
    groups: list[tuple[int, ...]] = []
    splits = 0

    def split(rest: list[int], acc: int) -> None:
        nonlocal best_score, best_groups, splits
        if not rest:
            splits += 1
            if acc > best_score:
                best_score, best_groups = acc, list(groups)
            if deadline is not None and splits & 0xFFF == 0 and time.perf_counter() > deadline:
                raise DidNotFinish(budget_s or 0.0, splits)
            return
        # The smallest remaining GPU opens the next group, so each split is made once.
        first, others = rest[0], rest[1:]
        for mates in itertools.combinations(others, k - 1):
            group = (first, *mates)
            groups.append(group)
            taken = set(mates)
            split([x for x in others if x not in taken], acc + group_score(group))
            groups.pop()

    for leftover in itertools.combinations(range(n), n % k):
        left = set(leftover)
        split([i for i in range(n) if i not in left], 0)

    best = max(best_groups, key=group_score)  # max() keeps the first of equals
    return tuple(sorted(avail[i] for i in best))


# -- Contract 1 reference ----------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SetScore:
    """Contract 1's measures of one GPU set (bottleneck 0 for a single GPU)."""

    bottleneck: int
    total: int
    numa_keys: int
    cut: int

    def key(self) -> tuple[int, int, int, int]:
        """Larger is better: bottleneck, total, then fewer NUMA keys, then smaller cut."""
        return (self.bottleneck, self.total, -self.numa_keys, -self.cut)


class ScoreMatrix:
    """Contract 1's pair scores of one node, computed once for many sets."""

    def __init__(self, topology: NodeTopology) -> None:
        self.topology = topology
        idx = topology.gpu_indices
        self.pos = {g: i for i, g in enumerate(idx)}
        self.w = [[0] * len(idx) for _ in idx]
        for p in topology.iter_pairs():
            if p.nvlinks > 0:
                s = CONTRACT_NVLINK_BASE + topology.pair_bandwidth(p.a, p.b)
            else:
                s = CONTRACT_PCIE_SCORE[p.pcie or "SYS"]
            self.w[self.pos[p.a]][self.pos[p.b]] = self.w[self.pos[p.b]][self.pos[p.a]] = s
        self.numa = [g.numa_key for g in topology.gpus]

    def pair(self, a: int, b: int) -> int:
        return self.w[self.pos[a]][self.pos[b]]

    def score(self, gpus: Sequence[int], available: Iterable[int] | None = None) -> SetScore:
        """Bottleneck, total, NUMA keys and cut of ``gpus`` against ``available``."""
        s = [self.pos[g] for g in gpus]
        avail = self.topology.gpu_indices if available is None else available
        rest = [self.pos[g] for g in avail if g not in set(gpus)]
        scores = [self.w[i][j] for i, j in itertools.combinations(s, 2)]
        return SetScore(
            bottleneck=min(scores, default=0),
            total=sum(scores),
            numa_keys=len({self.numa[i] for i in s}),
            cut=sum(self.w[i][j] for i in s for j in rest),
        )


def brute_force_select(
    topology: NodeTopology,
    k: int,
    available: Iterable[int] | None = None,
    required: Iterable[int] = (),
    *,
    matrix: ScoreMatrix | None = None,
) -> tuple[tuple[int, ...], SetScore]:
    """Contract 1's optimum by trying every ``k``-set: ``(sorted gpus, its score)``.

    Plain Python on purpose: it is the reference that ``nvtopo.select_gpus`` must agree with
    and that the core's speed is compared to.
    """
    m = matrix or ScoreMatrix(topology)
    avail = _available(topology, k, available)
    req = sorted(set(required))
    if any(g not in avail for g in req) or len(req) > k:
        raise ValueError(f"required GPUs {req} are not all available or exceed k={k}")
    pos = [m.pos[g] for g in avail]
    w, numa = m.w, m.numa
    # Cut of S = Σ_{i∈S} (row sum of i over A) − 2·total(S): one pass per set, not k·|A\S|.
    row = {i: sum(w[i][j] for j in pos if j != i) for i in pos}
    req_pos = tuple(m.pos[g] for g in req)
    free_pos = [p for p in pos if p not in req_pos]
    best_key: tuple[int, int, int, int] | None = None
    best_set: tuple[int, ...] = ()
    for extra in itertools.combinations(free_pos, k - len(req_pos)):
        s = tuple(sorted(req_pos + extra))
        bottleneck = 1 << 62 if k > 1 else 0
        total = 0
        for a, b in itertools.combinations(s, 2):
            x = w[a][b]
            total += x
            if x < bottleneck:
                bottleneck = x
        cut = sum(row[i] for i in s) - 2 * total
        key = (bottleneck, total, -len({numa[i] for i in s}), -cut)
        # Positions follow GPU order, so tuples of positions compare like tuples of GPUs.
        if best_key is None or key > best_key or (key == best_key and s < best_set):
            best_key, best_set = key, s
    gpus = tuple(topology.gpu_indices[i] for i in best_set)
    return gpus, m.score(gpus, avail)


# -- cluster baselines -------------------------------------------------------------------


class RequestLike(Protocol):
    """What the placers read of a request (``nvtopo.PlacementRequest`` fits)."""

    @property
    def gpus(self) -> int: ...

    @property
    def nodes(self) -> int | None: ...


@dataclass(frozen=True)
class SimplePlacement:
    """Where a baseline put a job: ``(node name, sorted GPUs)`` per node, in name order."""

    nodes: tuple[tuple[str, tuple[int, ...]], ...]
    cliques: tuple[str | None, ...]

    @property
    def gpu_count(self) -> int:
        return sum(len(g) for _, g in self.nodes)


class SimpleClusterState:
    """Node → free GPUs and clique, kept in plain Python for the baseline placers.

    A node without a clique is its own domain, as in nvtopo's model.
    """

    def __init__(self, nodes: Iterable[tuple[str, str | None, Iterable[int]]]) -> None:
        self.names: list[str] = []
        self.clique: dict[str, str | None] = {}
        self.free: dict[str, set[int]] = {}
        self.total = 0
        for name, clique, free in sorted(nodes, key=lambda n: n[0]):
            self.names.append(name)
            self.clique[name] = clique
            self.free[name] = set(free)
            self.total += len(self.free[name])
        self._jobs: dict[int, SimplePlacement] = {}
        self._next_id = 0

    @classmethod
    def from_cluster(cls, cluster: Cluster) -> SimpleClusterState:
        """A state with each node's domain (after the health rule) and free GPUs."""
        return cls((n.name, n.domain, n.free) for n in cluster.nodes)

    @property
    def free_count(self) -> int:
        return sum(len(f) for f in self.free.values())

    def take(self, placement: SimplePlacement) -> int:
        """Mark ``placement``'s GPUs used and return its job id."""
        for name, gpus in placement.nodes:
            if not set(gpus) <= self.free[name]:
                raise ValueError(f"node {name}: GPUs {gpus} are not all free")
        for name, gpus in placement.nodes:
            self.free[name].difference_update(gpus)
        self._next_id += 1
        self._jobs[self._next_id] = placement
        return self._next_id

    def release(self, job: int) -> None:
        for name, gpus in self._jobs.pop(job).nodes:
            self.free[name].update(gpus)


def _shape(request: RequestLike) -> tuple[int, int]:
    """``(nodes, GPUs per node)``; a request without nodes is one pod on one node."""
    nodes = request.nodes or 1
    if request.gpus < 1 or request.gpus % nodes:
        raise ValueError(f"{request.gpus} GPUs do not split evenly over {nodes} nodes")
    return nodes, request.gpus // nodes


def _placement(
    state: SimpleClusterState, chosen: Iterable[tuple[str, tuple[int, ...]]]
) -> SimplePlacement:
    nodes = tuple(sorted(chosen))
    return SimplePlacement(nodes, tuple(state.clique[name] for name, _ in nodes))


def first_fit_place(state: SimpleClusterState, request: RequestLike) -> SimplePlacement | None:
    """The first nodes in name order with enough free GPUs, their lowest GPUs; cliques ignored.

    Returns None when fewer nodes than asked have room (the job is refused).
    """
    count, per = _shape(request)
    chosen: list[tuple[str, tuple[int, ...]]] = []
    for name in state.names:
        free = state.free[name]
        if len(free) >= per:
            chosen.append((name, tuple(sorted(free)[:per])))
            if len(chosen) == count:
                return _placement(state, chosen)
    return None


def random_place(
    state: SimpleClusterState, request: RequestLike, rng: random.Random
) -> SimplePlacement | None:
    """Random nodes among those with enough free GPUs, random GPUs on each; None if refused."""
    count, per = _shape(request)
    fits = [name for name in state.names if len(state.free[name]) >= per]
    if len(fits) < count:
        return None
    chosen = rng.sample(fits, count)
    return _placement(
        state, ((name, tuple(sorted(rng.sample(sorted(state.free[name]), per)))) for name in chosen)
    )


def _domains(state: SimpleClusterState) -> dict[str, list[str]]:
    """Node names by domain (a node without a clique is its own), names in order."""
    out: dict[str, list[str]] = {}
    for name in state.names:
        out.setdefault(state.clique[name] or name, []).append(name)
    return out


def first_rack_place(state: SimpleClusterState, request: RequestLike) -> SimplePlacement | None:
    """First-rack greedy: the first domain (by id) with enough nodes of room, its first
    nodes by name; when no domain holds the job, first-fit over the whole cluster."""
    count, per = _shape(request)
    for names in (v for _, v in sorted(_domains(state).items())):
        fits = [n for n in names if len(state.free[n]) >= per]
        if len(fits) >= count:
            return _placement(
                state, ((n, tuple(sorted(state.free[n])[:per])) for n in fits[:count])
            )
    return first_fit_place(state, request)


def bin_pack_place(state: SimpleClusterState, request: RequestLike) -> SimplePlacement | None:
    """KAI-style bin packing: the fullest domain that holds the job (fewest free GPUs), in
    it the fullest nodes that fit; when none holds it, the fullest nodes of the cluster."""
    count, per = _shape(request)
    best: tuple[int, str, list[str]] | None = None
    for key, names in _domains(state).items():
        fits = [n for n in names if len(state.free[n]) >= per]
        if len(fits) < count:
            continue
        free = sum(len(state.free[n]) for n in names)
        if best is None or (free, key) < best[:2]:
            best = (free, key, fits)
    if best is not None:
        fits = best[2]
    else:
        fits = [n for n in state.names if len(state.free[n]) >= per]
        if len(fits) < count:
            return None
    chosen = sorted(fits, key=lambda n: (len(state.free[n]), n))[:count]
    return _placement(state, ((n, tuple(sorted(state.free[n])[:per])) for n in chosen))
