"""The one table of limits: how large each number and each input may be.

Every reader checks against this table: the JSON Schema (its ``maximum`` values are these,
checked by a test), the ``nvidia-smi`` parsers and the model itself. A number inside its
limit survives every hop unchanged: an ``int64`` in the apiserver, a ``u32`` in NVML, a
DRA quantity (``memoryMiB`` × 2**20 bytes stays far inside ``int64``). A number outside is
refused where it is read, with one line naming it, so that what nvtopo writes is what the
apiserver keeps and a file nvtopo wrote always reads back.

Sizes bound the work: the parsers refuse an impossible input at once, before work that
grows with its square.

Examples
--------
>>> LIMITS["memoryMiB"].maximum
1073741824
>>> check("cliqueId", 7, where="GPU 0")
7
>>> check("cliqueId", 2**40, where="GPU 0")
Traceback (most recent call last):
...
nvtopo.exceptions.TopologyError: GPU 0: cliqueId 1099511627776 is out of range (0 to 4294967295)
"""

from __future__ import annotations

from dataclasses import dataclass

from nvtopo._core import MAX_GPUS as _CORE_MAX_GPUS
from nvtopo._core import MAX_NVLINKS as _CORE_MAX_NVLINKS
from nvtopo.exceptions import TopologyError

__all__ = [
    "LIMITS",
    "MAX_CLUSTER_NODES",
    "MAX_GPUS",
    "MAX_INPUT_BYTES",
    "MAX_NICS",
    "Limit",
    "check",
]

_U32 = 2**32 - 1

#: GPUs one node read from a capture or file may have: the core's set width. (The model
#: itself takes more, for synthetic nodes that only DRA slices are made of.)
MAX_GPUS: int = _CORE_MAX_GPUS
#: NICs one node may have (the largest boxes carry a few dozen RDMA ports).
MAX_NICS = 256
#: Nodes one cluster may have: 4,096 NVL72 racks are 73,728 trays.
MAX_CLUSTER_NODES = 131_072
#: Largest input file or stream read (a 73,728-node cluster document is far smaller).
MAX_INPUT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Limit:
    """The inclusive range of one number, by its JSON field name."""

    minimum: int
    maximum: int
    #: What bounds it (for the README and for people reading a refusal).
    why: str


LIMITS: dict[str, Limit] = {
    "index": Limit(0, 1023, "GPU indices of a node (NVML counts far fewer)"),
    "memoryMiB": Limit(0, 2**30, "1 PiB: bytes stay inside an int64 DRA quantity"),
    "numaNode": Limit(0, 1023, "Linux MAX_NUMNODES"),
    "gpuNumaId": Limit(0, 1023, "Linux MAX_NUMNODES"),
    "cpu": Limit(0, 65_535, "CPU ids of a cpulist (Linux NR_CPUS is at most 8,192)"),
    "minor": Limit(0, 4095, "/dev/nvidia<minor>"),
    "nvlinkGeneration": Limit(1, 9, "NVLink generations"),
    "link": Limit(0, 63, "NVLink ports of a GPU (18 today)"),
    "version": Limit(0, 9, "NVLink version of a link"),
    "nvlinks": Limit(0, _CORE_MAX_NVLINKS, "bonded NVLinks of a pair (the core's bound)"),
    "gpuLinks": Limit(0, _CORE_MAX_NVLINKS, "links of a GPU to one NVSwitch"),
    "cliqueId": Limit(0, _U32, "NVML's unsigned int"),
    "healthMask": Limit(0, _U32, "NVML's unsigned int"),
    "slot": Limit(0, _U32, "NVML's unsigned int"),
    "tray": Limit(0, _U32, "NVML's unsigned int"),
    "hostId": Limit(0, _U32, "NVML's unsigned int"),
    "moduleId": Limit(0, _U32, "NVML's unsigned int"),
}


def check(name: str, value: int, *, where: str) -> int:
    """``value`` when it is inside the limit of ``name``; else :class:`TopologyError`."""
    limit = LIMITS[name]
    if not limit.minimum <= value <= limit.maximum:
        raise TopologyError(
            f"{where}: {name} {value} is out of range ({limit.minimum} to {limit.maximum})"
        )
    return value
