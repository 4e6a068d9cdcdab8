"""Readable summaries of a node or cluster for the terminal (rich tables, colour on a tty)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from nvtopo.dra.taints import taint_text
from nvtopo.model import PCIE_CLASSES, NodeTopology
from nvtopo.model.cluster import Cluster
from nvtopo.model.gpu_health import gpu_findings

__all__ = ["path_style", "render_cluster_table", "render_node_table"]


def path_style(cell: str) -> str:
    """Colour of a ``topo -m`` cell: NVLink green, PCIe close yellow, far red."""
    if cell.startswith("NV"):
        return "bold green"
    return {
        "PIX": "yellow",
        "PXB": "yellow",
        "PHB": "dark_orange",
        "NODE": "red",
        "SYS": "bold red",
    }.get(cell, "dim")


def _fabric(t: NodeTopology) -> str:
    states = Counter(g.fabric.state for g in t.gpus if g.fabric is not None)
    if not states:
        return "n/a"
    return ", ".join(f"{s} ×{n}" if len(states) > 1 else s for s, n in sorted(states.items()))


def _render_health(t: NodeTopology, con: Console) -> None:
    """The GPUs with a health finding and the device taint each carries (none: no section)."""
    found = [f for g in t.gpus for f in gpu_findings(g)]
    if not found:
        return
    con.print("Health (each finding is a NoSchedule device taint in the node's slices)")
    for f in found:
        con.print(f"  {f.text}: taint {taint_text(f)}", markup=False)


def render_node_table(t: NodeTopology, con: Console) -> None:
    """GPUs, the path-class matrix, NVSwitches, NICs and NVLink domain of one node."""
    title = t.name or t.system or "node"
    head = [f"[bold]{title}[/bold]: {len(t.gpus)} GPU(s)"]
    if t.system:
        head.append(f"catalog system {t.system}")
    if t.driver_version:
        head.append(f"driver {t.driver_version}")
    if t.cuda_version:
        head.append(f"CUDA {t.cuda_version}")
    con.print(", ".join(head))
    con.print(
        f"NVLink domain (clique): {t.clique or 'none (single-node domain)'}; fabric: {_fabric(t)}"
    )

    gpus = Table(title="GPUs", title_justify="left")
    for col in ("GPU", "name", "memory", "PCI bus id", "NUMA", "CPU affinity", "NVLink", "MIG"):
        gpus.add_column(col)
    for g in t.gpus:
        mem = f"{g.memory_mib / 1024:.0f} GiB" if g.memory_mib else "?"
        numa = ",".join(map(str, g.numa_affinity)) or (
            str(g.numa_node) if g.numa_node is not None else "?"
        )
        if g.nvlinks:
            up = sum(1 for n in g.nvlinks if n.state == "up")
            gen = f"gen{g.nvlink_generation} " if g.nvlink_generation else ""
            link = f"{gen}{up}/{len(g.nvlinks)} up"
            if up < len(g.nvlinks):
                link = f"[red]{link}[/red]"
        else:
            link = "-"
        mig = "?" if g.mig_mode is None else ("on" if g.mig_mode else "off")
        gpus.add_row(
            str(g.index),
            g.name or "?",
            mem,
            g.pci_bus_id or "?",
            numa,
            g.cpu_affinity or "?",
            link,
            mig,
        )
    con.print(gpus)
    _render_health(t, con)

    matrix = Table(title="Paths (nvidia-smi topo -m notation)", title_justify="left")
    matrix.add_column("")
    for g in t.gpus:
        matrix.add_column(f"GPU{g.index}", justify="center")
    for a in t.gpus:
        cells = []
        for b in t.gpus:
            cell = t.path_class(a.index, b.index)
            cells.append("X" if cell == "X" else f"[{path_style(cell)}]{cell}[/]")
        matrix.add_row(f"GPU{a.index}", *cells)
    con.print(matrix)

    islands = t.nvlink_islands()
    con.print("NVLink islands: " + "  ".join("{" + ",".join(map(str, i)) + "}" for i in islands))
    degraded = [(g.index, len(g.degraded_links)) for g in t.gpus if g.degraded_links]
    if degraded:
        con.print(
            "[red]Degraded NVLinks:[/red] "
            + ", ".join(f"GPU{i}: {n} link(s) down" for i, n in degraded)
        )
    if t.nvswitches:
        con.print(f"NVSwitches: {len(t.nvswitches)}")
    if t.nics:
        nics = Table(title="NICs", title_justify="left")
        nics.add_column("NIC")
        nics.add_column("device")
        nics.add_column("NUMA")
        nics.add_column("closest GPUs")
        for nic in t.nics:
            best = min(nic.gpu_paths, key=PCIE_CLASSES.index, default=None)
            close = [str(g.index) for g, c in zip(t.gpus, nic.gpu_paths, strict=False) if c == best]
            nics.add_row(
                nic.name,
                nic.device or "?",
                "?" if nic.numa_node is None else str(nic.numa_node),
                f"{','.join(close)} ({best})" if best else "?",
            )
        con.print(nics)


def render_cluster_table(c: Cluster, con: Console) -> None:
    """Cliques with their node and free-GPU counts, and nodes outside any clique."""
    total = c.gpu_count
    free = sum(len(n.free) for n in c.nodes)
    con.print(
        f"[bold]{c.name or 'cluster'}[/bold]: {len(c.nodes)} nodes, {total} GPUs "
        f"({free} free), {len(c.cliques)} NVLink domain(s)"
    )
    table = Table(title="NVLink domains (cliques)", title_justify="left")
    for col in ("clique", "nodes", "GPUs", "free GPUs", "first node", "last node"):
        table.add_column(col)
    for clique, names in c.cliques.items():
        nodes = [c.node(n) for n in names]
        table.add_row(
            clique,
            str(len(nodes)),
            str(sum(len(n.topology.gpus) for n in nodes)),
            str(sum(len(n.free) for n in nodes)),
            names[0],
            names[-1],
        )
    con.print(table)
    lone = [n for n in c.nodes if n.domain is None]
    if lone:
        shown = ", ".join(n.name for n in lone[:8]) + (" ..." if len(lone) > 8 else "")
        con.print(f"{len(lone)} node(s) in no multi-node domain: {shown}")
