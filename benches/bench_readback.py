"""Reading a cluster back from its ResourceSlices and ResourceClaims: 18,432 nodes.

Run alone (``python benches/bench_readback.py [--quick]``) to print the table, or through
``benches/run.py`` as one more section (``run(cfg)`` returns a ``Section``). Times
``nvtopo.kube.readback.cluster_from_objects`` — everything ``cluster_from_kubernetes`` does
after its two lists — on the slices nvtopo publishes for 1,024 GB200 NVL72 racks, with half
the nodes holding a claim on two GPUs and every eighth node in a ComputeDomain. The lists
themselves are the apiserver's cost and are measured with it in ``bench_publish.py``.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make `benches` and `nvtopo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nvtopo
from benches._common import Section, Table, fmt_ns, judge_full_size, median, script_main
from nvtopo.dra.publish import cluster_slices
from nvtopo.kube.readback import COMPUTE_DOMAIN_DRIVER, cluster_from_objects

__all__ = ["FULL", "QUICK", "ReadbackConfig", "run"]

TARGET_S = 2.0
DRIVER = "gpu.nvtopo.dev"


@dataclass(frozen=True)
class ReadbackConfig:
    cluster: str = "gb200-nvl72x1024"
    runs: int = 3
    #: Racks of the second case, where every tray's document is of a form of its own.
    distinct_racks: int = 64


FULL = ReadbackConfig()
QUICK = ReadbackConfig(cluster="gb200-nvl72x4", runs=2, distinct_racks=2)


def _own_forms(cluster: nvtopo.Cluster) -> nvtopo.Cluster:
    """``cluster`` with every node's document of a form of its own (another ``system`` name),
    so that no two documents share their decoding: the worst case of the read-back."""
    nodes = [
        dataclasses.replace(
            node, topology=dataclasses.replace(node.topology, system=f"gb200-tray-{i}")
        )
        for i, node in enumerate(cluster.nodes)
    ]
    return nvtopo.Cluster(tuple(nodes), name=cluster.name)


def _time(slices: list[Any], claims: list[Any], runs: int) -> tuple[list[float], list[float], Any]:
    walls, cpus = [], []
    back = None
    for _ in range(runs):
        gc.collect()
        from nvtopo.dra.annotation import _topology
        from nvtopo.formats._parts import clear_parts

        _topology.cache_clear()  # each run decodes the documents, as a fresh reader does
        clear_parts()  # and the parts and forms that documents share
        w0, c0 = time.perf_counter(), time.process_time()
        back = cluster_from_objects(slices, claims, driver=DRIVER)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, back


def _claims(cluster: nvtopo.Cluster) -> list[dict[str, Any]]:
    """One claim of two GPUs on every other node; a ComputeDomain channel on every eighth."""
    claims = []
    for i, node in enumerate(cluster.nodes):
        results = []
        if i % 2 == 0:
            results += [
                {"request": "gpus", "driver": DRIVER, "pool": node.name, "device": f"gpu-{g}"}
                for g in (0, 1)
            ]
        if i % 8 == 0:
            results.append(
                {
                    "request": "channel",
                    "driver": COMPUTE_DOMAIN_DRIVER,
                    "pool": node.name,
                    "device": "channel-0",
                }
            )
        if results:
            claims.append({"status": {"allocation": {"devices": {"results": results}}}})
    return claims


def run(cfg: ReadbackConfig = FULL) -> Section:
    section = Section(f"Reading {cfg.cluster} back from Kubernetes objects (`nvtopo.kube`)")
    cluster = nvtopo.cluster(cfg.cluster)
    nodes = len(cluster.nodes)
    slices = [s for pool in cluster_slices(cluster, driver=DRIVER).values() for s in pool]
    claims = _claims(cluster)
    busy = sum(len(c["status"]["allocation"]["devices"]["results"]) for c in claims)
    walls, cpus, back = _time(slices, claims, cfg.runs)
    free = sum(len(n.free) for n in back.nodes)
    med = median(walls)
    own = _own_forms(nvtopo.cluster(f"gb200-nvl72x{cfg.distinct_racks}"))
    own_slices = [s for pool in cluster_slices(own, driver=DRIVER).values() for s in pool]
    own_walls, own_cpus, _ = _time(own_slices, _claims(own), cfg.runs)
    own_med = median(own_walls)
    own_per_node = own_med / len(own.nodes)
    own_cpu_per_node = median(own_cpus) / len(own.nodes)
    section.tables.append(
        Table(
            f"`cluster_from_objects`: {len(slices):,} slices, {len(claims):,} claims "
            f"({busy:,} allocated devices), {cfg.runs} runs",
            ("what", "median", "best", "CPU (median)", "per node"),
            (
                (
                    f"{nodes:,} nodes read back ({free:,} GPUs free)",
                    fmt_ns(med * 1e9),
                    fmt_ns(min(walls) * 1e9),
                    fmt_ns(median(cpus) * 1e9),
                    fmt_ns(med / nodes * 1e9),
                ),
                (
                    f"{len(own.nodes):,} nodes, each document of a form of its own",
                    fmt_ns(own_med * 1e9),
                    fmt_ns(min(own_walls) * 1e9),
                    fmt_ns(median(own_cpus) * 1e9),
                    fmt_ns(own_per_node * 1e9),
                ),
            ),
            notes=(
                "Allocations are grouped by pool once, so the cost grows with pools plus "
                "allocated devices, not their product. Every tray's document differs from the "
                "others only in who the tray is (GPU UUIDs, fabric and platform records, node "
                "name): those are cut from the JSON text, the rest (the document's form) is "
                "decoded once per distinct text, and each node is built from its form with "
                "its own values (`nvtopo.formats._identity`); what is left per node is "
                "unzipping the annotation, finding those fields and building the node's GPUs. "
                "The second row gives every document a form of its own (another `system` "
                "field), so each is decoded whole: at that rate 18,432 such nodes take about "
                f"{own_cpu_per_node * 18_432:.1f} s of CPU. Every run starts with an empty "
                "document cache, no shared document parts (NVLink records, fabric records, "
                "pairs, NVSwitches and NICs, each decoded once per distinct content) and no "
                "forms, as a fresh reader does; the cyclic garbage collector "
                "is off while the cluster is built (it doubled the CPU time).",
            ),
        )
    )
    judge_full_size(
        section,
        nodes,
        f"reading back {nodes:,} nodes from their slices and claims",
        f"≤ {TARGET_S:g} s",
        med,
        median(cpus),
        TARGET_S,
    )
    return section


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__ or "", lambda quick: run(QUICK if quick else FULL), argv)


if __name__ == "__main__":
    sys.exit(main())
