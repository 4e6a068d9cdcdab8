"""Launchers (Contract 5): rank order, parallel groups and launcher files that follow the
NVLink domains, and the pre-flight doctor."""

from nvtopo.launch.groups import AXES, ParallelSizes, parallel_groups
from nvtopo.launch.outputs import (
    deepspeed_hostfile,
    node_env,
    openmpi_hostfile,
    openmpi_rankfile,
    plan_to_json,
    rank_map,
    slurm_nodes,
    torchrun_args,
)
from nvtopo.launch.plan import LaunchPlan, NodeLaunch, RankInfo, placement_from_json, plan_launch
from nvtopo.launch.ring import ring_order

__all__ = [
    "AXES",
    "LaunchPlan",
    "NodeLaunch",
    "ParallelSizes",
    "RankInfo",
    "deepspeed_hostfile",
    "node_env",
    "openmpi_hostfile",
    "openmpi_rankfile",
    "parallel_groups",
    "placement_from_json",
    "plan_launch",
    "plan_to_json",
    "rank_map",
    "ring_order",
    "slurm_nodes",
    "torchrun_args",
]
