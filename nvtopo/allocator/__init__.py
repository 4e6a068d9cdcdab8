"""The allocator: exact, gang-aware DRA allocation beside the stock kube-scheduler.

Pods that ask for nvtopo placement carry the scheduling gate ``topology.nvtopo.dev/placement``;
pods sharing the label ``topology.nvtopo.dev/gang`` are placed together (size, ``domain``
and ``segment`` as annotations, :mod:`nvtopo.allocator.gang`). When a gang is complete, the
allocator reads the slices and every claim (:mod:`.inventory`), places the gang by Contract 2
with Contract 1 on each node (:mod:`.plan`), writes each claim's ``status.allocation``
behind a journal (:mod:`.journal`), then lifts the gates; the scheduler binds each pod to the
node its claims were allocated on (:mod:`.controller`).

Examples
--------
>>> from nvtopo.allocator import GATE, GANG_LABEL
>>> GATE, GANG_LABEL
('topology.nvtopo.dev/placement', 'topology.nvtopo.dev/gang')
"""

from __future__ import annotations

from nvtopo.allocator.controller import CONDITION, Allocator, PassResult
from nvtopo.allocator.gang import (
    DOMAIN_ANNOTATION,
    GANG_LABEL,
    GATE,
    JOURNAL_ANNOTATION,
    SEGMENT_ANNOTATION,
    SIZE_ANNOTATION,
    Gang,
    GangError,
)
from nvtopo.allocator.inventory import Inventory, read_inventory
from nvtopo.allocator.plan import ClaimAllocation, GangPlan, plan_gang

__all__ = [
    "CONDITION",
    "DOMAIN_ANNOTATION",
    "GANG_LABEL",
    "GATE",
    "JOURNAL_ANNOTATION",
    "SEGMENT_ANNOTATION",
    "SIZE_ANNOTATION",
    "Allocator",
    "ClaimAllocation",
    "Gang",
    "GangError",
    "GangPlan",
    "Inventory",
    "PassResult",
    "plan_gang",
    "read_inventory",
]
