"""A real consumer: Open MPI's mpirun reads the hostfile and rankfile nvtopo writes.

Two pretend nodes, ``nvtopo-mpi-a`` and ``nvtopo-mpi-b``, are loopback aliases other than
127.0.0.1 (``make mpi-env`` adds them to /etc/hosts), so mpirun sees two remote nodes and
starts a daemon on each through an rsh agent that runs it here and records which node it
stands for. Each process then reports its ``OMPI_COMM_WORLD_RANK``, the node its daemon
stands for and the CPUs it is bound to; all three must be what the rank map says.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from nvtopo.launch import openmpi_hostfile, openmpi_rankfile, plan_launch
from nvtopo.model import Cluster, ClusterNode, Gpu, GpuPair, NodeTopology
from nvtopo.place import PlacedNode, Placement

HOSTS = ("nvtopo-mpi-a", "nvtopo-mpi-b")
AGENT = """#!/bin/sh
# rsh agent for the test: skip ssh-style options, take the host, run the command here
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) host=$1; shift; break;; esac; done
export NVTOPO_TEST_NODE="$host"
# each pretend node keeps its own session directory, as separate machines would
export TMPDIR="$(dirname "$0")/$host"
mkdir -p "$TMPDIR"
exec sh -c "$*"
"""
REPORT = (
    'echo "$OMPI_COMM_WORLD_RANK $NVTOPO_TEST_NODE '
    '$(grep Cpus_allowed_list /proc/self/status | cut -f2)"'
)


def _node() -> NodeTopology:
    # NVLinks 0-2, 2-1, 1-3, 3-0 (ring 0,2,1,3); GPUs 0 and 2 near CPU 0, GPUs 1 and 3 near CPU 1.
    links = {(0, 2), (1, 2), (1, 3), (0, 3)}
    gpus = tuple(
        Gpu(i, uuid=f"GPU-{i}", nvlink_generation=4, cpu_affinity=str(i % 2)) for i in range(4)
    )
    pairs = tuple(
        GpuPair(a, b, nvlinks=2 if (a, b) in links else 0, pcie="SYS")
        for a in range(4)
        for b in range(a + 1, 4)
    )
    return NodeTopology(gpus=gpus, pairs=pairs)


def _require_mpi() -> str:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.fail("mpirun is missing: run `make mpi-env` (installs Debian's openmpi-bin)")
    for host in HOSTS:
        try:
            socket.gethostbyname(host)
        except OSError:
            pytest.fail(f"{host} does not resolve: run `make mpi-env` (adds loopback aliases)")
    if (os.cpu_count() or 1) < 2:
        pytest.fail("the rankfile binds ranks to CPUs 0 and 1; this machine has one CPU")
    return mpirun


@pytest.mark.slow
def test_mpirun_places_each_rank_where_the_rank_map_says(tmp_path: Path) -> None:
    mpirun = _require_mpi()
    node = _node()
    # node b is in the clique the placement lists first, so it takes ranks 0-3
    cluster = Cluster(
        (
            ClusterNode(HOSTS[0], node, "00000000-0000-0000-0000-00000000000a.2"),
            ClusterNode(HOSTS[1], node, "00000000-0000-0000-0000-00000000000b.1"),
        )
    )
    placement = Placement(
        (PlacedNode(HOSTS[0], (0, 1, 2, 3)), PlacedNode(HOSTS[1], (0, 1, 2, 3))),
        ("00000000-0000-0000-0000-00000000000b.1", "00000000-0000-0000-0000-00000000000a.2"),
        False,
    )
    plan = plan_launch(cluster, placement)
    assert [r.node for r in plan.ranks] == [HOSTS[1]] * 4 + [HOSTS[0]] * 4
    assert [r.gpu for r in plan.ranks[:4]] == [0, 2, 1, 3]
    hostfile = tmp_path / "hostfile"
    rankfile = tmp_path / "rankfile"
    agent = tmp_path / "agent.sh"
    hostfile.write_text(openmpi_hostfile(plan))
    rankfile.write_text(openmpi_rankfile(plan))
    agent.write_text(AGENT)
    agent.chmod(0o755)
    done = subprocess.run(
        [
            mpirun,
            "--allow-run-as-root",
            "--oversubscribe",
            "--hostfile",
            str(hostfile),
            "--rankfile",
            str(rankfile),
            "--mca",
            "rmaps_rank_file_physical",
            "1",
            "--mca",
            "plm_rsh_agent",
            str(agent),
            "-np",
            str(plan.world_size),
            "sh",
            "-c",
            REPORT,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = {}
    for line in done.stdout.splitlines():
        rank, host, cpus = line.split()
        seen[int(rank)] = (host, cpus)
    assert seen == {r.rank: (r.node, r.cpus) for r in plan.ranks}
    assert {cpus for _, cpus in seen.values()} == {"0", "1"}
