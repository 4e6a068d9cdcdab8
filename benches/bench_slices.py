"""DRA ResourceSlices for a whole cluster: 1,024 GB200 NVL72 racks (18,432 nodes).

Run alone (``python benches/bench_slices.py [--quick]``) to print the table, or through
``benches/run.py`` as one more section (``run(cfg)`` returns a ``Section``). Times
``nvtopo.dra.cluster_resource_slices`` from a built ``Cluster`` to every checked manifest, wall
clock and CPU time per run (the CPU time shows the cost when other work shares the cores),
and one node's ``resource_slices`` for scale.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `benches` and `nvtopo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nvtopo
from benches._common import (
    Section,
    Table,
    fmt_ns,
    judge_full_size,
    median,
    script_main,
    time_calls,
)
from nvtopo import dra

__all__ = ["FULL", "QUICK", "SlicesConfig", "run"]

TARGET_S = 2.0


@dataclass(frozen=True)
class SlicesConfig:
    cluster: str = "gb200-nvl72x1024"
    runs: int = 5
    node_reps: int = 200


FULL = SlicesConfig()
QUICK = SlicesConfig(cluster="gb200-nvl72x4", runs=2, node_reps=20)


def _one_run(cluster: nvtopo.Cluster) -> tuple[float, float, int, int]:
    gc.collect()  # start each run from the same heap, not the last run's garbage
    w0, c0 = time.perf_counter(), time.process_time()
    slices = dra.cluster_resource_slices(cluster)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    devices = sum(len(s["spec"]["devices"]) for s in slices)
    return wall, cpu, len(slices), devices


def run(cfg: SlicesConfig = FULL) -> Section:
    section = Section(f"DRA ResourceSlices for {cfg.cluster} (`nvtopo.dra`)")
    cluster = nvtopo.cluster(cfg.cluster)
    nodes = len(cluster.nodes)
    runs = [_one_run(cluster) for _ in range(cfg.runs)]
    walls = [r[0] for r in runs]
    cpus = [r[1] for r in runs]
    _, _, n_slices, n_devices = runs[0]
    med = median(walls)
    per_node = med / nodes * 1e9
    node = nvtopo.system("dgx-h100")
    one = time_calls(lambda: dra.resource_slices(node, node="gpu-node-1"), cfg.node_reps)
    section.tables.append(
        Table(
            f"Build every slice of {nodes:,} nodes ({n_devices:,} GPUs), {cfg.runs} runs",
            ("what", "median", "best", "CPU (median)", "per node"),
            (
                (
                    f"`cluster_resource_slices` → {n_slices:,} slices",
                    fmt_ns(med * 1e9),
                    fmt_ns(min(walls) * 1e9),
                    fmt_ns(median(cpus) * 1e9),
                    fmt_ns(per_node),
                ),
                (
                    "`resource_slices`, one 8-GPU node (dgx-h100)",
                    fmt_ns(median(one)),
                    fmt_ns(min(one)),
                    "–",
                    fmt_ns(median(one)),
                ),
            ),
            notes=(
                "Racks share one topology object per rack, so the partition and the limit "
                "checks run once per rack; every node still gets its own checked manifest.",
            ),
        )
    )
    judge_full_size(
        section,
        nodes,
        f"ResourceSlices for {nodes:,} nodes",
        f"built in ≤ {TARGET_S:g} s",
        med,
        median(cpus),
        TARGET_S,
    )
    return section


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__ or "", lambda quick: run(QUICK if quick else FULL), argv)


if __name__ == "__main__":
    sys.exit(main())
