"""``nvtopo export``: the cluster's topology in the form a scheduler reads."""

from __future__ import annotations

import json

import click

from nvtopo.cli.compute_domain import as_cluster
from nvtopo.cli.output import render
from nvtopo.cli.sources import load_source, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.export import TARGETS

__all__ = ["export"]


def _objects_text(objects: list[object], fmt: str) -> str:
    if fmt == "json":  # one List, as kubectl prints and reads it
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    return "---\n".join(render(o, "yaml") for o in objects)


@click.command()
@source_option
@click.option(
    "--to",
    "target",
    type=click.Choice(TARGETS),
    required=True,
    help="labels: partial Nodes for server-side apply; kai, kueue: Topology; volcano: "
    "HyperNodes; slurm: topology.yaml (topology/block); topograph: Topograph's model",
)
@click.option(
    "--name",
    default=None,
    help="name of the Topology object (default nvtopo) or Slurm topology (default nvlink)",
)
@click.option("--node", default=None, help="labels: only this node's")
@click.option(
    "--format",
    "-o",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default=None,
    help="output format (default: yaml; json for topograph)",
)
def export(source: str, target: str, name: str | None, node: str | None, fmt: str | None) -> None:
    """Print the topology for another scheduler: labels, KAI, Kueue, Volcano, Slurm, Topograph.

    Levels come from the fabric: the rack (the GPUs' chassis serial) above the NVLink domain
    (clique) where racks hold cliques, then the host. Same cluster, same output.
    """
    from nvtopo.export import export as export_cluster
    from nvtopo.export import layout, slurm_topology_yaml

    cluster = as_cluster(load_source(source))
    if node is not None and target != "labels":
        raise NvtopoError(f"--node {node}: only --to labels is per node")
    if target == "slurm" and fmt != "json":
        click.echo(slurm_topology_yaml(layout(cluster), name=name or "nvlink"), nl=False)
        return
    doc = export_cluster(cluster, target, name=name)
    if node is not None:
        cluster.node(node)  # one line when the cluster has no such node
        doc = [o for o in doc if o["metadata"]["name"] == node]
    if target in ("slurm", "topograph"):
        click.echo(render(doc, fmt or ("json" if target == "topograph" else "yaml")), nl=False)
        return
    click.echo(_objects_text(doc, fmt or "yaml"), nl=False)
