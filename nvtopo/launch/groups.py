"""Parallel groups in Megatron's order: tensor, context, expert, data, pipeline.

Ranks are laid out on a grid whose fastest-varying axis is tensor parallel (tp), then
context (cp), expert (ep), data (dp) and pipeline (pp) — Megatron-LM's default order
``tp-cp-ep-dp-pp``. A group of one axis is the set of ranks that differ only along it. With
ranks numbered clique by clique and node by node (:mod:`nvtopo.launch.plan`), a tp group is
a run of ``tp`` consecutive ranks, so it stays on one node when ``tp`` divides the GPUs per
node, and every tp, cp and ep group stays in one clique when ``tp × cp × ep`` divides each
clique's share of the ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nvtopo.exceptions import SelectionError

__all__ = ["AXES", "CHECKED_AXES", "Axis", "ParallelSizes", "parallel_groups"]

Axis = Literal["tp", "cp", "ep", "dp", "pp"]
#: Megatron's order, fastest-varying first.
AXES: tuple[Axis, ...] = ("tp", "cp", "ep", "dp", "pp")
#: Axes whose groups must stay on one node or in one clique.
CHECKED_AXES: tuple[Axis, ...] = ("tp", "cp", "ep")


@dataclass(frozen=True)
class ParallelSizes:
    """Group sizes of each axis; ``dp`` is what the world size leaves.

    Examples
    --------
    >>> ParallelSizes.for_world(64, tp=4, ep=8).dp
    2
    """

    tp: int = 1
    cp: int = 1
    ep: int = 1
    dp: int = 1
    pp: int = 1

    @classmethod
    def for_world(
        cls, world: int, *, tp: int = 1, cp: int = 1, ep: int = 1, pp: int = 1
    ) -> ParallelSizes:
        """Sizes for ``world`` ranks, ``dp = world / (tp × cp × ep × pp)``."""
        for name, value in (("tp", tp), ("cp", cp), ("ep", ep), ("pp", pp)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SelectionError(f"--{name} must be a positive int, got {value!r}")
        model = tp * cp * ep * pp
        if world % model:
            raise SelectionError(
                f"{world} ranks do not split into tp {tp} × cp {cp} × ep {ep} × pp {pp} "
                f"= {model} (dp must be a whole number)"
            )
        return cls(tp=tp, cp=cp, ep=ep, dp=world // model, pp=pp)

    def size(self, axis: Axis) -> int:
        """The group size of ``axis``."""
        return int(getattr(self, axis))

    @property
    def world(self) -> int:
        """Ranks in total."""
        return self.tp * self.cp * self.ep * self.dp * self.pp


def parallel_groups(sizes: ParallelSizes) -> dict[Axis, tuple[tuple[int, ...], ...]]:
    """Every group of every axis, each a sorted tuple of ranks, groups by their first rank.

    Examples
    --------
    >>> g = parallel_groups(ParallelSizes(tp=2, dp=2))
    >>> g["tp"], g["dp"]
    (((0, 1), (2, 3)), ((0, 2), (1, 3)))
    """
    dims = [sizes.size(a) for a in AXES]
    strides = [1]
    for d in dims[:-1]:
        strides.append(strides[-1] * d)
    out: dict[Axis, tuple[tuple[int, ...], ...]] = {}
    for k, axis in enumerate(AXES):
        groups = []
        for rank in range(sizes.world):
            if (rank // strides[k]) % dims[k]:
                continue  # not the first rank of its group along this axis
            groups.append(tuple(rank + i * strides[k] for i in range(dims[k])))
        out[axis] = tuple(sorted(groups))
    return out
