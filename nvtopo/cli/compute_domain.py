"""``nvtopo compute-domain``: plan, apply and delete ComputeDomains for multi-node NVLink jobs.

``plan`` prints the manifests (YAML documents by default, ready for ``kubectl apply -f -``)
and a summary on standard error; ``apply`` creates them and waits for the driver to report
every node Ready; ``delete`` removes what nvtopo created. The kubeconfig comes from
``--kubeconfig``, else ``$KUBECONFIG`` or ``~/.kube/config``, else the in-cluster service
account.
"""

from __future__ import annotations

import json
from typing import Any

import click

from nvtopo.cli.kube import api_client
from nvtopo.cli.output import console, emit, format_option
from nvtopo.cli.sources import load_source, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.model.cluster import Cluster, ClusterNode

__all__ = ["api_client", "as_cluster", "compute_domain"]


def as_cluster(obj: Any) -> Cluster:
    """A source's result as a cluster (a single node becomes a cluster of one)."""
    if isinstance(obj, Cluster):
        return obj
    name = obj.name or "node"
    return Cluster((ClusterNode(name, obj, obj.clique),), name=name)


def _plan_options(fn: Any) -> Any:
    options = [
        source_option,
        click.option("--name", required=True, help="ComputeDomain and Job name (a DNS label)"),
        click.option("--namespace", "-n", default="default", show_default=True),
        click.option(
            "--gpus", "-k", type=click.IntRange(min=1), required=True, help="GPUs in total"
        ),
        click.option(
            "--nodes",
            type=click.IntRange(min=1),
            default=None,
            help="spread over exactly this many nodes (gpus/nodes each)",
        ),
        click.option(
            "--domain",
            type=click.Choice(["required", "preferred", "none"]),
            default="required",
            show_default=True,
            help="keep the job inside one NVLink domain (clique)",
        ),
        click.option(
            "--gpu-request",
            type=click.Choice(["dra", "device-plugin"]),
            default="dra",
            show_default=True,
            help="claim GPUs through DRA or as nvidia.com/gpu limits",
        ),
        click.option("--image", default=None, help="workload image (default: a placeholder)"),
        click.option(
            "--placement",
            "pod_placement",
            type=click.Choice(["pinned", "allocator"]),
            default="pinned",
            show_default=True,
            help="pin the pods to the planned nodes, or hand them to `nvtopo allocator` as a gang",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _make_plan(
    source: str,
    name: str,
    namespace: str,
    gpus: int,
    nodes: int | None,
    domain: str,
    gpu_request: str,
    image: str | None,
    pod_placement: str = "pinned",
) -> Any:
    from nvtopo.compute_domain import plan
    from nvtopo.compute_domain.manifests import DEFAULT_IMAGE

    cluster = as_cluster(load_source(source))
    return plan(
        cluster,
        name=name,
        namespace=namespace,
        gpus=gpus,
        nodes=nodes,
        domain=domain,  # type: ignore[arg-type]
        gpu_request=gpu_request,  # type: ignore[arg-type]
        image=image or DEFAULT_IMAGE,
        pod_placement=pod_placement,  # type: ignore[arg-type]
    )


@click.group("compute-domain")
def compute_domain() -> None:
    """ComputeDomains: multi-node NVLink jobs placed inside one clique."""


@compute_domain.command("plan")
@_plan_options
@click.option(
    "--command",
    "command",
    default=None,
    help="the workload command (shell words); runs under `nvtopo launch exec` with the "
    "launch plan mounted from a ConfigMap",
)
@format_option(
    ["yaml", "json", "table"],
    default="yaml",
    help="yaml: the manifests as YAML documents; json: the plan, whose manifests are the "
    "same objects; table: the summary",
)
def plan_cmd(
    source: str,
    name: str,
    namespace: str,
    gpus: int,
    nodes: int | None,
    domain: str,
    gpu_request: str,
    image: str | None,
    command: str | None,
    pod_placement: str,
    fmt: str,
) -> None:
    """Place the job and print the objects that run it (nothing is created)."""
    import yaml

    p = _make_plan(source, name, namespace, gpus, nodes, domain, gpu_request, image, pod_placement)
    if fmt == "table":
        console().print(p.explain(), markup=False)
        return
    click.echo(p.explain(), err=True)
    docs = p.manifests() if command is None else _launch_manifests(p, source, command)
    if fmt == "json":
        doc = p.to_json()
        doc["manifests"] = docs
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(yaml.safe_dump_all(docs, sort_keys=False, width=100), nl=False)


def _launch_manifests(p: Any, source: str, command: str) -> list[dict[str, Any]]:
    """The plan's objects with the launch plan ConfigMap, a headless Service for the pods'
    names, and the Job's container running ``command`` under ``nvtopo launch exec``."""
    import shlex

    from nvtopo.compute_domain.manifests import launch_config_map, launch_service, with_launch
    from nvtopo.launch import plan_launch, plan_to_json

    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise NvtopoError(f"--command {command!r}: {exc}") from None
    if not words:
        raise NvtopoError("--command is empty")
    launch = plan_launch(
        as_cluster(load_source(source)), p.placement, master_addr=f"{p.name}-0.{p.name}"
    )
    doc = plan_to_json(launch)
    doc["nodeRankFrom"] = "index"
    docs = p.manifests()
    job = with_launch(docs.pop(), p.name, words)
    return [
        *docs,
        launch_config_map(p.name, p.namespace, json.dumps(doc, indent=2)),
        launch_service(p.name, p.namespace),
        job,
    ]


def _kube_options(fn: Any) -> Any:
    fn = click.option("--context", default=None, help="kubeconfig context")(fn)
    return click.option(
        "--kubeconfig",
        default=None,
        type=click.Path(dir_okay=False),
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )(fn)


@compute_domain.command("apply")
@_plan_options
@_kube_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="seconds to wait for every node to be Ready",
)
@click.option("--no-wait", is_flag=True, help="return once the objects are created")
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client", "server"]),
    default="none",
    show_default=True,
    is_flag=False,
    flag_value="client",
    help="as kubectl: client prints the objects without contacting the apiserver; server "
    "sends them with dryRun=All (validated and admitted, nothing stored)",
)
@format_option(["table", "json", "yaml"], default="table")
def apply_cmd(
    source: str,
    name: str,
    namespace: str,
    gpus: int,
    nodes: int | None,
    domain: str,
    gpu_request: str,
    image: str | None,
    pod_placement: str,
    kubeconfig: str | None,
    context: str | None,
    timeout: float,
    no_wait: bool,
    dry_run: str,
    fmt: str,
) -> None:
    """Create the ComputeDomain, claim template and Job, and wait until they are Ready."""
    from nvtopo.compute_domain import apply
    from nvtopo.compute_domain.apply import require_served
    from nvtopo.compute_domain.errors import ComputeDomainInterrupted

    p = _make_plan(source, name, namespace, gpus, nodes, domain, gpu_request, image, pod_placement)
    if dry_run == "client":
        click.echo(p.explain(), err=True)
        _show_dry_run(p.manifests(), "client", fmt)
        return
    client = api_client(kubeconfig, context)
    try:
        # Reach the apiserver before showing the plan: a wrong kubeconfig, a refused token or
        # a missing CRD is then the only line on the terminal.
        require_served(client, p.namespace)
        click.echo(p.explain(), err=True)
        done = apply(
            p,
            client,
            timeout=timeout,
            progress=fmt == "table",
            wait=not no_wait,
            dry_run=dry_run == "server",
        )
    except ComputeDomainInterrupted as exc:
        click.echo(f"nvtopo: {exc}", err=True)
        raise click.exceptions.Exit(130) from None
    finally:
        client.close()
    if dry_run == "server":
        _show_dry_run(list(done.objects), "server", fmt)
        return
    if fmt in ("json", "yaml"):
        emit(
            {
                "name": done.name,
                "namespace": done.namespace,
                "status": done.status,
                "created": list(done.created),
                "elapsedSeconds": round(done.elapsed_s, 3),
                "nodes": [
                    {
                        "name": n.name,
                        "ipAddress": n.ip_address,
                        "cliqueID": n.clique_id,
                        "index": n.index,
                        "status": n.status,
                    }
                    for n in done.nodes
                ],
            },
            fmt,
        )
        return
    con = console()
    con.print(f"created {', '.join(done.created)}", markup=False)
    if no_wait:
        return
    from rich.table import Table

    table = Table(
        title=f"ComputeDomain {done.namespace}/{done.name}: {done.status}", title_justify="left"
    )
    for col in ("node", "IP address", "clique", "index", "status"):
        table.add_column(col)
    for n in done.nodes:
        table.add_row(
            n.name,
            n.ip_address or "",
            n.clique_id or "",
            "" if n.index is None else str(n.index),
            n.status,
        )
    con.print(table)


def _show_dry_run(objects: list[dict[str, Any]], mode: str, fmt: str) -> None:
    """kubectl's dry-run output: one line per object, or the objects themselves."""
    if fmt == "json":
        emit({"apiVersion": "v1", "kind": "List", "items": objects}, "json")
    elif fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump_all(objects, sort_keys=False, width=100), nl=False)
    else:
        for obj in objects:
            meta = obj.get("metadata") or {}
            where = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
            click.echo(f"{obj.get('kind')} {where} created ({mode} dry run)")


@compute_domain.command("delete")
@click.argument("name")
@click.option("--namespace", "-n", default="default", show_default=True)
@_kube_options
@click.option("--ignore-not-found", is_flag=True, help="exit 0 when there is nothing to delete")
@format_option(["table", "json"], default="table")
def delete_cmd(
    name: str,
    namespace: str,
    kubeconfig: str | None,
    context: str | None,
    ignore_not_found: bool,
    fmt: str,
) -> None:
    """Delete the objects nvtopo created for ComputeDomain NAME."""
    from nvtopo.compute_domain import delete
    from nvtopo.compute_domain.plan import _check_label

    # A name no object can have is refused here, before any kubeconfig or request.
    _check_label(name, "name", 63)
    _check_label(namespace, "namespace", 63)
    client = api_client(kubeconfig, context)
    try:
        deleted = delete(name, namespace, client)
    finally:
        client.close()
    if not deleted and not ignore_not_found:
        raise NvtopoError(f"no objects of ComputeDomain {namespace}/{name} managed by nvtopo")
    if fmt == "json":
        emit({"deleted": list(deleted)}, "json")
    else:
        for item in deleted:
            click.echo(f"deleted {item}")
