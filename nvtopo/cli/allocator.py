"""``nvtopo allocator``: run the gang-aware DRA allocator against a cluster.

    nvtopo allocator --kubeconfig KUBECONFIG            # run until SIGTERM
    nvtopo allocator --once -o json                      # one pass, print what it did
    nvtopo allocator --companion                         # hand out NVIDIA's gpu.nvidia.com

``NVTOPO_ALLOCATOR_EXIT_AFTER_CLAIM=N`` makes the process exit abruptly (status 137, no
cleanup) right after the N-th claim write of a gang: the crash the journal is there for,
used by the crash tests.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

import click

from nvtopo.cli.kube import api_client
from nvtopo.dra.slices import DEFAULT_DRIVER

__all__ = ["allocator"]

NVIDIA_DRIVER = "gpu.nvidia.com"


def _exit_after(count: int) -> Any:
    def hook(written: int) -> None:
        if written >= count:
            os._exit(137)

    return hook


@click.command("allocator")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="default: as kubectl finds it")
@click.option("--context", help="kubeconfig context")
@click.option(
    "--driver", default=None, help=f"driver whose devices are handed out [{DEFAULT_DRIVER}]"
)
@click.option(
    "--companion",
    is_flag=True,
    help=f"hand out NVIDIA's {NVIDIA_DRIVER} devices, matched to nvtopo's topology by GPU UUID",
)
@click.option("--device-class", default=None, help="DeviceClass whose requests are filled [driver]")
@click.option(
    "--topology-driver",
    default=DEFAULT_DRIVER,
    show_default=True,
    help="driver of the slices that carry each node's topology",
)
@click.option(
    "--interval", type=float, default=0.2, show_default=True, help="seconds between passes"
)
@click.option("--once", is_flag=True, help="one pass, then exit")
@click.option("-o", "--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("-v", "--verbose", is_flag=True, help="log each placement")
def allocator(
    kubeconfig: str | None,
    context: str | None,
    driver: str | None,
    companion: bool,
    device_class: str | None,
    topology_driver: str,
    interval: float,
    once: bool,
    fmt: str,
    verbose: bool,
) -> None:
    """Place gated gangs (Contract 2, Contract 1 per node), allocate their claims, lift gates."""
    from nvtopo.allocator import Allocator

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    if companion and driver not in (None, NVIDIA_DRIVER):
        raise click.UsageError("--companion hands out gpu.nvidia.com devices; drop --driver")
    target = NVIDIA_DRIVER if companion else (driver or DEFAULT_DRIVER)
    crash = os.environ.get("NVTOPO_ALLOCATOR_EXIT_AFTER_CLAIM")
    worker = Allocator(
        api_client(kubeconfig, context),
        driver=target,
        device_class=device_class,
        topology_driver=topology_driver,
        on_claim_written=_exit_after(int(crash)) if crash else None,
    )
    if once:
        result = worker.run_once()
        if fmt == "json":
            click.echo(json.dumps(vars(result), indent=2, sort_keys=True))
        else:
            click.echo(
                f"placed {len(result.placed)} gang(s), refused {len(result.refused)}, "
                f"{result.claim_writes} claim write(s)"
            )
            for key, why in sorted(result.refused.items()):
                click.echo(f"  {key}: {why}")
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker.run(interval=interval, stop=stopping.is_set)
