"""A seeded job trace on a 64-rack GB200 NVL72 cluster: nvtopo against first-fit and random.

Jobs arrive as a Poisson process and run for exponentially distributed times; a job that
cannot be placed when it arrives is refused (no queue), so every placer sees the same jobs.
Measured per placer: mean GPU utilisation, the share of multi-node jobs kept inside one
NVLink domain (clique), and the jobs refused although enough GPUs were free in total.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nvtopo
from benches._common import Section, Table, Target
from benches.baselines import (
    SimpleClusterState,
    SimplePlacement,
    bin_pack_place,
    first_fit_place,
    first_rack_place,
    random_place,
)
from nvtopo.model.cluster import Cluster

__all__ = ["FULL", "QUICK", "Job", "TraceConfig", "TraceResult", "make_trace", "run", "simulate"]


@dataclass(frozen=True)
class TraceConfig:
    cluster: str = "gb200-nvl72x64"
    jobs: int = 20_000
    load: float = 1.0  # offered GPU-time over capacity: high enough for jobs to collide
    multi_node_share: float = 0.4
    seed: int = 11


FULL = TraceConfig()
QUICK = TraceConfig(cluster="gb200-nvl72x4", jobs=150)


@dataclass(frozen=True)
class Job:
    id: int
    arrival: float
    duration: float
    nodes: int
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


def make_trace(cfg: TraceConfig, gpus_per_node: int, total_gpus: int) -> list[Job]:
    """Seeded jobs: 1–8 GPUs on one node (capped at the node's GPUs) or 2–18 nodes × 4 GPUs."""
    rng = random.Random(cfg.seed)
    shapes: list[tuple[int, int]] = []
    for _ in range(cfg.jobs):
        if rng.random() < cfg.multi_node_share:
            shapes.append((rng.randint(2, 18), min(4, gpus_per_node)))
        else:
            shapes.append((1, rng.randint(1, min(8, gpus_per_node))))
    mean_gpus = sum(n * g for n, g in shapes) / len(shapes)
    mean_duration = 1.0
    rate = cfg.load * total_gpus / (mean_gpus * mean_duration)  # arrivals per unit time
    t = 0.0
    jobs = []
    for i, (n, g) in enumerate(shapes):
        t += rng.expovariate(rate)
        jobs.append(Job(i, t, rng.expovariate(1 / mean_duration), n, g))
    return jobs


class Placer(Protocol):
    name: str

    def place(self, job: Job) -> tuple[Any, frozenset[str | None]] | None:
        """Book ``job``: a release token and the cliques it spans, or None if refused."""

    def release(self, token: Any) -> None: ...


class NvtopoPlacer:
    name = "nvtopo (domain preferred)"

    def __init__(self, cluster: Cluster) -> None:
        self.state = nvtopo.ClusterState(cluster)
        self.clique = {n.name: n.domain for n in cluster.nodes}

    def place(self, job: Job) -> tuple[Any, frozenset[str | None]] | None:
        req = nvtopo.PlacementRequest(job.gpus, nodes=job.nodes, domain="preferred")
        try:
            alloc = self.state.allocate(req)
        except nvtopo.InfeasibleError:
            return None
        names = [n.name for n in alloc.placement.nodes]
        return alloc.id, frozenset(self.clique[n] for n in names)

    def release(self, token: Any) -> None:
        self.state.release(token)


class BaselinePlacer:
    def __init__(self, name: str, cluster: Cluster, seed: int | None = None) -> None:
        self.name = name
        self.state = SimpleClusterState.from_cluster(cluster)
        self.rng = None if seed is None else random.Random(seed)

    def place(self, job: Job) -> tuple[Any, frozenset[str | None]] | None:
        p: SimplePlacement | None
        if self.rng is not None:
            p = random_place(self.state, job, self.rng)
        elif self.name == "first-rack greedy":
            p = first_rack_place(self.state, job)
        elif self.name.startswith("KAI-style"):
            p = bin_pack_place(self.state, job)
        else:
            p = first_fit_place(self.state, job)
        if p is None:
            return None
        return self.state.take(p), frozenset(p.cliques)

    def release(self, token: Any) -> None:
        self.state.release(token)


@dataclass(frozen=True)
class TraceResult:
    placer: str
    jobs: int
    utilisation: float
    multi_node: int
    multi_node_one_clique: int
    refused: int
    refused_with_room: int


def simulate(placer: Placer, jobs: Sequence[Job], total_gpus: int) -> TraceResult:
    """Replay ``jobs`` through ``placer``: arrivals in order, departures as they fall due."""
    departures: list[tuple[float, int, Any, int]] = []
    used = 0
    area = 0.0  # ∫ used GPUs dt
    now = start = jobs[0].arrival if jobs else 0.0
    count = multi = one_clique = refused = with_room = 0
    for job in jobs:
        while departures and departures[0][0] <= job.arrival:
            t, _, token, gpus = heapq.heappop(departures)
            area += used * (t - now)
            now = t
            placer.release(token)
            used -= gpus
        area += used * (job.arrival - now)
        now = job.arrival
        count += 1
        booked = placer.place(job)
        if booked is None:
            refused += 1
            with_room += total_gpus - used >= job.gpus
            continue
        token, cliques = booked
        used += job.gpus
        if job.nodes > 1:
            multi += 1
            one_clique += len(cliques) == 1 and None not in cliques
        heapq.heappush(departures, (job.arrival + job.duration, job.id, token, job.gpus))
    span = now - start
    return TraceResult(
        placer.name,
        count,
        area / (total_gpus * span) if span > 0 else 0.0,
        multi,
        one_clique,
        refused,
        with_room,
    )


def run(cfg: TraceConfig = FULL) -> Section:
    cluster = nvtopo.cluster(cfg.cluster)
    per_node = max(len(n.topology.gpus) for n in cluster.nodes)
    total = cluster.gpu_count
    jobs = make_trace(cfg, per_node, total)
    placers: list[Placer] = [
        NvtopoPlacer(cluster),
        BaselinePlacer("first-fit", cluster),
        BaselinePlacer("first-rack greedy", cluster),
        BaselinePlacer("KAI-style bin-packing (fullest rack first)", cluster),
        BaselinePlacer("random", cluster, seed=cfg.seed),
    ]
    results = [simulate(p, jobs, total) for p in placers]
    rows = tuple(
        (
            r.placer,
            f"{100 * r.utilisation:.1f}%",
            f"{r.multi_node_one_clique}/{r.multi_node} "
            f"({100 * r.multi_node_one_clique / max(1, r.multi_node):.0f}%)",
            f"{r.refused} ({100 * r.refused / r.jobs:.1f}%)",
            str(r.refused_with_room),
        )
        for r in results
    )
    section = Section(f"Job trace on {cfg.cluster}")
    section.tables.append(
        Table(
            f"{len(jobs):,} jobs on {cfg.cluster} ({len(cluster.nodes):,} nodes, {total:,} GPUs), "
            f"offered load {cfg.load:.0%}",
            (
                "placer",
                "mean GPU utilisation",
                "multi-node jobs in one clique",
                "refused",
                "refused with enough free GPUs",
            ),
            rows,
            (
                f"Seed {cfg.seed}. Jobs: {1 - cfg.multi_node_share:.0%} on one node "
                f"(1–{min(8, per_node)} GPUs), {cfg.multi_node_share:.0%} on 2–18 nodes × "
                f"{min(4, per_node)} GPUs; Poisson arrivals, exponential run times; a job "
                "that does not fit on arrival is refused.",
                "Utilisation is the time average of GPUs in use over the whole cluster, "
                "from the first arrival to the last.",
            ),
        )
    )
    ours = results[0]
    others = [r for r in results[1:] if r.placer != "random"]
    section.targets.append(
        Target(
            f"fragmentation on a job trace ({cfg.cluster})",
            "fewer jobs refused while capacity exists than first-fit, first-rack greedy and "
            "KAI-style bin-packing",
            f"nvtopo {ours.refused_with_room}; "
            + ", ".join(f"{r.placer.split(' (')[0]} {r.refused_with_room}" for r in others),
            all(ours.refused_with_room < r.refused_with_room for r in others),
        )
    )
    return section
