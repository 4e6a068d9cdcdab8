"""Read a real `nvidia-smi topo -m` capture and look at it as a graph and as matrices."""

from pathlib import Path

import nvtopo
from nvtopo.formats.views import bandwidth_matrix, to_networkx

here = Path(__file__).resolve().parent.parent
text = (here / "tests" / "data" / "gb200-tray-topo-m.txt").read_text()
body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
topo = nvtopo.NodeTopology.from_nvidia_smi(body, source="gb200-tray-topo-m.txt")
print("GPUs:", topo.gpu_indices, "NUMA keys:", sorted(set(topo.numa_keys)))
print("NVLink GB/s per direction (NVLink generation unknown, so 25 per link):")
print(bandwidth_matrix(topo))
graph = to_networkx(topo)
print("graph:", graph.number_of_nodes(), "nodes,", graph.number_of_edges(), "edges")
print("best pair:", nvtopo.select_gpus(topo, 2).gpus)
