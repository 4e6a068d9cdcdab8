"""GPU ring order inside one node: the order of local ranks that NCCL's rings follow best.

A ring visits every placed GPU once and returns to the first. The best ring maximises the
weakest adjacent link (Contract 1's pair score, read from the core), then the sum of the
adjacent scores, then is the lexicographically smallest sequence that starts at the lowest
GPU. On an NVSwitch node every pair scores the same, so the ring is the index order; on a
DGX-1 hybrid cube mesh it is a ring over NVLinks.

Up to :data:`EXACT_LIMIT` GPUs every ring is tried (7! = 5,040 at 8 GPUs). Past it, nodes
whose pairs all score the same (NVSwitch) take the index order, and others a greedy ring
improved by 2-opt moves: good, but not proven best.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import permutations

from nvtopo.model import NodeTopology
from nvtopo.select import core_topology

__all__ = ["EXACT_LIMIT", "ring_order", "ring_score"]

#: Largest GPU count whose rings are all compared.
EXACT_LIMIT = 9

Score = Callable[[int, int], int]


def ring_score(ring: Sequence[int], score: Score) -> tuple[int, int]:
    """``(weakest adjacent score, sum of adjacent scores)`` of ``ring`` (closed)."""
    if len(ring) < 2:
        return (0, 0)
    edges = [score(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]
    if len(ring) == 2:
        edges = edges[:1]
    return (min(edges), sum(edges))


def _key(ring: tuple[int, ...], score: Score) -> tuple[int, int, tuple[int, ...]]:
    weakest, total = ring_score(ring, score)
    return (-weakest, -total, ring)


def _exact(gpus: tuple[int, ...], score: Score) -> tuple[int, ...]:
    first, rest = gpus[0], gpus[1:]
    best: tuple[int, ...] | None = None
    best_key: tuple[int, int, tuple[int, ...]] | None = None
    for perm in permutations(rest):
        if len(perm) > 1 and perm[0] > perm[-1]:
            continue  # the same ring walked the other way
        ring = (first, *perm)
        key = _key(ring, score)
        if best_key is None or key < best_key:
            best, best_key = ring, key
    assert best is not None
    return best


def _heuristic(gpus: tuple[int, ...], score: Score) -> tuple[int, ...]:
    ring = [gpus[0]]
    left = list(gpus[1:])
    while left:
        nxt = max(left, key=lambda g: (score(ring[-1], g), -g))
        ring.append(nxt)
        left.remove(nxt)
    improved = True
    while improved:
        improved = False
        for i in range(1, len(ring) - 1):
            for j in range(i + 1, len(ring)):
                candidate = ring[:i] + ring[i : j + 1][::-1] + ring[j + 1 :]
                if _key(tuple(candidate), score) < _key(tuple(ring), score):
                    ring, improved = candidate, True
    return tuple(ring)


def ring_order(topology: NodeTopology, gpus: Sequence[int] | None = None) -> tuple[int, ...]:
    """The placed ``gpus`` of ``topology`` (default: all) in ring order.

    Examples
    --------
    >>> import nvtopo
    >>> ring_order(nvtopo.system("dgx-h100"))
    (0, 1, 2, 3, 4, 5, 6, 7)
    >>> ring = ring_order(nvtopo.system("dgx1-v100"))
    >>> t = nvtopo.system("dgx1-v100")
    >>> all(t.pair(ring[i], ring[i - 1]).nvlinks > 0 for i in range(8))
    True
    """
    chosen = tuple(sorted(set(topology.gpu_indices if gpus is None else gpus)))
    for g in chosen:
        topology.gpu(g)
    if len(chosen) <= 2:
        return chosen
    core = core_topology(topology)
    cache: dict[tuple[int, int], int] = {}

    def score(a: int, b: int) -> int:
        key = (a, b) if a < b else (b, a)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = core.score(*key)
        return hit

    if len(chosen) <= EXACT_LIMIT:
        return _exact(chosen, score)
    if len({score(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1 :]}) == 1:
        return chosen
    return _heuristic(chosen, score)
