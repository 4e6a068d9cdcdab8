"""What makes one GPU unfit to hand out: NVLinks down or degraded, fabric health degraded.

These findings become DRA device taints in nvtopo's ResourceSlices
(:mod:`nvtopo.dra.taints`), ``DeviceTaintRule`` objects for NVIDIA's devices in companion
mode, and the GPUs that placement leaves out of a node's usable capacity
(:attr:`nvtopo.model.ClusterNode.free`). A GPU with a finding keeps its device: only new
claims that do not tolerate the taint stay off it.

Two kinds, each the key of one taint:

- ``nvlink-degraded``: at least one of the GPU's NVLinks is down or degraded (NVML link
  state), so NVLink bandwidth to its peers is below what the topology promises;
- ``fabric-unhealthy``: the GPU's multi-node fabric health is Degraded or Unhealthy (NVML's
  fabric health mask), the state in which NCCL over multi-node NVLink fails at scale while
  the driver's own probes stay green.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nvtopo.model.health import link_problems, links_not_up

if TYPE_CHECKING:
    from nvtopo.model.topology import Gpu, NodeTopology

__all__ = ["FINDING_KINDS", "FindingKind", "GpuFinding", "gpu_findings", "unfit_gpus"]

FindingKind = Literal["nvlink-degraded", "fabric-unhealthy"]
FINDING_KINDS: tuple[FindingKind, ...] = ("nvlink-degraded", "fabric-unhealthy")


@dataclass(frozen=True)
class GpuFinding:
    """One reason a GPU should not be handed out; ``reason`` is short and label-safe
    (``nvlinks-3-4-down``, ``fabric-health-degraded``) because it becomes a taint value."""

    gpu: int
    kind: FindingKind
    reason: str
    #: The same in words (``NVLinks 4, 5 down``), for ``dump`` and ``doctor``.
    words: str = ""

    @property
    def text(self) -> str:
        """``GPU 1: nvlink-degraded (NVLinks 4, 5 down)``."""
        return f"GPU {self.gpu}: {self.kind} ({self.words or self.reason})"


def _links_reason(gpu: Gpu) -> str | None:
    parts = []
    for state, links in links_not_up(gpu).items():
        if len(links) > 4:  # a taint value is a label value (63 characters): count them
            parts.append(f"{len(links)}-of-{len(gpu.nvlinks)}-nvlinks-{state}")
        else:
            noun = "nvlink" if len(links) == 1 else "nvlinks"
            parts.append(f"{noun}-{'-'.join(links)}-{state}")
    return "-".join(parts) if parts else None


def gpu_findings(gpu: Gpu) -> tuple[GpuFinding, ...]:
    """Every finding on ``gpu`` (empty for a healthy GPU).

    Examples
    --------
    >>> from nvtopo.model import Fabric, Gpu, NvLink
    >>> g = Gpu(0, nvlinks=(NvLink(0), NvLink(1, state="down")),
    ...         fabric=Fabric(state="completed", health="degraded"))
    >>> [(f.kind, f.reason) for f in gpu_findings(g)]
    [('nvlink-degraded', 'nvlink-1-down'), ('fabric-unhealthy', 'fabric-health-degraded')]
    """
    found: list[GpuFinding] = []
    links = _links_reason(gpu)
    if links is not None:
        words = "; ".join(link_problems(gpu))
        found.append(GpuFinding(gpu.index, "nvlink-degraded", links, words))
    fabric = gpu.fabric
    if fabric is not None and fabric.health in ("degraded", "unhealthy"):
        reason = f"fabric-health-{fabric.health}"
        words = f"fabric health {fabric.health.capitalize()}"
        if fabric.health_mask:
            reason += f"-mask-{fabric.health_mask:#x}"
            words += f", mask {fabric.health_mask:#x}"
        found.append(GpuFinding(gpu.index, "fabric-unhealthy", reason, words))
    return tuple(found)


def unfit_gpus(topology: NodeTopology) -> frozenset[int]:
    """Indices of the GPUs of ``topology`` with any finding."""
    return frozenset(g.index for g in topology.gpus if gpu_findings(g))
