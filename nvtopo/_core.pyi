"""Type stub of the Rust extension ``nvtopo._core`` (checked by ``mypy.stubtest``)."""

from collections.abc import Sequence
from typing import final

__all__ = [
    "DEFAULT_BUDGET",
    "MAX_GPUS",
    "MAX_NVLINKS",
    "ClusterState",
    "Topology",
    "__version__",
    "nvlink_bandwidth",
]

__version__: str
DEFAULT_BUDGET: int
MAX_GPUS: int
MAX_NVLINKS: int

def nvlink_bandwidth(generation: int) -> int:
    """GB/s per direction of one NVLink of ``generation`` (0: unknown)."""

_SelectionTuple = tuple[
    tuple[int, ...],
    int,
    int,
    int,
    int,
    bool,
    tuple[int, int] | None,
    str | None,
    tuple[int, ...],
]
_PlacementTuple = tuple[list[tuple[str, list[int]]], list[str], bool]

@final
class Topology:
    """One node's topology in the core: pair scores, path classes, NUMA keys."""

    def __new__(
        cls,
        ids: Sequence[int],
        generations: Sequence[int],
        pairs: Sequence[tuple[int, int, int, int]],
        numa_keys: Sequence[int],
    ) -> Topology: ...
    def __len__(self) -> int: ...
    def score(self, a: int, b: int) -> int: ...
    def select(
        self,
        k: int,
        available: Sequence[int] | None,
        required: Sequence[int],
        budget: int | None,
    ) -> _SelectionTuple: ...
    def partition(self, k: int) -> list[list[int]]: ...

@final
class ClusterState:
    """Free GPUs and ComputeDomains of a cluster; Contract 2 placements over it."""

    def __new__(
        cls, nodes: Sequence[tuple[str, Topology, str | None, Sequence[int], bool]]
    ) -> ClusterState: ...
    def __len__(self) -> int: ...
    @property
    def topology_count(self) -> int: ...
    def place(self, gpus: int, nodes: int | None, domain: str) -> _PlacementTuple: ...
    def allocate(
        self, gpus: int, nodes: int | None, domain: str
    ) -> tuple[int, _PlacementTuple]: ...
    def release(self, id: int) -> None: ...
    def free_gpus(self, node: str) -> list[int]: ...
    def in_compute_domain(self, node: str) -> bool: ...
    def free_count(self) -> int: ...
    def allocations(self) -> list[int]: ...
