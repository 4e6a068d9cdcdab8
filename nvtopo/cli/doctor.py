"""``nvtopo doctor``: the pre-flight of a node before a multi-node NVLink job.

Exit status: 0 when the node can run a multi-node NVLink job, 1 when it cannot (every
finding is printed, one line each, with what to do) or when the input is bad.
"""

from __future__ import annotations

from dataclasses import replace

import click

from nvtopo.cli.output import emit, format_option
from nvtopo.cli.sources import SOURCE_HELP, load_source, read_text
from nvtopo.exceptions import NvtopoError
from nvtopo.model import Cluster, NodeTopology

__all__ = ["doctor"]


class _NotReady(click.ClickException):
    """Exit 1 with the verdict on standard error (the findings are already printed)."""

    exit_code = 1


def _node(obj: NodeTopology | Cluster, name: str | None) -> NodeTopology:
    if isinstance(obj, NodeTopology):
        return obj
    if name is None:
        if len(obj.nodes) == 1:
            return obj.nodes[0].topology
        raise NvtopoError(
            f"the source is a cluster of {len(obj.nodes)} nodes: say which with --node"
        )
    node = obj.node(name).topology
    return node if node.name else replace(node, name=name)


@click.command()
@click.option(
    "--source", "-s", default=None, help=SOURCE_HELP + " (default nvml, or the captures alone)"
)
@click.option("--node", default=None, help="the node of a cluster source")
@click.option(
    "--capture",
    "captures",
    multiple=True,
    help="output of `nvidia-smi -q`, `nvidia-smi nvlink -s` or `nvidia-smi nvlink -R` "
    "(repeatable; '-': stdin)",
)
@click.option(
    "--channels-dir",
    default=None,
    help="IMEX channel devices (default /dev/nvidia-caps-imex-channels)",
)
@click.option("--require-channel", is_flag=True, help="a missing IMEX channel device is an error")
@format_option(["table", "json"], default="table")
def doctor(
    source: str | None,
    node: str | None,
    captures: tuple[str, ...],
    channels_dir: str | None,
    require_channel: bool,
    fmt: str,
) -> None:
    """Can this node run a multi-node NVLink job? One line per finding, with what to do."""
    from nvtopo.imex import CHANNELS_DIR
    from nvtopo.launch.doctor import doctor as run_doctor
    from nvtopo.launch.doctor import topology_from_captures

    base = None
    if source is not None or not captures:
        base = _node(load_source(source or "nvml"), node)
    topology = base
    if captures:
        texts = [
            (read_text("--capture", path), "<stdin>" if path == "-" else path) for path in captures
        ]
        topology = topology_from_captures(texts, base)
    assert topology is not None
    report = run_doctor(
        topology, channels_dir=channels_dir or CHANNELS_DIR, require_channel=require_channel
    )
    if fmt == "json":
        emit(report.to_json(), "json")
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ready:
        raise _NotReady(report.verdict().removeprefix("verdict: "))
