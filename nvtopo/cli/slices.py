"""``nvtopo slices`` and ``nvtopo claim``: DRA manifests for ``kubectl apply -f``."""

from __future__ import annotations

from typing import Any

import click

from nvtopo.cli.output import emit, format_option
from nvtopo.cli.sources import load_source, source_option
from nvtopo.exceptions import NvtopoError
from nvtopo.model.cluster import Cluster

__all__ = ["claim", "slices"]

_FORMAT_CHOICES = ("yaml", "json")


def _as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    # A v1 List is what kubectl applies as one document in both YAML and JSON.
    return {"apiVersion": "v1", "kind": "List", "items": items}


@click.command()
@source_option
@click.option(
    "--node",
    default=None,
    help="node (and pool) name; with a cluster source, only this node "
    "(default: the topology's name, or every node of a cluster)",
)
@click.option("--driver", default="gpu.nvtopo.dev", show_default=True, help="DRA driver name")
@click.option(
    "--generation", type=click.IntRange(min=0), default=1, show_default=True, help="pool generation"
)
@format_option(_FORMAT_CHOICES, default="yaml")
def slices(source: str, node: str | None, driver: str, generation: int, fmt: str) -> None:
    """Print the ResourceSlices (resource.k8s.io/v1) that publish the source's GPUs."""
    from nvtopo.dra import cluster_resource_slices, resource_slices

    obj = load_source(source)
    if isinstance(obj, Cluster):
        if node is not None:
            picked = obj.node(node)
            obj = Cluster((picked,), name=obj.name)
        items = cluster_resource_slices(obj, driver=driver, generation=generation)
    else:
        name = node or obj.name
        if not name:
            raise NvtopoError("--node is needed: the source does not name its node")
        items = resource_slices(obj, node=name, driver=driver, generation=generation)
    emit(_as_list(items), fmt)


@click.command()
@click.option("--gpus", "-k", type=int, required=True, help="GPUs the claim asks for (1-32)")
@click.option("--name", required=True, help="ResourceClaimTemplate name")
@click.option("--namespace", default="default", show_default=True, help="namespace")
@click.option("--driver", default="gpu.nvtopo.dev", show_default=True, help="DRA driver name")
@click.option("--device-class", default=None, help="DeviceClass name (default: the driver's)")
@format_option(_FORMAT_CHOICES, default="yaml")
def claim(
    gpus: int, name: str, namespace: str, driver: str, device_class: str | None, fmt: str
) -> None:
    """Print a ResourceClaimTemplate asking for K GPUs kept together (best group first)."""
    from nvtopo.dra import claim_template

    emit(
        claim_template(
            gpus=gpus, name=name, namespace=namespace, driver=driver, device_class=device_class
        ),
        fmt,
    )
