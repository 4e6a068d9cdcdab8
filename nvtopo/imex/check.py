"""``nvtopo imex check``: can this node join a multi-node NVLink (IMEX) job?

The answer comes from each GPU's fabric record (NVML's ``nvmlDeviceGetGpuFabricInfoV``, or
the same fields from ``nvidia-smi -q`` or an nvtopo JSON file) and the IMEX channel devices
the driver exposes under ``/dev/nvidia-caps-imex-channels``. A node can join when every
GPU's fabric state is Completed with a success status, its cluster UUID is not all zeros,
its health is not Unhealthy, all GPUs share one clique, and no NVLink is down or degraded
(:func:`nvtopo.model.health.fabric_problems`). Missing channel devices are reported; they
block the verdict only when asked (``require_channel=True``), because under Kubernetes the
DRA driver creates a channel inside each pod instead of on the host.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvtopo.model import NodeTopology
from nvtopo.model.health import (
    fabric_problems,
    gpu_fabric_problems,
    link_problems,
    state_text,
    status_text,
)

__all__ = [
    "CHANNELS_DIR",
    "ChannelDevice",
    "GpuFabricReport",
    "ImexCheck",
    "channel_devices",
    "check",
]

#: Where the NVIDIA driver creates IMEX channel device nodes.
CHANNELS_DIR = Path("/dev/nvidia-caps-imex-channels")
_CHANNEL_RE = re.compile(r"^channel(\d+)$")


@dataclass(frozen=True)
class ChannelDevice:
    """One IMEX channel device node (``channel<N>``)."""

    path: str
    channel: int
    #: ``(major, minor)`` of a character device; None for anything else.
    device: tuple[int, int] | None


@dataclass(frozen=True)
class GpuFabricReport:
    """One GPU's fabric record in words, and what (if anything) keeps it out."""

    index: int
    uuid: str | None
    state: str
    status: str
    clique: str | None
    cluster_uuid: str | None
    clique_id: int | None
    health: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ImexCheck:
    """The verdict for one node: ``can_join`` and, when it cannot, ``reasons``."""

    node: str | None
    channels_dir: str
    channels: tuple[ChannelDevice, ...]
    gpus: tuple[GpuFabricReport, ...]
    can_join: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def clique(self) -> str | None:
        """The node's clique when every GPU has the same one."""
        cliques = {g.clique for g in self.gpus}
        return cliques.pop() if len(cliques) == 1 else None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (``canJoin``, ``reasons``, ``gpus``, ``channels``)."""
        return {
            "node": self.node,
            "canJoin": self.can_join,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "clique": self.clique,
            "channelsDir": self.channels_dir,
            "channels": [
                {
                    "path": c.path,
                    "channel": c.channel,
                    "device": None if c.device is None else f"{c.device[0]}:{c.device[1]}",
                }
                for c in self.channels
            ],
            "gpus": [
                {
                    "index": g.index,
                    "uuid": g.uuid,
                    "state": g.state,
                    "status": g.status,
                    "clusterUuid": g.cluster_uuid,
                    "cliqueId": g.clique_id,
                    "clique": g.clique,
                    "health": g.health,
                    "problems": list(g.problems),
                }
                for g in self.gpus
            ],
        }

    def explain(self) -> str:
        """One line: the verdict and its reasons."""
        who = self.node or "this node"
        if self.can_join:
            return f"{who} can join a multi-node NVLink job in clique {self.clique}"
        return f"{who} cannot join a multi-node NVLink job: {'; '.join(self.reasons)}"


def channel_devices(
    channels_dir: str | os.PathLike[str] = CHANNELS_DIR,
) -> tuple[ChannelDevice, ...]:
    """The ``channel<N>`` entries of ``channels_dir``, by channel number (empty when none)."""
    folder = Path(channels_dir)
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return ()
    found = []
    for entry in entries:
        match = _CHANNEL_RE.match(entry.name)
        if match is None:
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        device = (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) else None
        found.append(ChannelDevice(str(entry), int(match.group(1)), device))
    return tuple(sorted(found, key=lambda c: c.channel))


def _report(topology: NodeTopology) -> tuple[GpuFabricReport, ...]:
    reports = []
    for gpu in topology.gpus:
        fabric = gpu.fabric
        problems = gpu_fabric_problems(gpu) + link_problems(gpu)
        if fabric is None:
            reports.append(
                GpuFabricReport(
                    gpu.index, gpu.uuid, "none", "none", None, None, None, "unknown", problems
                )
            )
            continue
        reports.append(
            GpuFabricReport(
                index=gpu.index,
                uuid=gpu.uuid,
                state=state_text(fabric.state),
                status=status_text(fabric.status),
                clique=fabric.clique,
                cluster_uuid=fabric.cluster_uuid,
                clique_id=fabric.clique_id,
                health=fabric.health.capitalize(),
                problems=problems,
            )
        )
    return tuple(reports)


def check(
    topology: NodeTopology,
    *,
    channels_dir: str | os.PathLike[str] = CHANNELS_DIR,
    require_channel: bool = False,
) -> ImexCheck:
    """Whether the node of ``topology`` can join a multi-node NVLink job, and why not.

    Parameters
    ----------
    topology
        The node, with its GPUs' fabric info (:func:`nvtopo.discover` reads it live).
    channels_dir
        Where to look for IMEX channel devices.
    require_channel
        Count a missing IMEX channel device as a reason (jobs run without Kubernetes need
        ``channel0`` on the host).

    Examples
    --------
    >>> import nvtopo
    >>> r = check(nvtopo.system("gb200-tray"), channels_dir="/nonexistent")
    >>> r.can_join, r.warnings[0][:28]
    (True, 'no IMEX channel devices in /')
    """
    reasons = list(fabric_problems(topology))
    if not topology.gpus:
        reasons.append("no GPUs found")
    channels = channel_devices(channels_dir)
    warnings: list[str] = []
    if not channels:
        missing = f"no IMEX channel devices in {channels_dir}"
        if require_channel:
            reasons.append(missing)
        else:
            warnings.append(f"{missing} (needed on the host by jobs run without Kubernetes)")
    gpus = _report(topology)
    degraded = [
        str(g.index)
        for g in topology.gpus
        if g.fabric is not None and g.fabric.health == "degraded"
    ]
    if degraded:
        warnings.append(f"fabric health Degraded on GPU {', '.join(degraded)} (limited capacity)")
    return ImexCheck(
        node=topology.name,
        channels_dir=str(channels_dir),
        channels=channels,
        gpus=gpus,
        can_join=not reasons,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )
