"""``nvtopo imex``: IMEX without Kubernetes.

``nvtopo imex config`` places a job inside one clique and writes the IMEX service's
``nodes_config.cfg`` for the chosen nodes. ``nvtopo imex check`` says whether this node can
join a multi-node NVLink job.

Exit status of ``imex check`` (:data:`CHECK_EXIT_CODES`): 0 when the node can join; 1 when
it cannot (the report is printed with its reasons, and a one-line verdict goes to standard
error); 2 for a usage mistake (an unknown option); 3 when the input cannot be read (a
missing or malformed capture, NVML that cannot start, an unknown node), with one line
starting ``nvtopo: error:`` and no report. A health probe can then tell "not ready" from
"could not look".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from nvtopo.cli.compute_domain import as_cluster
from nvtopo.cli.output import console, emit, format_option, output_file_option
from nvtopo.cli.sources import load_source, read_text, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

if TYPE_CHECKING:
    from nvtopo.imex import ImexCheck

__all__ = ["CHECK_EXIT_CODES", "imex"]

#: ``imex check``'s exit statuses by meaning.
CHECK_EXIT_CODES = {"can join": 0, "cannot join": 1, "usage": 2, "unreadable input": 3}


@click.group("imex")
def imex() -> None:
    """IMEX domains without Kubernetes: nodes_config.cfg and node readiness."""


class _NotReady(click.ClickException):
    """Exit 1 with the verdict on standard error (the report is already printed)."""

    exit_code = 1


@imex.command("config")
@source_option
@click.option("--gpus", "-k", type=click.IntRange(min=1), required=True, help="GPUs in total")
@click.option(
    "--nodes",
    type=click.IntRange(min=1),
    default=None,
    help="spread over exactly this many nodes (gpus/nodes each)",
)
@click.option(
    "--addresses",
    type=click.Path(dir_okay=False),
    default=None,
    help="file of NODE ADDRESS (or NODE=ADDRESS) lines; '#' starts a comment",
)
@click.option("--address-map", default=None, help="NODE=ADDRESS pairs, comma separated")
@output_file_option("write nodes_config.cfg here instead of standard output")
@format_option(
    ["text", "json"], default="text", help="text: the file itself; json: nodes, addresses, clique"
)
def config_cmd(
    source: str,
    gpus: int,
    nodes: int | None,
    addresses: str | None,
    address_map: str | None,
    output: str | None,
    fmt: str,
) -> None:
    """Place a job in one clique and write the IMEX nodes_config.cfg for its nodes.

    Without --addresses or --address-map the node names are written as host names, so
    they must resolve on every node. Copy the same file to every node of the domain.
    """
    from nvtopo.imex import nodes_config, parse_address_file, parse_address_map, place_domain

    if addresses is not None and address_map is not None:
        raise NvtopoError("give --addresses or --address-map, not both")
    mapping = None
    if addresses is not None:
        mapping = parse_address_file(
            read_text(f"--addresses {addresses}", addresses), source=addresses
        )
    elif address_map is not None:
        mapping = parse_address_map(address_map)
    placed = place_domain(
        as_cluster(load_source(source)), gpus=gpus, nodes=nodes, domain="required"
    )
    names = placed.node_names
    text = nodes_config(names, mapping)
    clique = placed.placement.cliques[0] if placed.placement.cliques else None
    if output is not None:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise NvtopoError(f"{output}: {exc.strerror or exc}") from None
        click.echo(
            f"wrote {output}: {len(names)} nodes" + (f" of clique {clique}" if clique else ""),
            err=True,
        )
    if fmt == "json":
        lines = text.splitlines()
        emit(
            {
                "clique": clique,
                "nodes": [
                    {"name": n.name, "address": a, "gpus": list(n.gpus)}
                    for n, a in zip(placed.placement.nodes, lines, strict=True)
                ],
                "excluded": [{"name": e.name, "reasons": list(e.reasons)} for e in placed.excluded],
                "config": text,
            },
            "json",
        )
    elif output is None:
        click.echo(text, nl=False)


def _pick_node(obj: NodeTopology | Cluster, node: str | None) -> NodeTopology:
    if isinstance(obj, NodeTopology):
        return obj
    if node is not None:
        return obj.node(node).topology
    if len(obj.nodes) == 1:
        return obj.nodes[0].topology
    raise NvtopoError(
        f"the source is a cluster of {len(obj.nodes)} nodes; pick one with --node "
        f"(e.g. --node {obj.nodes[0].name})"
    )


@imex.command("check")
@source_option
@click.option("--node", default=None, help="with a cluster source: check this node")
@click.option(
    "--channels-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="where IMEX channel devices live [default: /dev/nvidia-caps-imex-channels]",
)
@click.option(
    "--require-channel",
    is_flag=True,
    help="a missing IMEX channel device makes the node fail the check",
)
@format_option(["table", "json"], default="table")
def check_cmd(
    source: str, node: str | None, channels_dir: str | None, require_channel: bool, fmt: str
) -> None:
    """Can this node join a multi-node NVLink job?

    Exit 0: yes; 1: no (reasons shown); 2: usage mistake; 3: the input could not be read.
    """
    from nvtopo.imex import CHANNELS_DIR, check

    try:
        topology = _pick_node(load_source(source), node)
        report = check(
            topology, channels_dir=channels_dir or CHANNELS_DIR, require_channel=require_channel
        )
    except NvtopoError as exc:
        click.echo(f"nvtopo: error: {exc}", err=True)
        raise click.exceptions.Exit(CHECK_EXIT_CODES["unreadable input"]) from None
    if fmt == "json":
        emit(report.to_json(), "json")
    else:
        _print_report(report)
    if not report.can_join:
        raise _NotReady(report.explain())


def _print_report(report: ImexCheck) -> None:
    from rich.table import Table

    con = console()
    table = Table(title=f"IMEX readiness of {report.node or 'this node'}", title_justify="left")
    for header in ("GPU", "fabric state", "status", "health", "clique ID"):
        table.add_column(header, no_wrap=True)
    uuids: dict[str, list[str]] = {}
    for g in report.gpus:
        clique_id = "-" if g.clique_id is None else str(g.clique_id)
        table.add_row(str(g.index), g.state, g.status, g.health, clique_id)
        uuids.setdefault(g.cluster_uuid or "none", []).append(str(g.index))
    con.print(table)
    # Cluster UUIDs are long: one line per distinct value instead of a table column.
    for value, gpus in uuids.items():
        con.print(f"cluster UUID {value}: GPU {', '.join(gpus)}", markup=False)
    if report.channels:
        channels = ", ".join(
            c.path + ("" if c.device is None else f" ({c.device[0]}:{c.device[1]})")
            for c in report.channels
        )
        con.print(f"IMEX channels: {channels}", markup=False)
    else:
        con.print(f"IMEX channels: none in {report.channels_dir}", markup=False)
    for warning in report.warnings:
        con.print(f"warning: {warning}", markup=False)
    if report.can_join:
        con.print(
            f"verdict: can join a multi-node NVLink job (clique {report.clique})", markup=False
        )
    else:
        con.print("verdict: cannot join a multi-node NVLink job", markup=False)
        for reason in report.reasons:
            con.print(f"  - {reason}", markup=False)
