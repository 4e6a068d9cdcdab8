"""``nvtopo serve``: the placement service over gRPC (Contract 4)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from nvtopo.cli.sources import SOURCE_HELP
from nvtopo.exceptions import NvtopoError

__all__ = ["serve"]

DEFAULT_SOCKET = "/run/nvtopo/placement.sock"


@click.command()
@click.option(
    "--source", "-s", default="kubernetes", show_default=True,
    help=f"kubernetes (watch the driver's ResourceSlices and all ResourceClaims), or {SOURCE_HELP}",
)  # fmt: skip
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True,
              help="unix socket to listen on (mode 0660); '' for none")  # fmt: skip
@click.option("--tcp", default=None, metavar="HOST:PORT", help="also listen on TCP (needs TLS)")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-client-ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="require client certificates signed by this CA (mutual TLS)")  # fmt: skip
@click.option("--insecure", is_flag=True, help="allow TCP without TLS")
@click.option("--kubeconfig", default=None, help="kubeconfig file (default as kubectl)")
@click.option("--driver", default="gpu.nvtopo.dev", show_default=True, help="DRA driver name")
@click.option("--resync", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="seconds between full lists of slices and claims")  # fmt: skip
@click.option("--spares", type=click.IntRange(min=0), default=0, show_default=True,
              help="fully free nodes per clique held back from placements")  # fmt: skip
@click.option("--max-concurrent", type=click.IntRange(min=1), default=256, show_default=True,
              help="calls in progress beyond which new ones get RESOURCE_EXHAUSTED")  # fmt: skip
@click.option("--grace", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="seconds calls in flight get to finish on SIGTERM")  # fmt: skip
def serve(
    source: str,
    socket_path: str,
    tcp: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    insecure: bool,
    kubeconfig: str | None,
    driver: str,
    resync: float,
    spares: int,
    max_concurrent: int,
    grace: float,
) -> None:
    """Serve nvtopo.v1.PlacementService until SIGTERM or SIGINT.

    Reservations live in memory: a restarted service rebuilds the cluster from its source
    and has none, so GPUs reserved before the restart (and not yet claimed) can be promised
    again.
    """
    from nvtopo.model import Cluster, ClusterNode
    from nvtopo.service.server import PlacementServer, Tls
    from nvtopo.service.state import PlacementState

    if (tls_cert is None) != (tls_key is None):
        raise NvtopoError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise NvtopoError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = Tls(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    feed: Any = None
    if source == "kubernetes":
        from nvtopo.cli.kube import api_client
        from nvtopo.kube.view import ClusterView
        from nvtopo.service.feed import KubeFeed

        state = PlacementState(Cluster(()), spares=spares)
        view = ClusterView(api_client(kubeconfig), driver=driver, resync=resync)
        feed = KubeFeed(view, state)
    else:
        from nvtopo.cli.sources import load_source

        obj = load_source(source)
        cluster = (
            obj if isinstance(obj, Cluster) else Cluster((ClusterNode(obj.name or "node", obj),))
        )
        state = PlacementState(cluster, spares=spares)
    server = PlacementServer(
        state, socket=socket_path or None, tcp=tcp, tls=tls, insecure=insecure,
        max_concurrent=max_concurrent,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    where = ", ".join(
        w
        for w in (
            f"unix:{socket_path}" if socket_path else "",
            tcp and f"{tcp} (port {server.port})",
        )
        if w
    )
    server.start(ready=feed is None)
    if feed is not None:
        feed.start()
        click.echo(
            f"nvtopo serve: listening on {where}; reading {driver} from Kubernetes", err=True
        )
        while not stop.is_set() and not feed.synced.wait(0.2):
            pass
        if feed.synced.is_set():
            server.ready()
    if not stop.is_set():
        n = state.cluster
        click.echo(
            f"nvtopo serve: serving {len(n.nodes)} nodes, {len(n.cliques)} cliques on {where}",
            err=True,
        )
    while not stop.wait(0.5):
        pass
    click.echo("nvtopo serve: stopping (calls in flight may finish)", err=True)
    server.stop(grace)
    if feed is not None:
        feed.stop()
