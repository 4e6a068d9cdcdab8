"""What launchers read, written from a :class:`~nvtopo.launch.plan.LaunchPlan`.

- torchrun: per node ``--nnodes --node-rank --nproc-per-node --master-addr --master-port``
  (static rendezvous, so ``--node-rank`` is kept; a c10d rendezvous would hand node ranks out
  in arrival order), also given as the ``PET_*`` variables torchrun reads for each option;
- the environment bundle of a node (:func:`node_env`);
- DeepSpeed's hostfile (``host slots=N``), Open MPI's hostfile and rankfile
  (``rank R=host slot=CPUS``, physical CPU ids: run ``mpirun --mca rmaps_rank_file_physical 1``);
- a Slurm node list in rank order with a ``SLURM_TOPOLOGY_ADDR``-style string per node
  (``<clique block>.<node>``, pattern ``block.node``);
- the rank map (rank → node, local rank, GPU index and UUID, clique, NIC, groups).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from nvtopo.launch.groups import AXES
from nvtopo.launch.plan import LaunchPlan, NodeLaunch

__all__ = [
    "PLAN_KIND",
    "deepspeed_hostfile",
    "node_env",
    "openmpi_hostfile",
    "openmpi_rankfile",
    "plan_to_json",
    "rank_map",
    "slurm_nodes",
    "torchrun_args",
]

PLAN_KIND = "LaunchPlan"
_API_VERSION = "nvtopo.dev/v1"
_TAIL_DIGITS = re.compile(r"^(.*?)(\d+)$")


def torchrun_args(plan: LaunchPlan, node: NodeLaunch) -> list[str]:
    """torchrun's options for ``node`` (``torchrun <these> train.py ...``).

    Examples
    --------
    >>> import nvtopo
    >>> from nvtopo.launch import plan_launch
    >>> racks = nvtopo.cluster("gb200-nvl72")
    >>> p = plan_launch(racks, nvtopo.place(racks, gpus=8, nodes=2))
    >>> torchrun_args(p, p.nodes[1])[:3]
    ['--nnodes=2', '--node-rank=1', '--nproc-per-node=4']
    """
    return [
        f"--nnodes={len(plan.nodes)}",
        f"--node-rank={node.node_rank}",
        f"--nproc-per-node={len(node.gpus)}",
        f"--master-addr={plan.master_addr}",
        f"--master-port={plan.master_port}",
    ]


def node_env(plan: LaunchPlan, node: NodeLaunch) -> dict[str, str]:
    """The environment of ``node``'s processes.

    ``CUDA_VISIBLE_DEVICES`` lists the GPUs in ring order (local rank i drives the i-th);
    ``NCCL_MNNVL_ENABLE`` and ``NCCL_CUMEM_ENABLE`` are set only when every rank shares one
    healthy clique; ``NCCL_IB_HCA`` names the NIC nearest each GPU (exact names, in ring
    order); ``NVLINK_DOMAIN_SIZE`` counts the job's ranks in this node's NVLink domain. The
    ``PET_*`` variables carry torchrun's options, and ``MASTER_ADDR``, ``MASTER_PORT``,
    ``WORLD_SIZE``, ``NODE_RANK`` serve launchers that read those.
    """
    env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, node.gpus))}
    if plan.mnnvl:
        env["NCCL_MNNVL_ENABLE"] = "1"
        env["NCCL_CUMEM_ENABLE"] = "1"
    nics = [plan.ranks[r].nic for r in node.ranks]
    if all(nics):
        env["NCCL_IB_HCA"] = "=" + ",".join(dict.fromkeys(n for n in nics if n))
    env["NVLINK_DOMAIN_SIZE"] = str(plan.domain_size(node))
    if node.clique is not None:
        env["NVTOPO_CLIQUE"] = node.clique
    env.update(
        {
            "PET_NNODES": str(len(plan.nodes)),
            "PET_NODE_RANK": str(node.node_rank),
            "PET_NPROC_PER_NODE": str(len(node.gpus)),
            "PET_MASTER_ADDR": plan.master_addr,
            "PET_MASTER_PORT": str(plan.master_port),
            "MASTER_ADDR": plan.master_addr,
            "MASTER_PORT": str(plan.master_port),
            "WORLD_SIZE": str(plan.world_size),
            "NODE_RANK": str(node.node_rank),
        }
    )
    return env


def env_lines(env: dict[str, str]) -> str:
    """``export K=V`` lines, quoted for a POSIX shell."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def deepspeed_hostfile(plan: LaunchPlan) -> str:
    """DeepSpeed's hostfile: ``host slots=N`` per node, in node-rank order."""
    return "".join(f"{n.name} slots={len(n.gpus)}\n" for n in plan.nodes)


def openmpi_hostfile(plan: LaunchPlan) -> str:
    """Open MPI's hostfile: ``host slots=N`` per node, in node-rank order."""
    return deepspeed_hostfile(plan)


def openmpi_rankfile(plan: LaunchPlan) -> str:
    """Open MPI's rankfile: each rank on its node, bound to its GPU's share of nearby CPUs.

    With every rank's CPUs known the slots are physical CPU ids (``mpirun --mca
    rmaps_rank_file_physical 1``); otherwise each rank takes the logical core of its local
    rank and the file says so.
    """
    physical = all(r.cpus for r in plan.ranks)
    header = (
        "# physical CPU ids: mpirun --mca rmaps_rank_file_physical 1 --rankfile THIS\n"
        if physical
        else "# CPU affinity unknown: logical core = local rank\n"
    )
    body = "".join(
        f"rank {r.rank}={r.node} slot={r.cpus if physical else r.local_rank}\n" for r in plan.ranks
    )
    return header + body


def _block(clique: str | None, node: str) -> str:
    if clique is None:
        return f"node-{node}"
    cluster, _, clique_id = clique.rpartition(".")
    return f"nvl-{cluster.split('-')[0]}-{clique_id}"


def hostlist(names: list[str]) -> str:
    """Slurm's compressed host list of ``names`` (``rack0-tray[00-03],other``), order kept.

    Examples
    --------
    >>> hostlist(["n01", "n02", "n03", "x", "n07"])
    'n[01-03],x,n07'
    """
    out: list[str] = []
    run: list[tuple[str, int, int]] = []  # (prefix, number, width)

    def flush() -> None:
        if not run:
            return
        prefix, first, width = run[0]
        last = run[-1][1]
        if len(run) == 1:
            out.append(f"{prefix}{first:0{width}d}")
        else:
            out.append(f"{prefix}[{first:0{width}d}-{last:0{width}d}]")
        run.clear()

    for name in names:
        m = _TAIL_DIGITS.match(name)
        if m is None:
            flush()
            out.append(name)
            continue
        prefix, digits = m.group(1), m.group(2)
        item = (prefix, int(digits), len(digits))
        if run and (run[-1][0], run[-1][1] + 1, run[-1][2]) == item:
            run.append(item)
            continue
        flush()
        run.append(item)
    flush()
    return ",".join(out)


def slurm_nodes(plan: LaunchPlan) -> str:
    """The node list in rank order and each node's ``SLURM_TOPOLOGY_ADDR``-style string."""
    lines = [
        f"SLURM_JOB_NODELIST={hostlist([n.name for n in plan.nodes])}",
        "SLURM_TOPOLOGY_ADDR_PATTERN=block.node",
    ]
    lines.extend(
        f"{n.name} SLURM_TOPOLOGY_ADDR={_block(n.clique, n.name)}.{n.name}" for n in plan.nodes
    )
    return "\n".join(lines) + "\n"


def rank_map(plan: LaunchPlan) -> dict[str, Any]:
    """The rank map as JSON-ready data."""
    return {
        "worldSize": plan.world_size,
        "sizes": {a: plan.sizes.size(a) for a in AXES},
        "cliques": list(plan.cliques),
        "crossings": list(plan.crossings),
        "ranks": [
            {
                "rank": r.rank,
                "node": r.node,
                "nodeRank": r.node_rank,
                "localRank": r.local_rank,
                "gpu": r.gpu,
                "uuid": r.uuid,
                "clique": r.clique,
                "nic": r.nic,
                "cpus": r.cpus,
                "groups": dict(r.groups),
            }
            for r in plan.ranks
        ],
    }


def plan_to_json(plan: LaunchPlan) -> dict[str, Any]:
    """The whole plan: the rank map, and per node its torchrun options and environment.

    This is the document ``nvtopo launch exec`` reads inside a pod (``nodes[i]`` for
    ``JOB_COMPLETION_INDEX`` i).
    """
    return {
        "apiVersion": _API_VERSION,
        "kind": PLAN_KIND,
        "masterAddr": plan.master_addr,
        "masterPort": plan.master_port,
        "mnnvl": plan.mnnvl,
        "nodes": [
            {
                "name": n.name,
                "nodeRank": n.node_rank,
                "clique": n.clique,
                "gpus": list(n.gpus),
                "ranks": [n.first_rank, n.first_rank + len(n.gpus) - 1],
                "torchrun": torchrun_args(plan, n),
                "env": node_env(plan, n),
            }
            for n in plan.nodes
        ],
        **rank_map(plan),
    }
