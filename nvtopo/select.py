"""Contract 1: the exact optimal set of ``k`` GPUs of one node.

The search runs in the Rust core (:mod:`nvtopo._core`): this module converts a
:class:`~nvtopo.model.NodeTopology` once (the core's copy is kept on it), then every
selection is one call into the core, which builds the frozen :class:`Selection`. Nodes of
more than 16 GPUs are searched with the GIL released.

Sets are compared, best first, by: (1) the highest bottleneck (weakest pair score);
(2) the highest total pair score; (3) the fewest distinct NUMA keys; (4) the smallest cut
towards the available GPUs left out; (5) the smallest sorted tuple of GPU ids. A pair scores
``1000 + nvlinks × GB/s per link`` with working NVLinks, else ``PIX 50``, ``PXB 40``,
``PHB 30``, ``NODE 20``, ``SYS 10``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import nvtopo._core as _core
from nvtopo._validate import require_topology
from nvtopo.exceptions import SelectionError, UnknownGpuError
from nvtopo.model import PCIE_CLASSES, NodeTopology

__all__ = ["Selection", "core_topology", "partition", "select_gpus"]

_CLASS_CODE = {name: code for code, name in enumerate(PCIE_CLASSES)}
_SYS = _CLASS_CODE["SYS"]
# The core's copy of a topology lives on the (frozen) NodeTopology itself, under this
# attribute: no lookup by id, and it goes when the topology goes.
_ATTR = "_nvtopo_core"

#: The GPU set Contract 1 picked (built in the core): ``gpus`` (ids, ascending),
#: ``bottleneck``, ``total``, ``numa_keys``, ``cut``, ``optimal``, ``gap`` (0.0 when
#: optimal), ``bottleneck_pair``, ``bottleneck_path``, ``remaining``, ``unknown_pairs``
#: (pairs of the set whose path the source did not give, scored as ``SYS``);
#: ``explain()`` and ``to_json()``.
Selection = _core.Selection


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
    """The core's copy of ``topology``, built on first use and kept on it."""
    core = getattr(topology, _ATTR, None)
    if core is None:
        if not isinstance(topology, NodeTopology):
            raise SelectionError(f"topology must be a NodeTopology, got {topology!r}")
        core = _build(topology)
        object.__setattr__(topology, _ATTR, core)
    return core


def _bad_call(
    topology: NodeTopology, k: Any, ids: dict[str, Any], budget: Any, deadline: Any
) -> SelectionError:
    """The one-line error for arguments the core cannot even read (wrong type, or an int
    too large for its fixed-width integers)."""
    count = len(topology.gpus)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        return SelectionError(f"k must be a positive int, got {k!r}")
    if k > count:
        return SelectionError(f"k must be between 1 and {count} (the node's GPU count), got {k}")
    known = set(topology.gpu_indices)
    for what, values in ids.items():
        if isinstance(values, (str, bytes)):
            return SelectionError(f"{what} must be GPU ids, got {values!r}")
        if not isinstance(values, (list, tuple)) and values is not None:
            continue  # an iterator the core consumed: the messages below cannot name it
        for v in values or ():
            if not isinstance(v, int) or isinstance(v, bool):
                return SelectionError(f"{what} GPU ids must be ints, got {v!r}")
            if v not in known:
                gpus = ", ".join(map(str, topology.gpu_indices))
                return UnknownGpuError(f"GPU {v} in {what} is not on this node (GPUs: {gpus})")
    if deadline is not None and not isinstance(deadline, (int, float)):
        return SelectionError(f"deadline must be a number of seconds or None, got {deadline!r}")
    return SelectionError(f"budget must be a non-negative int or None, got {budget!r}")


def select_gpus(
    topology: NodeTopology,
    k: int,
    *,
    available: Iterable[int] | None = None,
    required: Iterable[int] = (),
    budget: int | None = None,
    deadline: float | None = None,
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
    deadline
        Seconds the search may take on nodes of more than 16 GPUs (default 0.01); up to
        16 GPUs the search always ends with the proven optimum. Past it the best set found
        comes back with ``optimal=False`` and ``gap``, how far it may fall short.

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
    >>> t = NodeTopology(
    ...     gpus=tuple(Gpu(i, nvlink_generation=4) for i in range(4)),
    ...     pairs=(GpuPair(0, 2, nvlinks=4), GpuPair(1, 3, nvlinks=4)),
    ... )
    >>> s = select_gpus(t, 2, available=(0, 1, 2))
    >>> s.gpus, s.bottleneck, s.bottleneck_path
    ((0, 2), 1100, 'NV4')
    """
    try:
        # The core copy lives in the node's own dict once built: one lookup on the hot path.
        core: _core.Topology = topology.__dict__[_ATTR]
    except (AttributeError, KeyError, TypeError):
        require_topology(topology, call="select_gpus()")
        core = core_topology(topology)
    try:
        selection = core.select(k, available, required, budget, deadline)
    except (TypeError, OverflowError):
        ids = {"available": available, "required": required}
        raise _bad_call(topology, k, ids, budget, deadline) from None
    if not topology.unknown_pairs:
        return selection
    # The core scores a path the source did not give as SYS; say so rather than print it
    # as a fact.
    chosen = set(selection.gpus)
    unknown = tuple(p for p in topology.unknown_pairs if p[0] in chosen and p[1] in chosen)
    path = selection.bottleneck_path
    if selection.bottleneck_pair is not None and selection.bottleneck_pair in unknown:
        path = "?"
    return selection.with_unknown_paths(unknown, path)


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
    require_topology(topology, call="partition()")
    core = core_topology(topology)
    try:
        groups = core.partition(k)
    except (TypeError, OverflowError):
        raise SelectionError(f"group size must be a positive int, got {k!r}") from None
    return tuple(tuple(g) for g in groups)
