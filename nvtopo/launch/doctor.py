"""``nvtopo doctor``: can this node run a multi-node NVLink job, and if not, what to do.

The verdict is :func:`nvtopo.imex.check`'s (the one clique and health rule: fabric state,
status, all-zero cluster UUID, health, clique agreement, NVLinks down or degraded, IMEX
channel devices); the doctor adds what to do about each reason, the per-GPU facts a
launcher needs (health mask, NUMA node, CPUs, nearest NIC) and reads the fabric captures
users paste (``nvidia-smi -q``, ``nvidia-smi nvlink -s``, ``nvidia-smi nvlink -R``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

# The verdict is imex check's, which applies the one clique/health rule
# (nvtopo.model.health.fabric_problems).
from nvtopo.dra.taints import taint_text
from nvtopo.exceptions import ParseError
from nvtopo.formats._cpulist import compress_cpulist
from nvtopo.formats.smi_fabric_text import looks_like_smi_query, parse_smi_fabric_text
from nvtopo.formats.smi_nvlink import GpuLinks, looks_like_nvlink, merge_links, parse_nvlink
from nvtopo.imex.check import CHANNELS_DIR, ImexCheck, check
from nvtopo.launch.plan import nearest_nics
from nvtopo.model import Gpu, NodeTopology
from nvtopo.model.gpu_health import gpu_findings

__all__ = ["DoctorReport", "Finding", "Level", "doctor", "topology_from_captures"]

Level = Literal["error", "warning", "info"]

# (words in a reason of the health rule, what to do about it)
_FIXES: tuple[tuple[str, str], ...] = (
    (
        "no multi-node NVLink fabric info",
        "this node has no multi-node NVLink fabric; run NVLink jobs inside the node only",
    ),
    (
        "fabric state Not Supported",
        "the GPU or driver does not report a multi-node NVLink fabric; run NVLink jobs inside "
        "the node only",
    ),
    (
        "fabric state Not Started",
        "start the fabric manager (systemctl start nvidia-fabricmanager) or check the rack's "
        "NVLink switch management (NMX)",
    ),
    (
        "fabric state In Progress",
        "fabric registration is still running: wait, then rerun; if it stays, check the fabric "
        "manager log",
    ),
    (
        "fabric status",
        "fabric registration failed: check the fabric manager log and the rack's NVLink "
        "partition, then reset the GPU or reboot",
    ),
    (
        "cluster UUID is all zeros",
        "the GPU was never given an NVLink cluster: check the fabric manager and the NVLink "
        "partition of this tray",
    ),
    (
        "fabric health Unhealthy",
        "drain the node and report the health mask to the rack's operator; NCCL can hang on an "
        "unhealthy fabric",
    ),
    (
        "down",
        "drain the node; `nvidia-smi nvlink -s` lists the inactive links to reseat or replace",
    ),
    ("degraded", "drain the node; the link runs below its rate (see `nvidia-smi nvlink -e`)"),
    (
        "disagree on the clique",
        "the GPUs of this node sit in different NVLink partitions: fix the partition so the "
        "tray is in one",
    ),
    ("no GPUs found", "check that the driver is loaded and the GPUs are visible (nvidia-smi -L)"),
    (
        "no IMEX channel devices",
        "create /dev/nvidia-caps-imex-channels/channel0 (the driver's NVreg_CreateImexChannel0=1) "
        "or run under a ComputeDomain",
    ),
)
_DEFAULT_FIX = "see `nvtopo imex check` for the fabric records"


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found: how bad, what, and what to do."""

    level: Level
    what: str
    fix: str | None = None

    def line(self) -> str:
        """``level: what (fix: ...)``."""
        return f"{self.level}: {self.what}" + (f" -> {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class DoctorReport:
    """The findings on one node and the verdict (``ready``: a multi-node NVLink job can run)."""

    node: str | None
    check: ImexCheck
    findings: tuple[Finding, ...]

    @property
    def ready(self) -> bool:
        return self.check.can_join

    def verdict(self) -> str:
        """The last line of the report."""
        who = self.node or "this node"
        if self.ready:
            return f"verdict: {who} can run a multi-node NVLink job in clique {self.check.clique}"
        errors = sum(f.level == "error" for f in self.findings)
        plural = "s" if errors != 1 else ""
        return f"verdict: {who} cannot run a multi-node NVLink job ({errors} error{plural})"

    def lines(self) -> list[str]:
        """The report, one finding per line, ending with the verdict."""
        return [f.line() for f in self.findings] + [self.verdict()]

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "ready": self.ready,
            "clique": self.check.clique,
            "findings": [{"level": f.level, "what": f.what, "fix": f.fix} for f in self.findings],
            "imex": self.check.to_json(),
        }


def _fix(reason: str) -> str:
    return next((fix for words, fix in _FIXES if words in reason), _DEFAULT_FIX)


def _affinity(topology: NodeTopology, gpu: Gpu, nics: dict[int, str | None]) -> str:
    parts = []
    numa = gpu.numa_affinity or ((gpu.numa_node,) if gpu.numa_node is not None else ())
    if numa:
        parts.append("NUMA " + compress_cpulist(numa))
    if gpu.cpu_affinity:
        parts.append(f"CPUs {gpu.cpu_affinity}")
    nic = nics.get(gpu.index)
    if nic is not None:
        position = topology.gpu_indices.index(gpu.index)
        path = next(n.gpu_paths[position] for n in topology.nics if (n.device or n.name) == nic)
        parts.append(f"NIC {nic} ({path})")
    if gpu.fabric is not None:
        parts.append(f"fabric health mask 0x{gpu.fabric.health_mask:x}")
    return f"GPU {gpu.index}: " + (", ".join(parts) or "no locality or fabric facts")


def doctor(
    topology: NodeTopology,
    *,
    channels_dir: str | os.PathLike[str] = CHANNELS_DIR,
    require_channel: bool = False,
) -> DoctorReport:
    """The pre-flight report of ``topology``'s node.

    Examples
    --------
    >>> import nvtopo
    >>> r = doctor(nvtopo.system("gb200-tray"), channels_dir="/nonexistent")
    >>> r.ready, r.findings[0].level
    (True, 'warning')
    """
    result = check(topology, channels_dir=channels_dir, require_channel=require_channel)
    findings = [Finding("error", reason, _fix(reason)) for reason in result.reasons]
    findings.extend(Finding("warning", warning, _fix(warning)) for warning in result.warnings)
    for gpu in topology.gpus:
        for found in gpu_findings(gpu):
            findings.append(
                Finding(
                    "warning",
                    f"{found.text}: its device carries the taint {taint_text(found)} (NoSchedule)",
                    "the scheduler gives this GPU only to claims that tolerate the taint; "
                    "nvtopo publish lifts it once the GPU recovers",
                )
            )
    nics = nearest_nics(topology, topology.gpu_indices)
    for gpu in topology.gpus:
        findings.append(Finding("info", _affinity(topology, gpu, nics)))
    knows_locality = any(
        g.cpu_affinity or g.numa_affinity or g.numa_node is not None for g in topology.gpus
    )
    if knows_locality and not any(nic.gpu_paths for nic in topology.nics):
        findings.append(
            Finding(
                "warning",
                "no NIC next to any GPU is known",
                "traffic between cliques goes over whatever network NCCL finds; "
                "set NCCL_IB_HCA by hand",
            )
        )
    return DoctorReport(topology.name, result, tuple(findings))


def topology_from_captures(
    captures: Sequence[tuple[str, str]], base: NodeTopology | None = None
) -> NodeTopology:
    """A node from pasted captures: ``(text, where)`` pairs of ``nvidia-smi -q``,
    ``nvidia-smi nvlink -s`` and ``nvidia-smi nvlink -R`` output, over ``base`` if given.

    The ``-q`` report gives the GPUs and fabric records (replacing ``base``'s fabric by
    GPU UUID, else by index); ``nvlink -s`` and ``-R`` give each GPU's links.
    """
    status: dict[str, GpuLinks] = {}
    remote: dict[str, GpuLinks] = {}
    node = base
    for text, where in captures:
        if looks_like_smi_query(text):
            fabric_node = parse_smi_fabric_text(text, source=where)
            node = fabric_node if node is None else _with_fabric(node, fabric_node)
            continue
        kind = looks_like_nvlink(text)
        if kind is None and not text.strip():
            kind = "status"  # a machine without NVLinks prints nothing to `nvlink -s`
        if kind is None:
            raise ParseError(
                "not a capture nvtopo reads: expected the output of `nvidia-smi -q`, "
                "`nvidia-smi nvlink -s` or `nvidia-smi nvlink -R`",
                source=where,
            )
        target = status if kind == "status" else remote
        for gpu in parse_nvlink(text, kind, source=where):
            target[gpu.uuid] = gpu
    if node is None:
        listed = {**remote, **status}
        if not listed:
            raise ParseError(
                "no GPUs in the captures: add the output of `nvidia-smi -q`", source=captures[0][1]
            )
        ordered = sorted(listed.values(), key=lambda g: g.index)
        node = NodeTopology(gpus=tuple(Gpu(g.index, uuid=g.uuid, name=g.name) for g in ordered))
    if not status and not remote:
        return node
    gpus = []
    for each in node.gpus:
        s = _find(status, each)
        r = _find(remote, each)
        if s is None and r is None:
            gpus.append(each)
            continue
        links = merge_links(s.links if s else (), r.links if r else ())
        gpus.append(replace(each, nvlinks=links))
    return node.replace_gpus(gpus)


def _find(table: dict[str, GpuLinks], gpu: Gpu) -> GpuLinks | None:
    if gpu.uuid is not None and gpu.uuid in table:
        return table[gpu.uuid]
    return next((g for g in table.values() if g.index == gpu.index), None)


def _with_fabric(node: NodeTopology, fabric_node: NodeTopology) -> NodeTopology:
    by_uuid = {g.uuid: g for g in fabric_node.gpus if g.uuid}
    gpus = []
    for gpu in node.gpus:
        match = by_uuid.get(gpu.uuid) if gpu.uuid else None
        if match is None and gpu.index < len(fabric_node.gpus):
            match = fabric_node.gpus[gpu.index]
        gpus.append(replace(gpu, fabric=match.fabric) if match is not None else gpu)
    return node.replace_gpus(gpus)
