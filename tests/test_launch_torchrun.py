"""A real consumer: torchrun (PyTorch's ``torch.distributed.run``) on the per-node options and
environment nvtopo writes, two pretend nodes on this machine, gloo on CPU.

torchrun's documented contract: ``--nnodes``, ``--node-rank``, ``--nproc-per-node``,
``--master-addr`` and ``--master-port`` (static rendezvous), each also read from a
``PET_<OPTION>`` variable; each worker gets ``RANK``, ``LOCAL_RANK``, ``GROUP_RANK`` (the
node rank) and ``WORLD_SIZE``, with global ranks numbered node by node. Node 0 is started
with the arguments, node 1 with the ``PET_*`` environment alone; every worker must get the
rank the rank map says and join one gloo all-reduce. torch comes from ``make torch-env``
(a virtual environment of its own under ~/.cache/nvtopo, since the wheel is gigabytes).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

import nvtopo
from nvtopo.launch import node_env, plan_launch, torchrun_args
from nvtopo.model import Cluster, ClusterNode
from nvtopo.place import PlacedNode, Placement

TORCH_VENV = Path(
    os.environ.get("NVTOPO_TORCH_VENV", Path.home() / ".cache" / "nvtopo" / "torch-venv")
)
WORKER = """
import os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
total = torch.tensor([float(dist.get_rank())])
dist.all_reduce(total)
keys = ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES")
# One file per worker: the workers of one node share a stdout pipe, where lines interleave.
line = " ".join(["worker", *(os.environ[k] for k in keys), str(int(total.item()))])
with open(os.path.join(os.environ["WORKER_OUT"], "rank" + os.environ["RANK"]), "w") as f:
    f.write(line + "\\n")
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_torchrun_gives_each_worker_the_rank_of_the_map(tmp_path: Path) -> None:
    python = TORCH_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no torch environment at {TORCH_VENV}: run `make torch-env`")
    h100 = nvtopo.system("dgx-h100")
    cluster = Cluster(
        (
            ClusterNode("node-a", h100, "00000000-0000-0000-0000-00000000000a.2"),
            ClusterNode("node-b", h100, "00000000-0000-0000-0000-00000000000b.1"),
        )
    )
    placement = Placement(
        (PlacedNode("node-a", (3, 1)), PlacedNode("node-b", (3, 1))),
        ("00000000-0000-0000-0000-00000000000b.1", "00000000-0000-0000-0000-00000000000a.2"),
        False,
    )
    plan = plan_launch(cluster, placement, master_addr="127.0.0.1", master_port=_free_port())
    assert [n.name for n in plan.nodes] == ["node-b", "node-a"]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    procs = []
    for node in plan.nodes:
        env = {**os.environ, **node_env(plan, node), "OMP_NUM_THREADS": "1",
               "WORKER_OUT": str(tmp_path)}  # fmt: skip
        run = [str(python), "-m", "torch.distributed.run"]
        if node.node_rank == 0:
            args = [*run, *torchrun_args(plan, node), str(worker)]
        else:  # the PET_* variables alone
            args = [*run, str(worker)]
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        outputs.append(out)
        assert proc.returncode == 0, out
    seen = {}
    for path in sorted(tmp_path.glob("rank*")):
        rank, local, group, world, visible, total = path.read_text().split()[1:]
        seen[int(rank)] = (int(local), int(group), int(world), visible, int(total))
    expected = {
        r.rank: (r.local_rank, r.node_rank, plan.world_size, "1,3", 0 + 1 + 2 + 3)
        for r in plan.ranks
    }
    assert seen == expected
