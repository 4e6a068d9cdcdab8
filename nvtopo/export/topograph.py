"""Topograph's topology model: capacity blocks (NVLink domains) and switches, as JSON.

Format from NVIDIA Topograph's model loader (``pkg/models/model.go``): ``switches`` (each
``{name, metadata, switches, capacity_blocks}``) and ``capacity_blocks`` (each ``{name,
type, nvlink, nodes}``), where ``nvlink`` names the block's accelerator (NVLink) domain;
Topograph turns a model into its graph and from there into node labels
(``accelerator.topograph.run/domain``) or Slurm blocks. JSON is YAML, so Topograph's YAML
reader takes this text as it is. The model has no network switch tiers today, so
``switches`` is empty; one capacity block per clique, named as the Volcano HyperNode of the
clique.
"""

from __future__ import annotations

from typing import Any

from nvtopo.export.levels import Layout, layout
from nvtopo.export.volcano import clique_object_name
from nvtopo.model import Cluster

__all__ = ["topograph_model"]


def topograph_model(cluster: Cluster | Layout) -> dict[str, Any]:
    """The Topograph model of ``cluster``.

    Examples
    --------
    >>> import nvtopo
    >>> m = topograph_model(nvtopo.cluster("gb200-nvl72x2"))
    >>> len(m["capacity_blocks"]), len(m["capacity_blocks"][0]["nodes"])
    (2, 18)
    """
    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    product = {n.name: n.product for n in lay.nodes}
    blocks = []
    for clique, nodes in lay.cliques.items():
        kinds = {product[n] for n in nodes if product[n]}
        blocks.append(
            {
                "name": clique_object_name(clique),
                "type": kinds.pop() if len(kinds) == 1 else "",
                "nvlink": clique,
                "nodes": list(nodes),
            }
        )
    return {"switches": [], "capacity_blocks": blocks}
