"""Drive a 4-rack GB200 NVL72 cluster job by job, as a scheduler would."""

import nvtopo

cluster = nvtopo.cluster("gb200-nvl72x4")  # 72 compute trays, 4 NVLink domains (cliques)
state = nvtopo.ClusterState(cluster)

jobs = [
    nvtopo.PlacementRequest(gpus=64, nodes=16, domain="required"),  # a 16-tray NVLink job
    nvtopo.PlacementRequest(gpus=8, nodes=2, domain="required"),
    nvtopo.PlacementRequest(gpus=3),  # a small single-node job
]
allocations = []
for job in jobs:
    alloc = state.allocate(job)
    allocations.append(alloc)
    p = alloc.placement
    print(
        f"{job.gpus:>3} GPUs -> {len(p.nodes)} node(s) in {', '.join(p.cliques)}: "
        f"{p.nodes[0].name} ... {p.nodes[-1].name}"
    )

state.release(allocations[0])
print(
    "after releasing the first job, free GPUs on rack0000-tray00:",
    state.free_gpus("rack0000-tray00"),
)
try:
    state.place(nvtopo.PlacementRequest(gpus=4 * 19, nodes=19, domain="required"))
except nvtopo.InfeasibleError as err:
    print("19 trays in one rack:", err)
