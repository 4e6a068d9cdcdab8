"""Contract 1: the exact optimal set of ``k`` GPUs of one node.

The search runs in the Rust core (:mod:`nvtopo._core`); this module converts a
:class:`~nvtopo.model.NodeTopology` once, calls the core with the GIL released, and wraps
the answer in a frozen :class:`Selection`.

Sets are compared, best first, by: (1) the highest bottleneck (weakest pair score);
(2) the highest total pair score; (3) the fewest distinct NUMA keys; (4) the smallest cut
towards the available GPUs left out; (5) the smallest sorted tuple of GPU ids. A pair scores
``1000 + nvlinks × GB/s per link`` with working NVLinks, else ``PIX 50``, ``PXB 40``,
``PHB 30``, ``NODE 20``, ``SYS 10``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import nvtopo._core as _core
from nvtopo.exceptions import SelectionError, UnknownGpuError
from nvtopo.model import PCIE_CLASSES, NodeTopology

__all__ = ["Selection", "core_topology", "partition", "select_gpus"]

_CLASS_CODE = {name: code for code, name in enumerate(PCIE_CLASSES)}
_SYS = _CLASS_CODE["SYS"]

# id(topology) -> (weak reference, core topology). NodeTopology hashes by value, which is
# slow for a per-call lookup, so the cache is keyed by identity and emptied on collection.
_CACHE: dict[int, tuple[weakref.ref[NodeTopology], _core.Topology]] = {}


def _build(topology: NodeTopology) -> _core.Topology:
    ids = topology.gpu_indices
    pos = {gpu: p for p, gpu in enumerate(ids)}
    generations = [min(max(g.nvlink_generation or 0, 0), 255) for g in topology.gpus]
    pairs = [
        (pos[p.a], pos[p.b], max(p.nvlinks, 0), _CLASS_CODE.get(p.pcie or "SYS", _SYS))
        for p in topology.pairs
    ]
    keys: dict[str, int] = {}
    numa = [keys.setdefault(g.numa_key, len(keys)) for g in topology.gpus]
    return _core.Topology(list(ids), generations, pairs, numa)


def core_topology(topology: NodeTopology) -> _core.Topology:
    """The core's copy of ``topology``, built on first use and kept while it lives."""
    hit = _CACHE.get(id(topology))
    if hit is not None and hit[0]() is topology:
        return hit[1]
    core = _build(topology)
    key = id(topology)
    _CACHE[key] = (weakref.ref(topology, lambda _ref: _CACHE.pop(key, None)), core)
    return core


@dataclass(frozen=True)
class Selection:
    """The GPU set Contract 1 picked, with the measures it was compared by.

    Examples
    --------
    >>> from nvtopo.model import Gpu, GpuPair, NodeTopology
    >>> t = NodeTopology(
    ...     gpus=tuple(Gpu(i, nvlink_generation=4) for i in range(4)),
    ...     pairs=(GpuPair(0, 2, nvlinks=4), GpuPair(1, 3, nvlinks=4)),
    ... )
    >>> s = select_gpus(t, 2, available=(0, 1, 2))
    >>> s.gpus, s.bottleneck, s.bottleneck_path
    ((0, 2), 1100, 'NV4')
    """

    #: Chosen GPU ids, ascending.
    gpus: tuple[int, ...]
    #: Lowest pair score in the set (0 for a single GPU).
    bottleneck: int
    #: Sum of the pair scores in the set.
    total: int
    #: Distinct NUMA keys the set spans.
    numa_keys: int
    #: Sum of scores from the set to the available GPUs left out.
    cut: int
    #: True when the search proved the set optimal (always, up to 16 GPUs).
    optimal: bool
    #: The weakest pair (lowest score, then smallest ids); None for a single GPU.
    bottleneck_pair: tuple[int, int] | None
    #: Path class of the weakest pair, ``nvidia-smi topo -m`` style (``NV18``, ``SYS``).
    bottleneck_path: str | None
    #: Available GPUs left for later requests, ascending.
    remaining: tuple[int, ...] = ()
    #: Pairs of the set whose path the source did not give (scored as ``SYS``).
    unknown_pairs: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"gpus": [...], "bottleneck", "total", "numaKeys", "cut", "optimal", ...}``."""
        return {
            "gpus": list(self.gpus),
            "bottleneck": self.bottleneck,
            "bottleneckPair": list(self.bottleneck_pair) if self.bottleneck_pair else None,
            "bottleneckPath": self.bottleneck_path,
            "total": self.total,
            "numaKeys": self.numa_keys,
            "cut": self.cut,
            "remaining": list(self.remaining),
            "optimal": self.optimal,
            **(
                {"unknownPairs": [list(p) for p in self.unknown_pairs]}
                if self.unknown_pairs
                else {}
            ),
        }

    def explain(self) -> str:
        """One paragraph saying what was picked and why it is the best set."""
        ids = ", ".join(map(str, self.gpus))
        head = f"GPU {ids}" if len(self.gpus) == 1 else f"GPUs {ids}"
        if self.bottleneck_pair is None:
            link = "a single GPU, so no pair limits it"
        else:
            a, b = self.bottleneck_pair
            link = (
                f"the weakest pair is {a}-{b} over {self.bottleneck_path} "
                f"(score {self.bottleneck}), pair scores total {self.total}"
            )
        domains = "1 NUMA domain" if self.numa_keys == 1 else f"{self.numa_keys} NUMA domains"
        if self.remaining:
            rest = ", ".join(map(str, self.remaining))
            later = f"GPUs {rest} stay free for later requests (cut {self.cut})"
        else:
            later = "no available GPU is left over"
        proof = "proven optimal" if self.optimal else "the best found within the search budget"
        text = f"{head}: {link}; spans {domains}; {later}; {proof}."
        if self.unknown_pairs:
            pairs = ", ".join(f"{a}-{b}" for a, b in self.unknown_pairs)
            text += (
                f" The source gives no path for {pairs}: the answer assumes SYS for "
                "them (read `nvidia-smi topo -m` too for the real paths)."
            )
        return text


def _ids(values: Iterable[int], what: str) -> list[int] | tuple[int, ...]:
    if isinstance(values, (list, tuple)):
        return values
    if isinstance(values, (str, bytes)):
        raise SelectionError(f"{what} must be GPU ids, got {values!r}")
    return list(values)


def _bad_call(topology: NodeTopology, k: Any, ids: dict[str, Any], budget: Any) -> SelectionError:
    """The one-line error for arguments the core cannot even read (wrong type, or an int
    too large for its fixed-width integers)."""
    count = len(topology.gpus)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        return SelectionError(f"k must be a positive int, got {k!r}")
    if k > count:
        return SelectionError(f"k must be between 1 and {count} (the node's GPU count), got {k}")
    known = set(topology.gpu_indices)
    for what, values in ids.items():
        for v in values or ():
            if not isinstance(v, int) or isinstance(v, bool):
                return SelectionError(f"{what} GPU ids must be ints, got {v!r}")
            if v not in known:
                gpus = ", ".join(map(str, topology.gpu_indices))
                return UnknownGpuError(f"GPU {v} in {what} is not on this node (GPUs: {gpus})")
    return SelectionError(f"budget must be a non-negative int or None, got {budget!r}")


def select_gpus(
    topology: NodeTopology,
    k: int,
    *,
    available: Iterable[int] | None = None,
    required: Iterable[int] = (),
    budget: int | None = None,
) -> Selection:
    """The optimal ``k`` GPUs of ``topology`` (Contract 1).

    Parameters
    ----------
    topology
        The node.
    k
        How many GPUs, 1 to the node's GPU count.
    available
        GPU ids that may be chosen (default: all).
    required
        GPU ids that must be in the set; each must be available.
    budget
        Search nodes allowed (default ``nvtopo._core.DEFAULT_BUDGET``, enough to prove
        the optimum of any node of up to 16 GPUs). When it runs out the best set found so
        far comes back with ``optimal=False``.

    Raises
    ------
    SelectionError
        ``k`` out of range, or more GPUs required than ``k``.
    UnknownGpuError
        An id the node does not have, or one listed twice.
    RequiredUnavailableError
        A required GPU is not available.
    InfeasibleError
        Fewer GPUs available than ``k``.

    Examples
    --------
    >>> from nvtopo.model import Gpu, GpuPair, NodeTopology
    >>> t = NodeTopology(gpus=tuple(Gpu(i) for i in range(3)), pairs=(GpuPair(1, 2, pcie="PIX"),))
    >>> select_gpus(t, 2).gpus
    (1, 2)
    """
    core = core_topology(topology)
    avail = None if available is None else _ids(available, "available")
    req = _ids(required, "required")
    if isinstance(k, bool):  # an int to the core, but never a GPU count
        raise SelectionError(f"k must be a positive int, got {k!r}")
    try:
        r = core.select(k, avail, req, budget)
    except (TypeError, OverflowError):
        raise _bad_call(topology, k, {"available": avail, "required": req}, budget) from None
    selection = Selection(*r)
    if not topology.unknown_pairs:
        return selection
    # The core scores a path the source did not give as SYS; say so rather than print it
    # as a fact.
    chosen = set(selection.gpus)
    unknown = tuple(p for p in topology.unknown_pairs if p[0] in chosen and p[1] in chosen)
    path = selection.bottleneck_path
    if selection.bottleneck_pair is not None and selection.bottleneck_pair in unknown:
        path = "?"
    return replace(selection, bottleneck_path=path, unknown_pairs=unknown)


def partition(topology: NodeTopology, k: int) -> tuple[tuple[int, ...], ...]:
    """Split the node's GPUs into optimal groups of ``k``.

    Repeatedly takes Contract 1's best ``k``-set out of the GPUs not yet grouped; a last
    group smaller than ``k`` is left out (so ``k`` above the GPU count gives no group).
    Group ``i`` is what the ``set<k>`` device attribute calls ``i``.

    Examples
    --------
    >>> from nvtopo.model import Gpu, GpuPair, NodeTopology
    >>> t = NodeTopology(
    ...     gpus=tuple(Gpu(i) for i in range(4)),
    ...     pairs=(GpuPair(0, 3, nvlinks=2), GpuPair(1, 2, nvlinks=2)),
    ... )
    >>> partition(t, 2)
    ((0, 3), (1, 2))
    """
    core = core_topology(topology)
    try:
        groups = core.partition(k)
    except (TypeError, OverflowError):
        raise SelectionError(f"group size must be a positive int, got {k!r}") from None
    return tuple(tuple(g) for g in groups)
