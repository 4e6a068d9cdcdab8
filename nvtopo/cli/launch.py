"""``nvtopo launch``: rank order, parallel groups and launcher files for a placed job.

``plan`` prints the whole plan in one of the launcher formats; ``env`` and ``hostfile`` are
short forms for the environment and the host files; ``exec`` runs inside a pod of a planned
job. The job comes from ``--placement FILE`` (the JSON of ``nvtopo place`` or
``nvtopo compute-domain plan``) on the cluster of ``--source``, or is placed on the spot
with ``--gpus/--nodes/--domain``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from nvtopo.cli.output import console, emit, format_option
from nvtopo.cli.sources import load_source, read_text, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.model import Cluster, ClusterNode

__all__ = ["launch"]

PLAN_FORMATS = [
    "table",
    "json",
    "yaml",
    "rankmap",
    "torchrun",
    "env",
    "deepspeed",
    "openmpi-hostfile",
    "openmpi-rankfile",
    "slurm",
]


def _as_cluster(obj: Any) -> Cluster:
    if isinstance(obj, Cluster):
        return obj
    name = obj.name or "node"
    return Cluster((ClusterNode(name, obj, obj.clique),), name=name)


def _job_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        source_option,
        click.option(
            "--placement",
            "placement_path",
            default=None,
            help="the job's placement: JSON of `nvtopo place` or `nvtopo compute-domain plan` "
            "('-': stdin)",
        ),
        click.option(
            "--gpus", "-k", type=click.IntRange(min=1), default=None, help="place GPUs in total"
        ),
        click.option(
            "--nodes", type=click.IntRange(min=1), default=None, help="... over this many nodes"
        ),
        click.option(
            "--domain",
            type=click.Choice(["required", "preferred", "none"]),
            default="preferred",
            show_default=True,
            help="clique rule when placing here",
        ),
        *(
            click.option(
                f"--{name}",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help=f"{what}-parallel size",
            )
            for name, what in (
                ("tp", "tensor"),
                ("cp", "context"),
                ("ep", "expert"),
                ("pp", "pipeline"),
            )
        ),
        click.option(
            "--master-addr", default=None, help="rendezvous host (default: the node of rank 0)"
        ),
        click.option(
            "--master-port", type=click.IntRange(1, 65535), default=29500, show_default=True
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="exit 1 when a tp, cp or ep group crosses nodes outside one clique",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


class _GroupsCross(click.ClickException):
    """Exit 1: a group crosses NVLink domains and ``--strict`` was given."""

    exit_code = 1


def _make_plan(
    source: str,
    placement_path: str | None,
    gpus: int | None,
    nodes: int | None,
    domain: str,
    tp: int,
    cp: int,
    ep: int,
    pp: int,
    master_addr: str | None,
    master_port: int,
    strict: bool,
) -> Any:
    from nvtopo.launch import placement_from_json, plan_launch
    from nvtopo.place import place

    cluster = _as_cluster(load_source(source))
    if placement_path is not None:
        if gpus is not None or nodes is not None:
            raise NvtopoError("give either --placement or --gpus/--nodes, not both")
        where = "<stdin>" if placement_path == "-" else placement_path
        text = read_text("--placement", placement_path)
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise NvtopoError(f"{where}: not JSON ({exc})") from None
        placement = placement_from_json(doc, source=where)
    elif gpus is not None:
        placement = place(cluster, gpus=gpus, nodes=nodes, domain=domain)  # type: ignore[arg-type]
    else:
        raise NvtopoError(
            "say which job: --placement FILE, or --gpus (with --nodes) to place it here"
        )
    plan = plan_launch(
        cluster,
        placement,
        tp=tp,
        cp=cp,
        ep=ep,
        pp=pp,
        master_addr=master_addr,
        master_port=master_port,
    )
    if plan.crossings and strict:
        for line in plan.crossings:
            click.echo(f"nvtopo: error: {line}", err=True)
        count = len(plan.crossings)
        raise _GroupsCross(
            f"{count} group{'s' if count != 1 else ''} cross NVLink domains (--strict)"
        )
    for line in plan.crossings:
        click.echo(f"nvtopo: warning: {line}", err=True)
    return plan


def _render(plan: Any, fmt: str) -> str:
    from nvtopo.launch import outputs

    if fmt == "rankmap":
        return json.dumps(outputs.rank_map(plan), indent=2) + "\n"
    if fmt == "torchrun":
        return "".join(
            f"{n.name}: torchrun {' '.join(outputs.torchrun_args(plan, n))}\n" for n in plan.nodes
        )
    if fmt == "env":
        return "\n".join(
            f"# {n.name} (node rank {n.node_rank})\n" + outputs.env_lines(outputs.node_env(plan, n))
            for n in plan.nodes
        )
    if fmt == "deepspeed":
        return outputs.deepspeed_hostfile(plan)
    if fmt == "openmpi-hostfile":
        return outputs.openmpi_hostfile(plan)
    if fmt == "openmpi-rankfile":
        return outputs.openmpi_rankfile(plan)
    if fmt == "slurm":
        return outputs.slurm_nodes(plan)
    raise AssertionError(fmt)


@click.group()
def launch() -> None:
    """Rank order, parallel groups, environment and host files that follow the NVLink domains."""


@launch.command("plan")
@_job_options
@format_option(PLAN_FORMATS, default="table")
def plan_cmd(fmt: str, **kwargs: Any) -> None:
    """Print the job's rank map, torchrun options, environment or host files."""
    from nvtopo.launch.outputs import plan_to_json

    plan = _make_plan(**kwargs)
    if fmt == "table":
        console().print(plan.explain(), markup=False)
    elif fmt in ("json", "yaml"):
        emit(plan_to_json(plan), fmt)
    else:
        click.echo(_render(plan, fmt), nl=False)


@launch.command("env")
@_job_options
@click.option("--node", "node_key", default=None, help="only this node (name or node rank)")
@format_option(["shell", "json"], default="shell")
def env_cmd(fmt: str, node_key: str | None, **kwargs: Any) -> None:
    """The environment of each node (export lines), or of one node."""
    from nvtopo.launch.outputs import env_lines, node_env

    plan = _make_plan(**kwargs)
    chosen = plan.nodes
    if node_key is not None:
        chosen = (plan.node(int(node_key) if node_key.isdigit() else node_key),)
    if fmt == "json":
        emit({n.name: node_env(plan, n) for n in chosen}, "json")
        return
    if len(chosen) == 1:
        click.echo(env_lines(node_env(plan, chosen[0])), nl=False)
        return
    click.echo(_render(plan, "env"), nl=False)


@launch.command("hostfile")
@_job_options
@format_option(
    ["deepspeed", "openmpi-hostfile", "openmpi-rankfile", "slurm"],
    default="openmpi-hostfile",
)
def hostfile_cmd(fmt: str, **kwargs: Any) -> None:
    """A host file: DeepSpeed, Open MPI (hostfile or rankfile) or Slurm."""
    click.echo(_render(_make_plan(**kwargs), fmt), nl=False)


@launch.command("exec", context_settings={"ignore_unknown_options": True})
@click.option(
    "--plan",
    "plan_path",
    default="/etc/nvtopo/launch-plan.json",
    show_default=True,
    help="the launch plan (`nvtopo launch plan --format json`)",
)
@click.option(
    "--node-rank", type=click.IntRange(min=0), default=None, help="default: $JOB_COMPLETION_INDEX"
)
@click.option("--node", default=None, help="this node's name, instead of the index")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def exec_cmd(
    plan_path: str, node_rank: int | None, node: str | None, command: tuple[str, ...]
) -> None:
    """Set this node's environment and run COMMAND in place of this process."""
    from nvtopo.launch.exec import exec_command, load_plan, node_entry

    entry = node_entry(load_plan(plan_path), index=node_rank, node=node)
    sys.stdout.flush()
    exec_command(entry, command)
