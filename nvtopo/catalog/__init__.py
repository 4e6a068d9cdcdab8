"""The embedded system catalog: topologies of well-known machines, no GPU needed.

Single nodes (DGX, HGX, PCIe servers, one GB200/GB300 compute tray) come from
:func:`system`; NVL72 racks, alone or by the thousand, from :func:`cluster`. Every topology
is built from public facts about the machine (NVLink bonds, NVSwitch planes, PCIe switches,
NUMA layout, NICs) and fills every field a live NVML discovery would, except the driver
version: a catalog entry is no live driver. GPU and cluster UUIDs are fake but
deterministic. :func:`with_lost_nvlinks` makes degraded variants for tests and benchmarks.

Examples
--------
>>> from nvtopo.catalog import cluster, system
>>> system("dgx1-v100").path_class(0, 3)
'NV2'
>>> c = cluster("gb200-nvl72x4")
>>> len(c.nodes), len(c.cliques)
(72, 4)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import Literal

from nvtopo.catalog._systems import _dgx, _gb200, _hgx, _pcie
from nvtopo.catalog._systems._build import NodeEntry
from nvtopo.exceptions import TopologyError, UnknownSystemError
from nvtopo.model import Gpu, NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode

__all__ = [
    "MAX_RACKS",
    "SystemInfo",
    "SystemKind",
    "cluster",
    "load_system",
    "system",
    "systems",
    "with_lost_nvlinks",
]

SystemKind = Literal["node", "cluster"]

#: Most racks :func:`cluster` builds for ``<family>x<N>`` (294,912 nodes).
MAX_RACKS = 16384

_NODES: dict[str, NodeEntry] = {
    e.name: e for e in (*_dgx.ENTRIES, *_hgx.ENTRIES, *_gb200.ENTRIES, *_pcie.ENTRIES)
}
_RACKS_RE = re.compile(
    r"^(?P<family>" + "|".join(map(re.escape, _gb200.FAMILIES)) + r")(?:x(?P<racks>\d+))?$"
)


@dataclass(frozen=True)
class SystemInfo:
    """One catalog entry as ``nvtopo systems`` lists it.

    ``nodes`` is None for a parameterised family (``gb200-nvl72x<N>``: N racks).
    """

    name: str
    description: str
    gpus_per_node: int
    nodes: int | None
    gpu: str
    kind: SystemKind


def systems() -> tuple[SystemInfo, ...]:
    """Every catalog entry: single nodes first, then rack families.

    Examples
    --------
    >>> [s.name for s in systems() if s.kind == "cluster"][:2]
    ['gb200-nvl72', 'gb200-nvl72x<N>']
    """
    infos = [
        SystemInfo(e.name, e.description, e.gpus, 1, e.model.name, "node") for e in _NODES.values()
    ]
    for fam in _gb200.FAMILIES.values():
        trays = _gb200.TRAYS_PER_RACK
        infos.append(
            SystemInfo(fam.name, f"{fam.description}, one NVLink domain", 4, trays,
                       fam.model.name, "cluster")
        )  # fmt: skip
        infos.append(
            SystemInfo(f"{fam.name}x<N>", f"N {fam.name} racks, each its own cluster UUID", 4,
                       None, fam.model.name, "cluster")
        )  # fmt: skip
    return tuple(infos)


def system(name: str, *, degraded_gpus: Iterable[int] = ()) -> NodeTopology:
    """The topology of single-node catalog system ``name``.

    Parameters
    ----------
    name
        A node name from :func:`systems` (``dgx-h100``, ``gb200-tray``, ...).
    degraded_gpus
        GPUs whose NVLinks are all down in the result (see :func:`with_lost_nvlinks`).

    Raises
    ------
    UnknownSystemError
        No such system; the message names the closest matches.
    TopologyError
        ``name`` is a multi-node system: use :func:`cluster`.

    Examples
    --------
    >>> t = system("dgx-h100")
    >>> len(t.gpus), t.path_class(0, 7), t.gpu(5).numa_node
    (8, 'NV18', 1)
    >>> system("hgx-b200", degraded_gpus=(2,)).path_class(2, 3)
    'NODE'
    """
    key = _key(name)
    if key not in _NODES:
        family, racks = _parse_racks(name, key)
        canonical = family if key == family else f"{family}x{racks}"
        raise TopologyError(
            f"{canonical} is a cluster of {racks * _gb200.TRAYS_PER_RACK} nodes; "
            f"use nvtopo.cluster({canonical!r})"
        )
    topo = _node(key)
    lost = tuple(degraded_gpus)
    return with_lost_nvlinks(topo, lost) if lost else topo


def cluster(name: str) -> Cluster:
    """The cluster of catalog system ``name``.

    ``gb200-nvl72`` / ``gb300-nvl72`` is one rack: 18 compute trays in one clique;
    ``gb200-nvl72x<N>`` is N racks, each its own NVLink domain with a cluster UUID derived
    from its rack number. Nodes are named ``rack<r>-tray<t>`` (DNS labels) and come sorted,
    rack then tray; the trays of a rack share one topology object. A single-node system
    gives a one-node cluster.

    Examples
    --------
    >>> c = cluster("gb200-nvl72x2")
    >>> c.nodes[0].name, c.nodes[-1].name, len(c.cliques)
    ('rack0000-tray00', 'rack0001-tray17', 2)
    >>> len(cluster("dgx-a100"))
    1
    """
    key = _key(name)
    if key in _NODES:
        topo = _node(key)
        return Cluster((ClusterNode(key, topo, topo.clique),), name=key)
    family, racks = _parse_racks(name, key)
    return _racks(family, racks, key)


def load_system(name: str) -> NodeTopology | Cluster:
    """A single-node system as a :class:`NodeTopology`, a multi-node one as a :class:`Cluster`.

    Examples
    --------
    >>> type(load_system("dgx-h100")).__name__, type(load_system("gb300-nvl72")).__name__
    ('NodeTopology', 'Cluster')
    """
    key = _key(name)
    return _node(key) if key in _NODES else cluster(name)


def with_lost_nvlinks(topology: NodeTopology, gpus: Iterable[int]) -> NodeTopology:
    """A copy of ``topology`` in which every NVLink of ``gpus`` is down.

    Each pair with one of those GPUs loses its working NVLinks (``nvlinks=0``, the lost
    count added to ``nvlinks_down``) and keeps its PCIe class; the GPUs' link records say
    ``down``, and so do their peers' records of direct links to them. Other pairs are
    untouched.

    Raises
    ------
    TopologyError
        A GPU index is not on the node.

    Examples
    --------
    >>> t = with_lost_nvlinks(system("dgx1-v100"), [0])
    >>> t.pair(0, 3).nvlinks, t.pair(0, 3).nvlinks_down, t.path_class(0, 3), t.path_class(1, 2)
    (0, 2, 'PHB', 'NV2')
    """
    known = set(topology.gpu_indices)
    lost: set[int] = set()
    for g in gpus:
        if g not in known:
            raise TopologyError(
                f"cannot take the NVLinks of GPU {g}: no such GPU on this node "
                f"(GPUs: {list(topology.gpu_indices)})"
            )
        lost.add(g)
    if not lost:
        return topology
    pairs = tuple(
        replace(p, nvlinks=0, nvlinks_down=p.nvlinks_down + p.nvlinks)
        if p.nvlinks and (p.a in lost or p.b in lost)
        else p
        for p in topology.pairs
    )
    return replace(topology, gpus=tuple(_drop_links(g, lost) for g in topology.gpus), pairs=pairs)


# -- internals ---------------------------------------------------------------------------


def _drop_links(gpu: Gpu, lost: set[int]) -> Gpu:
    every = gpu.index in lost
    links = tuple(
        replace(nv, state="down") if every or nv.remote_gpu in lost else nv for nv in gpu.nvlinks
    )
    return replace(gpu, nvlinks=links) if links != gpu.nvlinks else gpu


def _key(name: str) -> str:
    if not isinstance(name, str):
        raise UnknownSystemError(f"a system name is text, not {type(name).__name__}")
    return name.strip().lower()


def _parse_racks(name: str, key: str) -> tuple[str, int]:
    """``(family, racks)`` of a rack system name, else the one-line unknown-system error."""
    match = _RACKS_RE.match(key)
    if match is None:
        candidates = [*_NODES, *_gb200.FAMILIES]
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownSystemError(
            f"unknown system {name!r}{hint} (`nvtopo systems` lists the catalog)"
        )
    racks = 1 if match["racks"] is None else int(match["racks"])
    if not 1 <= racks <= MAX_RACKS:
        raise TopologyError(f"{name}: the rack count must be 1 to {MAX_RACKS}, not {racks}")
    return match["family"], racks


@cache
def _node(key: str) -> NodeTopology:
    return _NODES[key].build()


@lru_cache(maxsize=8)
def _racks(family: str, racks: int, key: str) -> Cluster:
    name = family if key == family else f"{family}x{racks}"
    return _gb200.build_racks(family, racks, name)
