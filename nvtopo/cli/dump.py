"""``nvtopo dump``: show a topology as a table, a ``topo -m`` matrix, JSON, YAML, DOT or SVG."""

from __future__ import annotations

import io
import shutil
import subprocess

import click

from nvtopo.cli.output import (
    UNCUT_WIDTH,
    console,
    format_option,
    output_file_option,
    render,
)
from nvtopo.cli.sources import load_source, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.formats.jsonio import cluster_to_json, node_to_json
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

__all__ = ["dump"]

FORMATS = ["table", "matrix", "json", "yaml", "dot", "svg"]


def _pick_node(obj: NodeTopology | Cluster, node: str | None, fmt: str) -> NodeTopology | Cluster:
    if isinstance(obj, NodeTopology):
        if node is not None and node != obj.name:
            raise NvtopoError(
                f"--node {node}: the source is a single node ({obj.name or 'unnamed'})"
            )
        return obj
    if node is not None:
        return obj.node(node).topology
    if fmt in ("matrix", "dot", "svg"):
        if len(obj.nodes) == 1:
            return obj.nodes[0].topology
        raise NvtopoError(
            f"--format {fmt} shows one node and the source is a cluster of {len(obj.nodes)}; "
            f"pick one with --node (e.g. --node {obj.nodes[0].name})"
        )
    return obj


@click.command()
@source_option
@format_option(FORMATS, default="table")
@click.option("--node", default=None, help="with a cluster source: show this node")
@output_file_option("write to this file instead of stdout")
def dump(source: str, fmt: str, node: str | None, output: str | None) -> None:
    """Show the GPU topology of a node or a cluster."""
    obj = _pick_node(load_source(source), node, fmt)
    if fmt == "table":
        _table(obj, output)
        return
    if fmt in ("json", "yaml"):
        doc = cluster_to_json(obj) if isinstance(obj, Cluster) else node_to_json(obj)
        text = render(doc, fmt)
    else:
        assert isinstance(obj, NodeTopology)
        if fmt == "matrix":
            from nvtopo.render.matrix import render_matrix

            text = render_matrix(obj, color=output is None and console().is_terminal)
        elif fmt == "dot":
            from nvtopo.render.graph import to_dot

            text = to_dot(obj)
        else:
            text = _svg(obj)
    if output:
        _write(output, text)
    else:
        click.echo(text, nl=not text.endswith("\n"))


def _table(obj: NodeTopology | Cluster, output: str | None) -> None:
    from rich.console import Console

    from nvtopo.render.table import render_cluster_table, render_node_table

    def show(con: Console) -> None:
        if isinstance(obj, Cluster):
            render_cluster_table(obj, con)
        else:
            render_node_table(obj, con)

    if output is None:
        show(console())
        return
    con = Console(
        record=True, file=io.StringIO(), width=UNCUT_WIDTH, soft_wrap=True, highlight=False
    )
    show(con)
    _write(output, con.export_text())


def _write(output: str, text: str) -> None:
    """Write ``text`` to the ``--output-file`` file, or one line saying why it could not be."""
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise NvtopoError(f"--output-file {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)


def _svg(topology: NodeTopology) -> str:
    """Graphviz's layout where ``dot`` is installed, else nvtopo's own fixed layout."""
    from nvtopo.render.graph import to_dot, to_svg

    dot = shutil.which("dot")
    if dot is not None:
        done = subprocess.run(
            [dot, "-Tsvg"], input=to_dot(topology), capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return done.stdout
        click.echo(
            f"nvtopo: graphviz failed ({done.stderr.strip()}); using the built-in layout", err=True
        )
    else:
        click.echo("nvtopo: graphviz `dot` not installed; using the built-in SVG layout", err=True)
    return to_svg(topology)
