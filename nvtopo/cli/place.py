"""``nvtopo place``: the optimal GPU set on a node, or a multi-node placement on a cluster."""

from __future__ import annotations

import click

from nvtopo.cli.output import console, emit, format_option
from nvtopo.cli.sources import load_source, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.model.cluster import Cluster
from nvtopo.place import Placement

__all__ = ["place"]


def _int_list(option: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    items = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in items)
    except ValueError:
        raise NvtopoError(f"{option} {text!r}: expected GPU indices like 0,2,5") from None


@click.command()
@source_option
@click.option(
    "--gpus",
    "-k",
    type=click.IntRange(min=1),
    required=True,
    help="GPUs wanted (in total, for a cluster)",
)
@click.option("--available", default=None, help="single node: free GPUs, e.g. 0,2,5 (default all)")
@click.option("--required", default=None, help="single node: GPUs the set must contain")
@click.option(
    "--nodes",
    type=click.IntRange(min=1),
    default=None,
    help="cluster: spread over exactly this many nodes (gpus/nodes each)",
)
@click.option(
    "--domain",
    type=click.Choice(["required", "preferred", "none"]),
    default="preferred",
    show_default=True,
    help="cluster: keep the job inside one NVLink domain (clique)",
)
@format_option(["table", "json", "yaml"], default="table")
def place(
    source: str,
    gpus: int,
    available: str | None,
    required: str | None,
    nodes: int | None,
    domain: str,
    fmt: str,
) -> None:
    """Pick the best GPUs: Contract 1 on a node, Contract 2 on a cluster."""
    from nvtopo.place import PlacementRequest
    from nvtopo.place import place as place_job
    from nvtopo.select import select_gpus

    obj = load_source(source)
    if isinstance(obj, Cluster) and len(obj.nodes) > 1:
        if available is not None or required is not None:
            raise NvtopoError(
                "--available/--required apply to a single node; a cluster file "
                "gives each node's freeGpus"
            )
        placement = place_job(obj, PlacementRequest(gpus=gpus, nodes=nodes, domain=domain))  # type: ignore[arg-type]
        if fmt != "table":
            emit(placement.to_json(), fmt)
        else:
            _placement_table(obj, placement)
        return
    if nodes not in (None, 1):
        raise NvtopoError(f"--nodes {nodes}: the source is a single node")
    topology = obj.nodes[0].topology if isinstance(obj, Cluster) else obj
    if isinstance(obj, Cluster) and available is None:
        available = ",".join(map(str, obj.nodes[0].free))
    selection = select_gpus(
        topology,
        gpus,
        available=_int_list("--available", available),
        required=_int_list("--required", required) or (),
    )
    if fmt != "table":
        emit(selection.to_json(), fmt)
    else:
        console().print(selection.explain())


def _placement_table(cluster: Cluster, placement: Placement) -> None:
    """A summary line, then one row per node: its clique and the GPUs it gives."""
    from rich.table import Table

    count = "1 node" if len(placement.nodes) == 1 else f"{len(placement.nodes)} nodes"
    cliques = ", ".join(placement.cliques) or "no clique"
    cd = placement.compute_domain_summary()
    con = console()
    con.print(
        f"{placement.gpu_count} GPUs on {count}, {len(placement.cliques)} clique(s): "
        f"{cliques}; {cd}"
    )
    table = Table()
    for col in ("node", "clique", "GPUs", "free after"):
        table.add_column(col)
    for n in placement.nodes:
        node = cluster.node(n.name)
        left = len(node.free) - len(n.gpus)
        table.add_row(n.name, node.domain or "-", ",".join(map(str, n.gpus)), str(left))
    con.print(table)
    for n in placement.nodes:
        if n.clique_problem is not None:
            con.print(f"node {n.name} is in no clique: {n.clique_problem}", markup=False)
