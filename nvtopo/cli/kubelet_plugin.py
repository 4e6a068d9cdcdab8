"""``nvtopo kubelet-plugin``: the node half of the DRA driver that prepares claimed GPUs."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import click

from nvtopo.cli.kube import api_client as kube_api_client
from nvtopo.cli.output import format_option
from nvtopo.cli.sources import load_source, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

__all__ = ["kubelet_plugin"]


def _topology(source: str, node: str) -> NodeTopology:
    if source == "nvml":
        from nvtopo.discovery.nvml import discover

        return discover(name=node)
    found = load_source(source)
    if isinstance(found, Cluster):
        for member in found.nodes:
            if member.name == node:
                return member.topology
        raise NvtopoError(f"--source {source}: the cluster has no node {node!r} (--node)")
    return found


def _say(fmt: str, event: str, text: str, **fields: Any) -> None:
    if fmt == "json":
        click.echo(json.dumps({"event": event, **fields}, separators=(",", ":")))
    else:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        click.echo(f"{stamp} {event}: {text}")


def _check_host_cdi(topology: NodeTopology, dirs: list[Path], fmt: str) -> None:
    from nvtopo.kubelet.cdi import GPU_KIND, host_gpu_names

    names, problems = host_gpu_names(dirs)
    for problem in problems:
        click.echo(f"nvtopo: warning: unreadable CDI spec {problem}", err=True)
    missing = [g.uuid or f"index {g.index}" for g in topology.gpus if g.uuid not in names]
    where = ", ".join(str(d) for d in dirs)
    if missing:
        click.echo(
            f"nvtopo: warning: the host's CDI specs in {where} name no {GPU_KIND} device for "
            f"GPU {', '.join(missing)}: containers will not get those GPUs; run "
            "`nvidia-ctk cdi generate --device-name-strategy=uuid --output=/var/run/cdi/"
            "nvidia.yaml` on the node",
            err=True,
        )
    _say(
        fmt,
        "host-cdi",
        f"{len(topology.gpus) - len(missing)} of {len(topology.gpus)} GPUs named by {GPU_KIND} "
        f"in {where}",
        named=len(topology.gpus) - len(missing),
        missing=missing,
    )


def _follow_health(
    feed: Any, source: str, node: str, interval: float, stop: threading.Event, fmt: str
) -> None:
    """Rediscover on every wake-up (interval, NVML events, fabric changes); report changes."""
    from nvtopo.dra.watch import NvmlEvents, watch

    def round_(_reason: str) -> None:
        for status in feed.update(_topology(source, node)):
            state = "healthy" if status.healthy else "unhealthy"
            _say(fmt, "health", f"{status.device} {state} {status.message}".rstrip(),
                 device=status.device, healthy=status.healthy, message=status.message)  # fmt: skip

    def failed(exc: NvtopoError) -> None:
        click.echo(f"nvtopo: error: {exc} (health kept as it was)", err=True)

    events = NvmlEvents() if source == "nvml" else None
    try:
        watch(round_, interval=interval, stop=stop, events=events, on_error=failed)
    finally:
        if events is not None:
            events.close()


@click.command("kubelet-plugin")
@source_option
@click.option("--node", default=None, help="node (and pool) name; default: $NODE_NAME, else host")
@click.option("--driver", default="gpu.nvtopo.dev", show_default=True, help="DRA driver name")
@click.option("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else ~)")
@click.option(
    "--plugins-registry",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/kubelet/plugins_registry"),
    show_default=True,
    help="the kubelet's plugin registration directory",
)
@click.option(
    "--plugin-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="this driver's socket and checkpoint directory [default: "
    "/var/lib/kubelet/plugins/<driver>]",
)
@click.option(
    "--cdi-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/run/cdi"),
    show_default=True,
    help="where the per-claim CDI specs are written",
)
@click.option(
    "--host-cdi-dir",
    "host_cdi_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    default=(Path("/etc/cdi"), Path("/var/run/cdi")),
    show_default=True,
    help="where to look for NVIDIA's GPU CDI spec (repeatable)",
)
@click.option(
    "--kubelet-api",
    default="v1,v1beta1",
    show_default=True,
    help="DRA gRPC API versions offered, most preferred first",
)
@click.option("--health/--no-health", default=True, show_default=True, help="stream GPU health")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="seconds between rediscoveries for device health (NVML events and fabric changes "
    "wake it sooner)",
)
@format_option(["table", "json"], default="table", help="log format (one line or JSON per event)")
def kubelet_plugin(
    source: str,
    node: str | None,
    driver: str,
    kubeconfig: str | None,
    plugins_registry: Path,
    plugin_dir: Path | None,
    cdi_dir: Path,
    host_cdi_dirs: tuple[Path, ...],
    kubelet_api: str,
    health: bool,
    interval: float,
    fmt: str,
) -> None:
    """Register with the kubelet and prepare this node's claimed GPUs (DRA, CDI).

    Answers NodePrepareResources with the GPUs' CDI ids (nvidia.com/gpu=<uuid>, from the
    host's NVIDIA CDI spec) and one nvtopo CDI spec per claim carrying its environment
    (ring-ordered GPUs, clique, NCCL hints). Runs until SIGTERM.
    """
    from nvtopo.kube.client import RawApi
    from nvtopo.kubelet.health import HealthFeed
    from nvtopo.kubelet.prepare import ClaimPreparer
    from nvtopo.kubelet.server import KubeletPlugin

    name = node or os.environ.get("NODE_NAME") or socket.gethostname()
    directory = plugin_dir or Path("/var/lib/kubelet/plugins") / driver
    topology = _topology(source, name)
    _check_host_cdi(topology, list(host_cdi_dirs), fmt)
    preparer = ClaimPreparer(
        RawApi(kube_api_client(kubeconfig)),
        topology,
        node=name,
        driver=driver,
        cdi_dir=cdi_dir,
        checkpoint_path=directory / "checkpoint.json",
    )
    stale = preparer.recover()
    _say(
        fmt,
        "recovered",
        f"{len(preparer.checkpoint.claims)} prepared claims kept, {len(stale)} stale files removed",
        prepared=sorted(preparer.checkpoint.claims),
        removed=[str(p) for p in stale],
    )
    feed = HealthFeed(topology) if health else None
    apis = [a.strip() for a in kubelet_api.split(",") if a.strip()]

    def registered(ok: bool, error: str) -> None:
        _say(fmt, "registration", "registered with the kubelet" if ok else error,
             registered=ok, error=error)  # fmt: skip

    plugin = KubeletPlugin(
        preparer,
        registry_dir=plugins_registry,
        plugin_dir=directory,
        apis=apis,
        health=feed,
        on_registration=registered,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    plugin.start()
    _say(
        fmt,
        "serving",
        f"{driver} on node {name}: registration {plugin.registration_socket}, DRA "
        f"{plugin.dra_socket} ({', '.join(plugin.supported_versions())}); "
        f"{len(topology.gpus)} GPUs",
        driver=driver,
        node=name,
        registration=str(plugin.registration_socket),
        endpoint=str(plugin.dra_socket),
        versions=plugin.supported_versions(),
    )
    try:
        if feed is None:
            stop.wait()
        else:
            _follow_health(feed, source, name, interval, stop, fmt)
    finally:
        plugin.stop()
        signal.signal(signal.SIGTERM, previous)
        _say(fmt, "stopped", "sockets removed")
