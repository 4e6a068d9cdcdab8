"""Pick the best 4 GPUs of a DGX H100 with some GPUs busy, and see why they are best."""

import nvtopo

topo = nvtopo.system("dgx-h100")
busy = {1, 6}
free = [g for g in topo.gpu_indices if g not in busy]
sel = nvtopo.select_gpus(topo, 4, available=free)
print("free GPUs:", free)
print("chosen:", sel.gpus, "optimal:", sel.optimal)
print(sel.explain())

# A B200 whose GPU 2 has lost its NVLinks: nvtopo never puts GPU 2 in an NVLink set.
from nvtopo.catalog import with_lost_nvlinks  # noqa: E402

sick = with_lost_nvlinks(nvtopo.system("hgx-b200"), [2])
print("B200 with GPU 2 degraded, 4 GPUs:", nvtopo.select_gpus(sick, 4).gpus)
print("partition into pairs:", nvtopo.partition(sick, 2))
