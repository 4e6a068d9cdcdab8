"""``nvtopo publish``: the node agent that keeps the node's ResourceSlices up to date."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from nvtopo.cli.kube import api_client as kube_api_client
from nvtopo.cli.output import console, emit, format_option
from nvtopo.cli.sources import load_source, source_option
from nvtopo.dra.taints import TaintEffect
from nvtopo.exceptions import NvtopoError
from nvtopo.model.cluster import Cluster

__all__ = ["publish"]

_MAX_CHANGE_ROWS = 50


def _owner(api_client: Any, node: str) -> dict[str, Any] | None:
    """An owner reference to the Node object, so its slices go when the node is deleted.

    Needs ``get`` on nodes; without the Node (a test cluster) or the permission, the slices
    are published without an owner.
    """
    from kubernetes.client.exceptions import ApiException

    from nvtopo.dra.publish import node_owner
    from nvtopo.kube.client import RawApi
    from nvtopo.kube.retry import KubeApiError, api_message

    api = RawApi(api_client)
    try:
        found = api.request("GET", RawApi.item("/api/v1/nodes", node), what=f"get Node {node}")
    except ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise KubeApiError(f"get Node {node}: {api_message(exc)}", status=exc.status) from None
    uid = (found.get("metadata") or {}).get("uid")
    return node_owner(node, uid) if uid else None


@contextmanager
def _sigterm_sets(stop: threading.Event) -> Iterator[None]:
    # SIGTERM (the kubelet stopping the pod) ends the agent after the publish in progress.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show(result: Any, fmt: str, reason: str | None) -> None:
    if fmt == "yaml":
        doc = result.to_json()
        if reason is not None:  # watch mode: one YAML document per publish
            click.echo("---")
            doc = {"reason": reason, **doc}
        emit(doc, "yaml")
        return
    if fmt == "json":
        doc = result.to_json()
        if reason is not None:  # watch mode: one JSON object per line
            click.echo(json.dumps({"reason": reason, **doc}, separators=(",", ":")))
        else:
            click.echo(json.dumps(doc, indent=2))
        return
    if reason is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        click.echo(f"{stamp} {reason}: {result.summary()}")
        return
    from rich.table import Table

    out = console()
    table = Table(
        title=f"ResourceSlices of {result.driver}" + (" (dry run)" if result.dry_run else "")
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("pools", result.pools),
        ("pools changed", result.pools_changed),
        ("slices created", result.created),
        ("slices updated", result.updated),
        ("slices deleted", result.deleted),
        ("slices unchanged", result.unchanged),
        ("API requests", result.requests),
        ("API writes", result.writes),
        ("retries", result.retries),
        ("conflicts", result.conflicts),
    ):
        table.add_row(label, str(value))
    table.add_row("seconds", f"{result.elapsed_s:.2f}")
    out.print(table)
    if result.changes:
        verb = "would change" if result.dry_run else "changed"
        changes = Table(title=f"Slices that {verb}")
        for col in ("action", "slice", "pool", "generation", "reason"):
            changes.add_column(col)
        for c in result.changes[:_MAX_CHANGE_ROWS]:
            gen = "" if c.generation is None else str(c.generation)
            changes.add_row(c.action, c.slice, c.pool, gen, c.reason)
        out.print(changes)
        if len(result.changes) > _MAX_CHANGE_ROWS:
            out.print(f"... and {len(result.changes) - _MAX_CHANGE_ROWS} more")


@dataclass(frozen=True)
class _Health:
    """What the agent writes for GPU health besides its slices (:mod:`nvtopo.dra.health_agent`)."""

    effect: TaintEffect | None = "NoSchedule"
    companion: bool = False
    condition: bool = True

    def write(self, api_client: Any, node: str, topology: Any) -> None:
        from nvtopo.dra.health_agent import reconcile_node_condition, reconcile_taint_rules
        from nvtopo.kube.client import RawApi

        api = RawApi(api_client)
        if self.condition:
            reconcile_node_condition(api, node, topology)
        if self.companion and self.effect is not None:
            reconcile_taint_rules(api, node, topology, effect=self.effect)


def _publisher(
    source: str,
    node: str | None,
    driver: str,
    kubeconfig: str | None,
    dry_run: bool,
    stop: threading.Event,
    prune: bool = False,
    health: _Health | None = None,
    labels: bool = False,
) -> Callable[[], Any]:
    from nvtopo.dra.publish import node_slices
    from nvtopo.dra.publish import publish as publish_slices

    health = health or _Health()

    api_client = kube_api_client(kubeconfig)
    agent_node = node or os.environ.get("NODE_NAME") or socket.gethostname()
    owner: list[dict[str, Any] | None] = []

    def once() -> Any:
        if source == "nvml":
            from nvtopo.discovery.nvml import discover

            obj: Any = discover(name=agent_node)
        else:
            obj = load_source(source)
        if labels:
            _apply_labels(
                api_client, obj, node if isinstance(obj, Cluster) else agent_node, dry_run
            )
        if isinstance(obj, Cluster):
            return publish_slices(
                api_client, obj, node=node, driver=driver, dry_run=dry_run, stop=stop, prune=prune
            )
        if not owner:
            owner.append(_owner(api_client, agent_node))
        slices = node_slices(
            obj, node=agent_node, driver=driver, owner=owner[0], taint_effect=health.effect
        )
        if len(owner) == 1:  # at start: never beside another driver publishing these GPUs
            from nvtopo.dra.coexist import check_no_shared_gpus

            if not health.companion:  # companion mode: NVIDIA's driver publishes them too
                check_no_shared_gpus(api_client, agent_node, driver, slices)
            owner.append(None)
        result = publish_slices(
            api_client, {agent_node: slices}, driver=driver, dry_run=dry_run, stop=stop, prune=prune
        )
        if not dry_run:
            health.write(api_client, agent_node, obj)
        return result

    return once


def _apply_labels(api_client: Any, obj: Any, node: str | None, dry_run: bool) -> None:
    # Node labels (topology.nvtopo.dev/clique and rack, and the shared clique keys no other
    # component owns): nvtopo.dra.labels_apply. A line per node on stderr keeps stdout as is.
    from nvtopo.cli.compute_domain import as_cluster
    from nvtopo.dra.labels_apply import apply_cluster_labels
    from nvtopo.model import ClusterNode

    if not isinstance(obj, Cluster):
        obj = Cluster((ClusterNode(str(node), obj),))
    for result in apply_cluster_labels(api_client, as_cluster(obj), node=node, dry_run=dry_run):
        click.echo(f"labels: {result.summary()}", err=True)


@click.command()
@source_option
@click.option(
    "--node",
    default=None,
    help="node (and pool) name; default: $NODE_NAME, else the host name. With a cluster "
    "source: publish only this node (default: every node of the cluster)",
)
@click.option(
    "--prune",
    is_flag=True,
    help="also delete the driver's pools of nodes not published here (as kubectl apply "
    "--prune); without it other nodes' slices are never touched",
)
@click.option("--driver", default="gpu.nvtopo.dev", show_default=True, help="DRA driver name")
@click.option(
    "--kubeconfig",
    default=None,
    help="kubeconfig file; default: the in-cluster service account when "
    "KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG or ~/.kube/config",
)
@click.option("--once", is_flag=True, help="publish once and exit (default: keep watching)")
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="watch mode: seconds between rediscoveries (NVML events and fabric changes wake "
    "it sooner)",
)
@click.option("--dry-run", is_flag=True, help="show what would change; write nothing")
@click.option(
    "--taint-effect",
    type=click.Choice(["NoSchedule", "NoExecute", "none"]),
    default="NoSchedule",
    show_default=True,
    help="effect of the device taint on a GPU with NVLinks down or a degraded fabric "
    "(NoExecute also evicts running pods; none: publish no taints)",
)
@click.option(
    "--companion",
    is_flag=True,
    help="NVIDIA's GPU driver keeps publishing the GPUs (gpu.nvidia.com): mirror the health "
    "taints onto its devices as DeviceTaintRules, and do not refuse its slices",
)
@click.option(
    "--node-condition/--no-node-condition",
    default=True,
    show_default=True,
    help="keep the node's NVLinkCliqueDegraded condition up to date",
)
@click.option(
    "--labels",
    is_flag=True,
    help="also label the node(s): topology.nvtopo.dev/clique and rack, and nvidia.com/"
    "gpu.clique and accelerator.topograph.run/* where no other component owns them",
)
@format_option(
    ["table", "json", "yaml"],
    default="table",
    help="output format (watch mode: one line, one JSON object or one YAML document per publish)",
)
def publish(
    source: str,
    node: str | None,
    prune: bool,
    driver: str,
    kubeconfig: str | None,
    once: bool,
    interval: float,
    dry_run: bool,
    taint_effect: str,
    companion: bool,
    node_condition: bool,
    fmt: str,
    labels: bool,
) -> None:
    """Publish this node's GPUs as DRA ResourceSlices and keep them up to date.

    Rediscovers every --interval seconds and on NVML events (XID errors, GPU unavailable)
    or fabric changes, and writes only what changed. SIGTERM stops it cleanly.
    """
    from nvtopo.dra.watch import NvmlEvents, watch

    stop = threading.Event()
    effect: TaintEffect | None = None if taint_effect == "none" else taint_effect  # type: ignore[assignment]
    health = _Health(effect=effect, companion=companion, condition=node_condition)
    publish_once = _publisher(
        source, node, driver, kubeconfig, dry_run, stop, prune, health, labels
    )
    with _sigterm_sets(stop):
        if once:
            _show(publish_once(), fmt, None)
            return
        events = NvmlEvents() if source == "nvml" else None

        def round_(reason: str) -> None:
            _show(publish_once(), fmt, reason)

        def failed(exc: NvtopoError) -> None:
            from nvtopo.dra.coexist import SharedGpuError

            if isinstance(exc, SharedGpuError):
                raise exc  # refuse to start: retrying cannot help
            # Not `error:`: the agent carries on, and log scanners must not page on it.
            click.echo(f"nvtopo: publish failed, retrying at the next wake-up: {exc}", err=True)

        try:
            watch(round_, interval=interval, stop=stop, events=events, on_error=failed)
        finally:
            if events is not None:
                events.close()
