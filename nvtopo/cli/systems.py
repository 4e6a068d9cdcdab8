"""``nvtopo systems``: the embedded catalog."""

from __future__ import annotations

import click

from nvtopo.cli.output import console, emit, format_option

__all__ = ["systems"]


@click.command()
@format_option(["table", "json", "yaml"], default="table")
def systems(fmt: str) -> None:
    """List the systems of the embedded catalog (use them as --source system:NAME)."""
    from nvtopo.catalog import systems as catalog_systems

    infos = catalog_systems()
    if fmt in ("json", "yaml"):
        # camelCase keys, like the nvtopo.dev/v1 documents
        rows = [
            {
                "name": i.name,
                "kind": i.kind,
                "gpu": i.gpu,
                "gpusPerNode": i.gpus_per_node,
                "nodes": i.nodes,
                "description": i.description,
            }
            for i in infos
        ]
        emit(rows, fmt)
        return
    from rich.table import Table

    table = Table(title="nvtopo system catalog", title_justify="left")
    for col in ("name", "kind", "GPU", "GPUs/node", "nodes", "description"):
        table.add_column(col)
    for i in infos:
        nodes = "N racks" if i.nodes is None else str(i.nodes)
        table.add_row(i.name, i.kind, i.gpu, str(i.gpus_per_node), nodes, i.description)
    console().print(table)
