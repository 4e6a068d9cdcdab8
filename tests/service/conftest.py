"""Fixtures of the service tests: a busy cluster, served by ``nvtopo serve`` per module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import nvtopo
from nvtopo.formats.jsonio import cluster_to_json

from .serving import Served, start_serve

__all__ = ["Served", "busy_cluster", "start_serve"]


def busy_cluster() -> nvtopo.Cluster:
    """Four GB200 NVL72 racks and two 8-GPU boxes, some GPUs already in use."""
    racks = nvtopo.cluster("gb200-nvl72x4")
    nodes = []
    for i, n in enumerate(racks.nodes):
        rack = int(n.name[4:8])
        if rack == 0 and i % 3 == 0:  # rack 0: a third of its trays half busy
            n = nvtopo.ClusterNode(n.name, n.topology, n.clique, free_gpus=(2, 3))
        if rack == 1 and i % 18 < 5:  # rack 1: five trays fully busy
            n = nvtopo.ClusterNode(n.name, n.topology, n.clique, free_gpus=())
        nodes.append(n)
    nodes.append(nvtopo.ClusterNode("h100-0", nvtopo.system("dgx-h100"), free_gpus=(0, 1, 4, 5, 6)))
    nodes.append(nvtopo.ClusterNode("b200-0", nvtopo.system("hgx-b200")))
    return nvtopo.Cluster(tuple(nodes))


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "cluster.json"
    path.write_text(json.dumps(cluster_to_json(busy_cluster())))
    return path


@pytest.fixture(scope="module")
def served(cluster_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``nvtopo serve`` on :func:`busy_cluster` for a whole test module."""
    s = start_serve(["--source", f"file:{cluster_file}"], tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        s.stop()
