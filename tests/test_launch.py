"""Contract 5: rank order, parallel groups and launcher outputs (``nvtopo launch``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nvtopo
from nvtopo.cli import main
from nvtopo.exceptions import NvtopoError, SelectionError
from nvtopo.launch import (
    deepspeed_hostfile,
    node_env,
    openmpi_rankfile,
    parallel_groups,
    placement_from_json,
    plan_launch,
    plan_to_json,
    rank_map,
    ring_order,
    slurm_nodes,
    torchrun_args,
)
from nvtopo.launch.groups import ParallelSizes
from nvtopo.launch.outputs import hostlist
from nvtopo.model import Cluster, ClusterNode, Gpu, GpuPair, NodeTopology
from nvtopo.place import PlacedNode, Placement

RACKS = nvtopo.cluster("gb200-nvl72x4")


def _sixteen_nodes() -> Any:
    placed = nvtopo.place(RACKS, gpus=64, nodes=16, domain="required")
    return plan_launch(RACKS, placed, tp=4, ep=16)


# -- ring order --------------------------------------------------------------------------------


def test_ring_on_nvswitch_is_index_order() -> None:
    assert ring_order(nvtopo.system("dgx-h100")) == tuple(range(8))
    assert ring_order(nvtopo.system("dgx-h100"), (6, 1, 3)) == (1, 3, 6)
    assert ring_order(nvtopo.system("dgx2-v100")) == tuple(range(16))


def test_ring_on_dgx1_mesh_runs_over_nvlinks() -> None:
    t = nvtopo.system("dgx1-v100")
    ring = ring_order(t)
    assert sorted(ring) == list(range(8)) and ring[0] == 0
    assert all(t.pair(ring[i], ring[i - 1]).nvlinks > 0 for i in range(8))
    # index order would cross PCIe between 3 and 4 (no NVLink): the ring must not
    assert t.pair(3, 4).nvlinks == 0


def test_ring_maximises_the_weakest_link() -> None:
    # 0-2, 2-1, 1-3, 3-0 have NVLinks; the other pairs only PCIe: the ring is 0,2,1,3.
    gpus = tuple(Gpu(i, nvlink_generation=4) for i in range(4))
    pairs = tuple(
        GpuPair(a, b, nvlinks=2 if (a, b) in {(0, 2), (1, 2), (1, 3), (0, 3)} else 0, pcie="SYS")
        for a in range(4)
        for b in range(a + 1, 4)
    )
    assert ring_order(NodeTopology(gpus=gpus, pairs=pairs)) == (0, 2, 1, 3)


# -- groups ------------------------------------------------------------------------------------


def test_megatron_order_tp_fastest_then_cp_ep_dp_pp() -> None:
    g = parallel_groups(ParallelSizes(tp=2, cp=2, ep=1, dp=2, pp=2))
    assert g["tp"][0] == (0, 1)
    assert g["cp"][0] == (0, 2)
    assert g["dp"][0] == (0, 4)
    assert g["pp"][0] == (0, 8)
    assert len(g["tp"]) == 8 and len(g["pp"]) == 8


def test_sizes_must_divide_the_world() -> None:
    with pytest.raises(SelectionError, match="dp must be a whole number"):
        ParallelSizes.for_world(12, tp=8)


# -- the done-when job: 16 nodes of gb200-nvl72x4 ------------------------------------------------


def test_sixteen_node_job_keeps_tp_and_ep_in_one_rack() -> None:
    plan = _sixteen_nodes()
    assert plan.world_size == 64 and len(plan.nodes) == 16
    assert len(plan.cliques) == 1 and plan.crossings == ()
    owner = {r.rank: r for r in plan.ranks}
    for axis in ("tp", "ep"):
        for group in plan.groups[axis]:
            assert len({owner[r].clique for r in group}) == 1
    for group in plan.groups["tp"]:
        assert len({owner[r].node for r in group}) == 1
    env = node_env(plan, plan.nodes[3])
    assert env["NCCL_MNNVL_ENABLE"] == "1" and env["NCCL_CUMEM_ENABLE"] == "1"
    assert env["NVLINK_DOMAIN_SIZE"] == "64"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert env["PET_NODE_RANK"] == "3"
    assert torchrun_args(plan, plan.nodes[3]) == [
        "--nnodes=16",
        "--node-rank=3",
        "--nproc-per-node=4",
        f"--master-addr={plan.nodes[0].name}",
        "--master-port=29500",
    ]


def test_a_job_wider_than_a_rack_names_each_crossing_group() -> None:
    placed = nvtopo.place(RACKS, gpus=96, nodes=24, domain="preferred")
    plan = plan_launch(RACKS, placed, tp=4, ep=8)
    assert len(plan.cliques) == 2
    # 72 ranks in one rack, 24 in the next: the ep group of ranks 64-95 crosses
    assert plan.crossings
    assert all(c.startswith("ep group") for c in plan.crossings)
    assert " nodes (" in plan.crossings[0] and " across " in plan.crossings[0]
    env = node_env(plan, plan.nodes[0])
    assert "NCCL_MNNVL_ENABLE" not in env and "NCCL_CUMEM_ENABLE" not in env
    sizes = {node_env(plan, n)["NVLINK_DOMAIN_SIZE"] for n in plan.nodes}
    assert sizes == {"24", "72"}
    # tp 4 with ep 2 fits in each rack's 72 ranks: nothing crosses
    assert plan_launch(RACKS, placed, tp=4, ep=2).crossings == ()


def test_rank_order_is_clique_then_node_then_ring() -> None:
    placed = nvtopo.place(RACKS, gpus=96, nodes=24, domain="preferred")
    plan = plan_launch(RACKS, placed)
    cliques = [r.clique for r in plan.ranks]
    assert cliques == sorted(cliques, key=list(placed.cliques).index)
    names = [n.name for n in plan.nodes]
    first = [n for n in names if RACKS.node(n).domain == placed.cliques[0]]
    assert names[: len(first)] == first


def test_nic_per_gpu_and_cpu_shares() -> None:
    plan = _sixteen_nodes()
    tray = RACKS.node(plan.nodes[0].name).topology
    nics = [r.nic for r in plan.ranks[:4]]
    assert nics == ["mlx5_0", "mlx5_1", "mlx5_4", "mlx5_5"]  # one per GPU, on its Grace
    assert node_env(plan, plan.nodes[0])["NCCL_IB_HCA"] == "=" + ",".join(nics)  # type: ignore[arg-type]
    # each GPU's CPUs are a share of the CPUs near it
    for r in plan.ranks[:4]:
        near = tray.gpu(r.gpu).cpu_affinity
        assert r.cpus is not None and near is not None


def test_outputs_for_each_launcher() -> None:
    plan = _sixteen_nodes()
    names = [n.name for n in plan.nodes]
    assert deepspeed_hostfile(plan).splitlines() == [f"{n} slots=4" for n in names]
    rankfile = openmpi_rankfile(plan).splitlines()
    assert rankfile[0].startswith("# physical CPU ids")
    assert rankfile[1].startswith(f"rank 0={names[0]} slot=")
    assert len(rankfile) == 65
    slurm = slurm_nodes(plan).splitlines()
    assert slurm[0].startswith("SLURM_JOB_NODELIST=rack")
    assert slurm[1] == "SLURM_TOPOLOGY_ADDR_PATTERN=block.node"
    assert slurm[2].startswith(f"{names[0]} SLURM_TOPOLOGY_ADDR=nvl-")
    assert slurm[2].endswith(f".{names[0]}")
    ranks = rank_map(plan)["ranks"]
    assert ranks[5] == {
        "rank": 5,
        "node": names[1],
        "nodeRank": 1,
        "localRank": 1,
        "gpu": 1,
        "uuid": RACKS.node(names[1]).topology.gpu(1).uuid,
        "clique": plan.cliques[0],
        "nic": plan.ranks[5].nic,
        "cpus": plan.ranks[5].cpus,
        "groups": {"tp": 1, "cp": 5, "ep": 1, "dp": 5, "pp": 5},
    }


def test_hostlist_compresses_runs_in_order() -> None:
    assert hostlist(["a1", "a2", "a3", "b", "a5", "a6"]) == "a[1-3],b,a[5-6]"
    assert hostlist(["rack0-tray09", "rack0-tray10"]) == "rack0-tray[09-10]"


def test_placement_from_json_reads_place_and_compute_domain_output() -> None:
    placed = nvtopo.place(RACKS, gpus=8, nodes=2, domain="required")
    assert placement_from_json(placed.to_json()) == placed
    assert placement_from_json({"placement": placed.to_json()}) == placed
    with pytest.raises(SelectionError, match="not a placement"):
        placement_from_json({"gpus": [0, 1]}, source="x.json")
    with pytest.raises(SelectionError, match=r"nodes\[0\]"):
        placement_from_json({"nodes": [{"name": "a", "gpus": ["0"]}]})


def test_placement_nodes_must_be_in_the_cluster() -> None:
    bad = Placement((PlacedNode("nowhere", (0,)),), (), False)
    with pytest.raises(SelectionError, match="'nowhere' is not in the cluster"):
        plan_launch(RACKS, bad)


# -- CLI -------------------------------------------------------------------------------------


def test_cli_plan_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["launch", "plan", "-s", "system:gb200-nvl72x4", "--gpus", "64", "--nodes", "16"]
    assert main([*args, "--tp", "4", "--ep", "16", "--format", "torchrun"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 16
    assert lines[0].endswith(
        "--nnodes=16 --node-rank=0 --nproc-per-node=4 "
        f"--master-addr={lines[0].split(':')[0]} --master-port=29500"
    )
    assert main([*args, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "LaunchPlan" and doc["worldSize"] == 64 and doc["mnnvl"] is True
    # a placement file from `nvtopo place` gives the same plan
    assert (
        main(
            [
                "place",
                "-s",
                "system:gb200-nvl72x4",
                "--gpus",
                "64",
                "--nodes",
                "16",
                "--format",
                "json",
            ]
        )
        == 0
    )
    placement = tmp_path / "placement.json"
    placement.write_text(capsys.readouterr().out)
    assert (
        main(
            [
                "launch",
                "plan",
                "-s",
                "system:gb200-nvl72x4",
                "--placement",
                str(placement),
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == doc


def test_cli_strict_exits_one_naming_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "launch",
        "plan",
        "-s",
        "system:gb200-nvl72x4",
        "--gpus",
        "96",
        "--nodes",
        "24",
        "--tp",
        "4",
        "--ep",
        "8",
        "--format",
        "rankmap",
    ]
    assert main(args) == 0
    assert "nvtopo: warning: ep group" in capsys.readouterr().err
    assert main([*args, "--strict"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("nvtopo: error: ep group 0 (ranks 0..28 step 4) spans 8 nodes (")
    assert all(line.startswith("nvtopo: error: ep group") for line in err[:-1])
    assert err[-1] == f"nvtopo: error: {len(err) - 1} groups cross NVLink domains (--strict)"


def test_cli_env_and_hostfile(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-s", "system:gb200-nvl72x4", "--gpus", "16", "--nodes", "4"]
    assert main(["launch", "env", *base, "--node", "1"]) == 0
    out = capsys.readouterr().out
    assert "export CUDA_VISIBLE_DEVICES=0,1,2,3\n" in out
    assert "export PET_NODE_RANK=1\n" in out and "export NCCL_MNNVL_ENABLE=1\n" in out
    assert main(["launch", "hostfile", *base, "--format", "deepspeed"]) == 0
    assert capsys.readouterr().out.count("slots=4") == 4


def test_cli_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["launch", "plan", "-s", "system:gb200-nvl72x4"]) == 1
    assert capsys.readouterr().err == (
        "nvtopo: error: say which job: --placement FILE, or --gpus (with --nodes) "
        "to place it here\n"
    )
    bad = tmp_path / "p.json"
    bad.write_text("{nope")
    assert main(["launch", "plan", "-s", "system:gb200-nvl72x4", "--placement", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nvtopo: error: {bad}: not JSON") and err.count("\n") == 1
    assert main(["launch", "plan", "-s", "system:gb200-nvl72x4", "--gpus", "12", "--tp", "8"]) == 1
    assert "dp must be a whole number" in capsys.readouterr().err


# -- exec --------------------------------------------------------------------------------------


def _plan_file(tmp_path: Path, **extra: Any) -> Path:
    plan = plan_launch(RACKS, nvtopo.place(RACKS, gpus=8, nodes=2, domain="required"))
    doc = plan_to_json(plan) | extra
    path = tmp_path / "launch-plan.json"
    path.write_text(json.dumps(doc))
    return path


def _exec(path: Path, *command: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nvtopo", "launch", "exec", "--plan", str(path), "--", *command],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_exec_sets_the_nodes_environment_and_passes_the_exit_code(tmp_path: Path) -> None:
    path = _plan_file(tmp_path)
    probe = (
        "import os,sys; print(os.environ['PET_NODE_RANK'], os.environ['CUDA_VISIBLE_DEVICES']);"
        " sys.exit(7)"
    )
    done = _exec(path, sys.executable, "-c", probe, env={"JOB_COMPLETION_INDEX": "1"})
    assert done.returncode == 7
    assert done.stdout == "1 0,1,2,3\n"


def test_exec_in_a_job_takes_the_node_it_landed_on_and_its_index(tmp_path: Path) -> None:
    doc = json.loads(_plan_file(tmp_path).read_text())
    path = _plan_file(tmp_path, nodeRankFrom="index")
    landed = doc["nodes"][1]["name"]
    probe = "import os; print(os.environ['PET_NODE_RANK'], os.environ['NVTOPO_CLIQUE'])"
    done = _exec(
        path,
        sys.executable,
        "-c",
        probe,
        env={"JOB_COMPLETION_INDEX": "0", "NVTOPO_NODE_NAME": landed},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", doc["nodes"][1]["clique"]]


def test_exec_passes_signals_through(tmp_path: Path) -> None:
    path = _plan_file(tmp_path)
    script = (
        "import signal,sys,time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nvtopo",
            "launch",
            "exec",
            "--plan",
            str(path),
            "--node-rank",
            "0",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.terminate()  # SIGTERM to the pid nvtopo started as: the command itself
        assert proc.wait(timeout=30) == 42


def test_exec_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.delenv("NVTOPO_NODE_NAME", raising=False)
    path = _plan_file(tmp_path)
    assert main(["launch", "exec", "--plan", str(path), "--", "true"]) == 1
    assert "JOB_COMPLETION_INDEX is not set" in capsys.readouterr().err
    assert main(["launch", "exec", "--plan", str(path), "--node-rank", "5", "--", "true"]) == 1
    assert "node rank 5 is not in the launch plan (2 nodes)" in capsys.readouterr().err
    assert (
        main(
            ["launch", "exec", "--plan", str(tmp_path / "none.json"), "--node-rank", "0", "--", "x"]
        )
        == 1
    )
    assert "no such launch plan file" in capsys.readouterr().err
    assert (
        main(["launch", "exec", "--plan", str(path), "--node-rank", "0", "--", "/nonexistent/cmd"])
        == 1
    )
    assert "/nonexistent/cmd: command not found" in capsys.readouterr().err


def test_single_node_cluster_from_a_node_source() -> None:
    tray = nvtopo.system("gb200-tray")
    cluster = Cluster((ClusterNode("tray", tray, tray.clique),))
    plan = plan_launch(cluster, Placement((PlacedNode("tray", (3, 1)),), (), False))
    assert [r.gpu for r in plan.ranks] == [1, 3]
    with pytest.raises(NvtopoError):
        plan_launch(cluster, Placement((), (), False))


# -- compute-domain plan --command ---------------------------------------------------------------


def test_compute_domain_plan_with_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    args = [
        "compute-domain",
        "plan",
        "-s",
        "system:gb200-nvl72x4",
        "--name",
        "train",
        "--gpus",
        "16",
        "--nodes",
        "4",
        "--command",
        "python train.py --lr '1e-4'",
    ]
    assert main(args) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [
        "ComputeDomain",
        "ResourceClaimTemplate",
        "ConfigMap",
        "Service",
        "Job",
    ]
    config, service, job = docs[2], docs[3], docs[4]
    plan = json.loads(config["data"]["launch-plan.json"])
    assert plan["kind"] == "LaunchPlan" and plan["nodeRankFrom"] == "index"
    assert plan["masterAddr"] == "train-0.train" and len(plan["nodes"]) == 4
    assert [n["name"] for n in plan["nodes"]] == docs[0]["metadata"]["annotations"][
        "nvtopo.dev/nodes"
    ].split(",")
    assert service["spec"]["clusterIP"] == "None"
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "train"
    container = pod["containers"][0]
    assert container["command"] == [
        "nvtopo",
        "launch",
        "exec",
        "--plan",
        "/etc/nvtopo/launch-plan.json",
        "--",
        "python",
        "train.py",
        "--lr",
        "1e-4",
    ]
    assert container["volumeMounts"][0]["mountPath"] == "/etc/nvtopo"
    assert pod["volumes"][0]["configMap"]["name"] == "train-launch"
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # without --command the placeholder stays and nothing else is added
    assert main(args[:-2]) == 0
    plain = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in plain] == ["ComputeDomain", "ResourceClaimTemplate", "Job"]


def test_compute_domain_plan_json_carries_the_same_objects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    args = [
        "compute-domain",
        "plan",
        "-s",
        "system:gb200-nvl72x4",
        "--name",
        "train",
        "--gpus",
        "8",
        "--nodes",
        "2",
        "--command",
        "sleep 1",
    ]
    assert main([*args, "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)["manifests"]
    assert main(args) == 0
    assert as_json == list(yaml.safe_load_all(capsys.readouterr().out))


@pytest.mark.parametrize(
    "module",
    [
        "nvtopo.launch.ring",
        "nvtopo.launch.groups",
        "nvtopo.launch.plan",
        "nvtopo.launch.outputs",
        "nvtopo.launch.doctor",
        "nvtopo.formats.smi_fabric_text",
        "nvtopo.formats.smi_nvlink",
        "nvtopo.formats.captures",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_compute_domain_plan_is_a_placement_too() -> None:
    from nvtopo.compute_domain import plan

    job = plan(RACKS, name="train", gpus=16, nodes=4)
    assert plan_launch(RACKS, job) == plan_launch(RACKS, job.placement)
    assert placement_from_json(job.to_json()) == job.placement
    with pytest.raises(SelectionError, match="expected a Placement, got dict"):
        plan_launch(RACKS, {"nodes": []})  # type: ignore[arg-type]


def test_cpu_shares_keep_a_cores_threads_together() -> None:
    h100 = nvtopo.system("dgx-h100")
    cluster = Cluster((ClusterNode("h100", h100),))
    plan = plan_launch(cluster, Placement((PlacedNode("h100", tuple(range(8))),), (), False))
    assert [r.cpus for r in plan.ranks] == [
        "0-13,112-125",
        "14-27,126-139",
        "28-41,140-153",
        "42-55,154-167",
        "56-69,168-181",
        "70-83,182-195",
        "84-97,196-209",
        "98-111,210-223",
    ]
