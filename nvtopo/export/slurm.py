"""Slurm's ``topology.yaml`` for the ``topology/block`` plugin: one block per clique.

Format from Slurm's ``topology.yaml(5)``: a list of topologies, each with ``topology`` (a
unique name, the first key), ``cluster_default`` and one type; a ``block`` type has
``block_sizes`` (the planning base block size first, each further size a power-of-two
multiple of the one before) and ``blocks``, each ``{block: <unique name>, nodes:
<hostlist>}``. Nodes are written in Slurm's hostlist notation (``tray[00-17]``).

Blocks are in rack order then clique id, so that the consecutive blocks Slurm joins into a
larger block are neighbours. Block names are deterministic: ``nvl-<first 8 hex digits of the
cluster UUID>-<cliqueId>``, with the whole UUID where two cliques would share a name. The
base block size is the smallest clique, so that every block holds a whole base block. Nodes
in no clique are in no block; the file names them in a comment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from nvtopo.exceptions import TopologyError
from nvtopo.export.levels import Layout, layout
from nvtopo.model import Cluster

__all__ = ["hostlist", "slurm_blocks", "slurm_topology_yaml"]

_TRAILING_DIGITS = re.compile(r"^(.*?)(\d+)$")


def hostlist(names: Iterable[str]) -> str:
    """``names`` in Slurm's hostlist notation, ranges for runs of numbered names.

    Examples
    --------
    >>> hostlist(["n01", "n02", "n03", "n05", "login"])
    'login,n[01-03,05]'
    """
    groups: dict[tuple[str, int], list[int]] = {}
    plain: list[str] = []
    for name in sorted(set(names)):
        m = _TRAILING_DIGITS.match(name)
        if m is None or "[" in name or "," in name:
            plain.append(name)
            continue
        groups.setdefault((m.group(1), len(m.group(2))), []).append(int(m.group(2)))
    parts = list(plain)
    for (prefix, width), numbers in sorted(groups.items()):
        numbers.sort()
        if len(numbers) == 1:
            parts.append(f"{prefix}{numbers[0]:0{width}d}")
            continue
        runs: list[str] = []
        start = prev = numbers[0]
        for n in [*numbers[1:], None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            runs.append(
                f"{start:0{width}d}" if start == prev else f"{start:0{width}d}-{prev:0{width}d}"
            )
            if n is not None:
                start = prev = n
        parts.append(f"{prefix}[{','.join(runs)}]")
    return ",".join(sorted(parts))


def _block_names(cliques: list[str]) -> dict[str, str]:
    def short(c: str) -> str:
        uuid, _, cid = c.rpartition(".")
        return f"nvl-{uuid.split('-')[0]}-{cid}"

    names = {c: short(c) for c in cliques}
    taken: dict[str, int] = {}
    for n in names.values():
        taken[n] = taken.get(n, 0) + 1
    for c, n in names.items():
        if taken[n] > 1:
            uuid, _, cid = c.rpartition(".")
            names[c] = f"nvl-{uuid}-{cid}"
    return names


def slurm_blocks(cluster: Cluster | Layout, *, name: str = "nvlink") -> list[dict[str, Any]]:
    """``topology.yaml`` as data: one ``block`` topology, the cluster's default.

    Examples
    --------
    >>> import nvtopo
    >>> doc = slurm_blocks(nvtopo.cluster("gb200-nvl72x2"))
    >>> doc[0]["block"]["block_sizes"], doc[0]["block"]["blocks"][0]["nodes"]
    ([18], 'rack0000-tray[00-17]')
    """
    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    cliques = lay.cliques
    if not cliques:
        raise TopologyError(
            "no node is in an NVLink domain (clique): a topology/block file needs a block"
        )
    order = sorted(cliques, key=lambda c: (lay.clique_rack(c) or "", cliques[c][0], c))
    names = _block_names(order)
    blocks = [{"block": names[c], "nodes": hostlist(cliques[c])} for c in order]
    sizes = [min(len(v) for v in cliques.values())]
    return [
        {
            "topology": name,
            "cluster_default": True,
            "block": {"block_sizes": sizes, "blocks": blocks},
        }
    ]


def slurm_topology_yaml(cluster: Cluster | Layout, *, name: str = "nvlink") -> str:
    """The ``topology.yaml`` text, with the clique of each block in a comment."""
    import yaml

    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    doc = slurm_blocks(lay, name=name)
    text: str = yaml.safe_dump(doc, sort_keys=False, width=1000)
    names = _block_names(list(lay.cliques))
    for clique, block in sorted(names.items(), key=lambda kv: kv[1]):
        text = text.replace(f"- block: {block}\n", f"- block: {block}  # clique {clique}\n", 1)
    lonely = [n.name for n in lay.nodes if n.clique is None]
    head = "# Slurm topology/block: one block per NVLink domain (clique), written by nvtopo\n"
    if lonely:
        head += f"# in no NVLink domain, so in no block: {hostlist(lonely)}\n"
    return head + text
