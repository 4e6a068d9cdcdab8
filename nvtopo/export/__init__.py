"""The cluster's topology in the forms other schedulers read (DESIGN, Contract 6).

``nvtopo export --to labels|kai|kueue|volcano|slurm|topograph`` and :func:`export`: node
labels, KAI's and Kueue's ``Topology``, Volcano ``HyperNode`` objects, Slurm's
``topology.yaml`` blocks and Topograph's model, all from one :func:`~nvtopo.export.levels.layout`
of the cluster (clique after the model's health rule; rack from the GPUs' chassis serial;
level order from how they nest). Same cluster, same output: names and order are derived
from clique ids, racks and node names only.

Examples
--------
>>> import nvtopo
>>> from nvtopo.export import export
>>> [o["kind"] for o in export(nvtopo.cluster("gb200-nvl72x2"), "kueue")]
['Topology']
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from nvtopo.exceptions import NvtopoError
from nvtopo.export.kai import kai_topology
from nvtopo.export.kueue import kueue_topology
from nvtopo.export.labels import label_objects, node_labels
from nvtopo.export.levels import Layout, layout
from nvtopo.export.slurm import slurm_blocks, slurm_topology_yaml
from nvtopo.export.topograph import topograph_model
from nvtopo.export.volcano import volcano_hypernodes
from nvtopo.model import Cluster

__all__ = [
    "TARGETS",
    "Layout",
    "Target",
    "export",
    "kai_topology",
    "kueue_topology",
    "label_objects",
    "layout",
    "node_labels",
    "slurm_blocks",
    "slurm_topology_yaml",
    "topograph_model",
    "volcano_hypernodes",
]

Target = Literal["labels", "kai", "kueue", "volcano", "slurm", "topograph"]
TARGETS: tuple[str, ...] = get_args(Target)


def export(cluster: Cluster, target: str, *, name: str | None = None) -> Any:
    """The export of ``cluster`` for ``target``.

    Kubernetes targets give a list of objects; ``slurm`` the ``topology.yaml`` data (a
    list of topologies); ``topograph`` the model (a dict). ``name`` names the ``Topology``
    object (default ``nvtopo``) or the Slurm topology (default ``nvlink``).
    """
    lay = layout(cluster)
    if target == "labels":
        return label_objects(lay)
    if target == "kueue":
        return [kueue_topology(lay, name=name or "nvtopo")]
    if target == "kai":
        return [kai_topology(lay, name=name or "nvtopo")]
    if target == "volcano":
        return volcano_hypernodes(lay)
    if target == "slurm":
        return slurm_blocks(lay, name=name or "nvlink")
    if target == "topograph":
        return topograph_model(lay)
    raise NvtopoError(f"export target {target!r}: use one of {', '.join(TARGETS)}")
