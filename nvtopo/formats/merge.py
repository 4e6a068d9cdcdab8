"""One node read from several captures at once.

``nvidia-smi topo -m`` gives the paths between GPUs and NICs and the CPU and NUMA affinity,
but no identity; ``nvidia-smi -q -x`` gives UUIDs, memory, PCI bus ids and the multi-node
fabric, but no paths. :func:`merge_topologies` joins such reports of one node: GPUs are
matched by index (both tools list GPUs in NVML index order), each field comes from the
report that gives it, and two reports that give one field different values are refused,
since they cannot describe the same machine.

Examples
--------
>>> from nvtopo.model import Gpu, GpuPair, NodeTopology
>>> paths = NodeTopology(gpus=(Gpu(0), Gpu(1)), pairs=(GpuPair(0, 1, nvlinks=4),))
>>> names = NodeTopology(gpus=(Gpu(0, uuid="GPU-a"), Gpu(1, uuid="GPU-b")))
>>> t = merge_topologies([("topo.txt", paths), ("q.xml", names)])
>>> t.path_class(0, 1), t.gpu(1).uuid
('NV4', 'GPU-b')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

from nvtopo.exceptions import TopologyError
from nvtopo.model import Gpu, GpuPair, NodeTopology

__all__ = ["merge_topologies"]

_GPU_FIELDS = tuple(f.name for f in fields(Gpu) if f.name != "index")
_NODE_FIELDS = ("name", "system", "driver_version", "cuda_version")


def _given(value: Any) -> bool:
    return value is not None and value != ()


def _pick(what: str, values: list[tuple[str, Any]]) -> Any:
    """The one value the reports give for ``what`` (None when none gives it)."""
    given = [(where, v) for where, v in values if _given(v)]
    for where, v in given[1:]:
        if v != given[0][1]:
            raise TopologyError(
                f"{what}: {given[0][0]} says {given[0][1]!r}, {where} says {v!r}; "
                "are these captures of one node?"
            )
    return given[0][1] if given else None


def _pair(a: int, b: int, parts: Sequence[tuple[str, NodeTopology]]) -> GpuPair | None:
    known = [(where, t.pair(a, b)) for where, t in parts if t.pair(a, b).known]
    if not known:
        return None
    first_where, first = known[0]
    for where, p in known[1:]:
        if p.path_class != first.path_class:
            raise TopologyError(
                f"GPUs {a}-{b}: {first_where} says {first.path_class}, "
                f"{where} says {p.path_class}; are these captures of one node?"
            )
    return first


def merge_topologies(parts: Sequence[tuple[str, NodeTopology]]) -> NodeTopology:
    """One node from several reports of it, each ``(where it came from, topology)``.

    Raises
    ------
    TopologyError
        The reports list different GPUs, or give one field different values.
    """
    if not parts:
        raise TopologyError("no reports to merge")
    if len(parts) == 1:
        return parts[0][1]
    first_where, first = parts[0]
    for where, t in parts[1:]:
        if t.gpu_indices != first.gpu_indices:
            raise TopologyError(
                f"{first_where} lists GPUs {list(first.gpu_indices)}, {where} lists "
                f"{list(t.gpu_indices)}; are these captures of one node?"
            )
    gpus = []
    for k, index in enumerate(first.gpu_indices):
        merged = {
            name: _pick(f"GPU {index} {name}", [(w, getattr(t.gpus[k], name)) for w, t in parts])
            for name in _GPU_FIELDS
        }
        gpus.append(Gpu(index, **{n: v for n, v in merged.items() if v is not None}))
    pairs = []
    for p in first.iter_pairs():
        found = _pair(p.a, p.b, parts)
        if found is not None:
            pairs.append(found)
    node = {
        name: _pick(f"node {name}", [(w, getattr(t, name)) for w, t in parts])
        for name in _NODE_FIELDS
    }
    numa_cpus: dict[int, str] = {}
    for _, t in parts:
        for node_id, cpus in t.numa_cpus.items():
            numa_cpus.setdefault(node_id, cpus)
    return replace(
        first,
        gpus=tuple(gpus),
        pairs=tuple(pairs),
        nvswitches=next((t.nvswitches for _, t in parts if t.nvswitches), ()),
        nics=next((t.nics for _, t in parts if t.nics), ()),
        numa_cpus=numa_cpus,
        **node,
    )
