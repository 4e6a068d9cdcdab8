"""Type stub of the Rust extension ``nvtopo._core`` (checked by ``mypy.stubtest``)."""

from collections.abc import Iterable, Sequence
from typing import Any, final

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_DEADLINE",
    "EXACT_GPUS",
    "MAX_GPUS",
    "MAX_NVLINKS",
    "ClusterState",
    "Selection",
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

DEFAULT_DEADLINE: float
EXACT_GPUS: int

@final
class Selection:
    """The GPU set Contract 1 picked, with the measures it was compared by."""

    def __new__(
        cls,
        gpus: Sequence[int],
        bottleneck: int,
        total: int,
        numa_keys: int,
        cut: int,
        optimal: bool,
        bottleneck_pair: tuple[int, int] | None,
        bottleneck_path: str | None,
        remaining: Sequence[int] = ...,
        unknown_pairs: Sequence[tuple[int, int]] = ...,
        gap: float = 0.0,
    ) -> Selection: ...
    @property
    def gpus(self) -> tuple[int, ...]: ...
    @property
    def bottleneck(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def numa_keys(self) -> int: ...
    @property
    def cut(self) -> int: ...
    @property
    def optimal(self) -> bool: ...
    @property
    def gap(self) -> float: ...
    @property
    def bottleneck_pair(self) -> tuple[int, int] | None: ...
    @property
    def bottleneck_path(self) -> str | None: ...
    @property
    def remaining(self) -> tuple[int, ...]: ...
    @property
    def unknown_pairs(self) -> tuple[tuple[int, int], ...]: ...
    def explain(self) -> str: ...
    def with_unknown_paths(
        self, pairs: Sequence[tuple[int, int]], path: str | None
    ) -> Selection: ...
    def to_json(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

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
        available: Iterable[int] | None = None,
        required: Iterable[int] | None = None,
        budget: int | None = None,
        deadline: float | None = None,
    ) -> Selection: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
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
