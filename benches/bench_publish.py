"""Publishing ResourceSlices for 1,000 nodes to a real kube-apiserver, and reading them back.

Run alone (``python benches/bench_publish.py [--quick]``) to print the table, or through
``benches/run.py`` as one more section (``run(cfg)`` returns a ``Section``). Starts its own
etcd + kube-apiserver with the Kubernetes tests' launcher (``tests/k8s/conftest.py``, built
and cached on first use), on loopback ports, and stops them at the end. Measures, on the
first 1,000 nodes of 56 GB200 NVL72 racks:

- the first publish (every slice created), a republish with nothing changed (one list, and
  the DESIGN.md target: zero writes), a republish after every node changed (every slice
  replaced at the next generation), and a dry run of that change;
- :meth:`nvtopo.Cluster.from_kubernetes` on the result.

The apiserver and etcd share the machine's cores with the publisher, as they would not in a
real cluster, so the times are an upper bound for the client's part.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make `benches`, `tests` and `nvtopo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nvtopo
from benches._common import Section, Table, Target, fmt_ns, median, print_section
from nvtopo.dra.publish import PublishResult, cluster_slices, publish
from nvtopo.kube import cluster_from_kubernetes

__all__ = ["FULL", "QUICK", "PublishConfig", "run"]

DRIVER = "bench.nvtopo.dev"


@dataclass(frozen=True)
class PublishConfig:
    nodes: int = 1_000
    racks: int = 56
    #: Republishes of the unchanged cluster timed (the median is reported).
    unchanged_runs: int = 5
    workers: int = 8


FULL = PublishConfig()
QUICK = PublishConfig(nodes=100, racks=6, unchanged_runs=2)


def _control_plane(workdir: Path) -> Any:
    from tests.k8s.conftest import controlplane  # the fixture's launcher, as the tests use it

    return controlplane.start(workdir, controlplane.build(), timeout=120)


def _row(what: str, r: PublishResult, nodes: int) -> tuple[str, ...]:
    wall = r.elapsed_s * 1e9
    return (
        what,
        fmt_ns(wall),
        fmt_ns(wall / nodes),
        f"{r.created + r.updated + r.deleted:,}",
        f"{r.requests:,}",
        f"{r.writes:,}",
    )


def run(cfg: PublishConfig = FULL) -> Section:
    from kubernetes import config

    section = Section(f"Publishing ResourceSlices for {cfg.nodes:,} nodes (`nvtopo.dra.publish`)")
    racks = nvtopo.cluster(f"gb200-nvl72x{cfg.racks}")
    cluster = nvtopo.Cluster(racks.nodes[: cfg.nodes])
    changed = cluster_slices(cluster, driver=DRIVER, set_sizes=())  # set2 leaves every GPU
    with tempfile.TemporaryDirectory(prefix="nvtopo-bench-k8s-") as tmp:
        plane = _control_plane(Path(tmp))
        client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        try:
            first = publish(client, cluster, driver=DRIVER, workers=cfg.workers, progress=False)
            again = [
                publish(client, cluster, driver=DRIVER, workers=cfg.workers, progress=False)
                for _ in range(cfg.unchanged_runs)
            ]
            dry = publish(client, changed, driver=DRIVER, dry_run=True, progress=False)
            change = publish(client, changed, driver=DRIVER, workers=cfg.workers, progress=False)
            reads = []
            for _ in range(cfg.unchanged_runs):
                t0 = time.perf_counter()
                back = cluster_from_kubernetes(client, driver=DRIVER)
                reads.append(time.perf_counter() - t0)
        finally:
            client.close()
            plane.stop()
    unchanged = sorted(again, key=lambda r: r.elapsed_s)[len(again) // 2]
    n = cfg.nodes
    section.tables.append(
        Table(
            f"{n:,} GB200 trays (4 GPUs each), {cfg.workers} pools written at once, "
            "against a local kube-apiserver",
            ("what", "wall", "per node", "slices written", "API requests", "API writes"),
            (
                _row("first publish (create every slice)", first, n),
                _row(f"republish, nothing changed (median of {len(again)})", unchanged, n),
                _row("dry run of that change (slices it would write)", dry, n),
                _row("republish, every node changed (replaced at generation 2)", change, n),
                (
                    f"`Cluster.from_kubernetes` ({len(back.nodes):,} nodes, "
                    f"median of {len(reads)})",
                    fmt_ns(median(reads) * 1e9),
                    fmt_ns(median(reads) * 1e9 / n),
                    "0",
                    "2",
                    "0",
                ),
            ),
            notes=(
                "An unchanged republish is one paginated list and no write: every pool is "
                "compared with what the server holds and left alone.",
            ),
        )
    )
    writes = max(r.writes for r in again)
    section.targets.append(
        Target(
            "republishing unchanged slices",
            "zero API writes",
            f"{writes} writes, {unchanged.requests} requests ({n:,} nodes)",
            writes == 0,
        )
    )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 nodes instead of 1,000")
    args = parser.parse_args(argv)
    print_section(run(QUICK if args.quick else FULL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
