"""Print a topology as the matrix of ``nvidia-smi topo -m``.

The layout is the tool's own: tab-separated cells, `` X `` on the diagonal, ``NV#`` or a PCIe
class per pair (``?`` where the source did not give the path, as ``nvidia-smi -q -x`` does
not), one row per NIC, then the affinity columns, a path-class legend and a
``NIC Legend:`` section. :func:`nvtopo.formats.smi_topo.parse_topo_matrix` reads it back.

Examples
--------
>>> from nvtopo.model import Gpu, GpuPair, NodeTopology
>>> t = NodeTopology(
...     gpus=(Gpu(0, cpu_affinity="0-31", numa_affinity=(0,)), Gpu(1, cpu_affinity="0-31")),
...     pairs=(GpuPair(0, 1, nvlinks=4),),
... )
>>> render_matrix(t).splitlines()[1].split("\\t")
['GPU0', ' X ', 'NV4', '0-31', '0', '', 'N/A']
"""

from __future__ import annotations

import re

from nvtopo.exceptions import TopologyError
from nvtopo.formats._cpulist import compress_cpulist
from nvtopo.formats.smi_topo import AFFINITY_COLUMNS
from nvtopo.model import Nic, NodeTopology

__all__ = ["render_matrix"]

_UNDERLINE, _RESET = "\x1b[4m", "\x1b[0m"
# A NIC keeps its own name as column label when the parser would read it back as one.
_LABEL_RE = re.compile(r"^[A-Za-z][\w.-]*\d$")
_NUMBERED_RE = re.compile(r"^NIC\d+$")
_RESERVED_RE = re.compile(r"^GPU\d+$")

_LEGEND = (
    "Legend:",
    "",
    "  X    = Self",
    "  SYS  = PCIe path that crosses the link between NUMA nodes (QPI/UPI, Infinity Fabric)",
    "  NODE = PCIe path between PCIe host bridges of one NUMA node",
    "  PHB  = PCIe path through a PCIe host bridge (typically the CPU)",
    "  PXB  = PCIe path through several PCIe bridges, without a host bridge",
    "  PIX  = PCIe path through at most one PCIe bridge",
    "  NV#  = Bonded set of # NVLinks, direct or through NVSwitch",
)


def _labels(nics: list[Nic]) -> list[str]:
    names = [n.name for n in nics]
    usable = len(set(names)) == len(names) and all(
        _LABEL_RE.match(n) and not _RESERVED_RE.match(n) for n in names
    )
    return names if usable else [f"NIC{k}" for k in range(len(nics))]


def _nic_to_nic(a: Nic, b: Nic, j: int, k: int) -> str:
    """The path from NIC ``a`` (the ``j``-th of the node) to NIC ``b`` (the ``k``-th), as the
    source gave it; ``?`` where it gave none (no guess from the GPU paths)."""
    if a.nic_paths:
        return a.nic_paths[k]
    if b.nic_paths:
        return b.nic_paths[j]
    return "?"


def _self(cell: str) -> str:
    return " X " if cell == "X" else cell


def render_matrix(topology: NodeTopology, *, color: bool = False) -> str:
    """The GPU×GPU (and NIC) matrix of ``topology`` in ``nvidia-smi topo -m`` notation.

    Parameters
    ----------
    topology
        The node to print. NICs without known GPU paths are left out.
    color
        Underline the header with ANSI escapes, as the real tool does on a terminal.

    Returns
    -------
    str
        The matrix, the path-class legend and, where NIC columns need one, the
        ``NIC Legend:`` section; newline-terminated.

    Raises
    ------
    TopologyError
        The topology has no GPUs.
    """
    if not topology.gpus:
        raise TopologyError("cannot print a topo -m matrix of a node with no GPUs")
    gpus = topology.gpus
    nics = [n for n in topology.nics if n.gpu_paths]
    position = {id(n): k for k, n in enumerate(topology.nics)}
    nic_labels = _labels(nics)
    header = "\t".join([*(f"GPU{g.index}" for g in gpus), *nic_labels, *AFFINITY_COLUMNS])
    lines = [f"\t{_UNDERLINE}{header}{_RESET}" if color else f"\t{header}"]

    for i, gpu in enumerate(gpus):
        cells = [topology.path_class(gpu.index, other.index) for other in gpus]
        cells += [nic.gpu_paths[i] for nic in nics]
        numa = compress_cpulist(gpu.numa_affinity) or "N/A"
        # The tool ends NUMA Affinity with two tabs (its header is wider than one tab stop).
        row = "\t".join([f"GPU{gpu.index}", *map(_self, cells), gpu.cpu_affinity or "N/A"])
        gpu_numa = "N/A" if gpu.gpu_numa_id is None else str(gpu.gpu_numa_id)
        lines.append(f"{row}\t{numa}\t\t{gpu_numa}")
    for i, nic in enumerate(nics):
        cells = [*nic.gpu_paths]
        cells += [
            "X" if j == i else _nic_to_nic(nic, other, position[id(nic)], position[id(other)])
            for j, other in enumerate(nics)
        ]
        lines.append("\t".join([nic_labels[i], *map(_self, cells)]))

    lines += ["", *_LEGEND]
    legend: list[str] = []
    for nic, label in zip(nics, nic_labels, strict=True):
        device = nic.device if label == nic.name else (nic.device or nic.name)
        implied = None if _NUMBERED_RE.match(label) else label
        if device is not None and device != implied:
            legend.append(f"  {label}: {device}")
    if legend:
        lines += ["", "NIC Legend:", "", *legend]
    return "\n".join(lines) + "\n"
