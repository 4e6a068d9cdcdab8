"""Whether a node's GPUs may take part in a multi-node NVLink (IMEX) domain.

One rule serves ``nvtopo imex check`` on a node and the health gating of
:func:`nvtopo.compute_domain.plan` on a cluster, so both say the same thing in the same
words. A node qualifies when every GPU's fabric registration is Completed with a success
status, its cluster UUID is not all zeros, its fabric health is not Unhealthy, all GPUs
agree on one clique, and no GPU has an NVLink down or degraded.
"""

from __future__ import annotations

from nvtopo.model import ZERO_CLUSTER_UUID, Fabric, Gpu, NodeTopology

__all__ = [
    "fabric_problems",
    "gpu_fabric_problems",
    "link_problems",
    "state_text",
    "status_text",
]

_STATE_WORDS = {
    "completed": "Completed",
    "in_progress": "In Progress",
    "not_started": "Not Started",
    "not_supported": "Not Supported",
}


def status_text(status: str) -> str:
    """NVML's fabric status in words, whichever spelling the source used.

    The NVML source records ``nvmlReturn_t`` names in snake case, ``nvidia-smi -q`` reports
    them as ``NVML_ERROR_*``; both read the same here.

    Examples
    --------
    >>> status_text("insufficient_resources"), status_text("NVML_ERROR_INSUFFICIENT_RESOURCES")
    ('Insufficient Resources', 'Insufficient Resources')
    >>> status_text("success")
    'Success'
    """
    word = status.strip()
    if word.upper().startswith("NVML_ERROR_"):
        word = word[len("NVML_ERROR_") :]
    return " ".join(part.capitalize() for part in word.replace("_", " ").split())


def state_text(state: str) -> str:
    """The fabric state as ``nvidia-smi -q`` prints it (``in_progress`` → ``In Progress``)."""
    return _STATE_WORDS.get(state, state)


def _fabric_problem(fabric: Fabric) -> str | None:
    if fabric.state != "completed":
        return f"fabric state {state_text(fabric.state)}"
    if status_text(fabric.status) != "Success":
        return f"fabric status {status_text(fabric.status)}"
    if fabric.cluster_uuid == ZERO_CLUSTER_UUID:
        return "fabric cluster UUID is all zeros"
    if fabric.health == "unhealthy":
        return "fabric health Unhealthy"
    return None


def gpu_fabric_problems(gpu: Gpu, *, require_fabric: bool = True) -> tuple[str, ...]:
    """What keeps ``gpu`` out of a multi-node NVLink domain (empty when nothing does).

    ``require_fabric=False`` lets a GPU without fabric info pass: a cluster read back from
    node labels carries the clique but not each GPU's fabric record.
    """
    problems: list[str] = []
    if gpu.fabric is None:
        if require_fabric:
            problems.append("no multi-node NVLink fabric info")
    else:
        found = _fabric_problem(gpu.fabric)
        if found is not None:
            problems.append(found)
    return tuple(problems)


def link_problems(gpu: Gpu) -> tuple[str, ...]:
    """``NVLinks 3, 4 down`` style notes for links that are not up (empty when all are)."""
    notes = []
    for state in ("down", "degraded"):
        links = [str(link.link) for link in gpu.nvlinks if link.state == state]
        if links:
            noun = "NVLink" if len(links) == 1 else "NVLinks"
            notes.append(f"{noun} {', '.join(links)} {state}")
    return tuple(notes)


def fabric_problems(topology: NodeTopology, *, require_fabric: bool = True) -> tuple[str, ...]:
    """Every reason ``topology``'s node cannot join a multi-node NVLink domain, one per line.

    Reasons that several GPUs share are merged (``GPUs 0, 2: fabric state In Progress``).
    The tuple is empty when the node qualifies.

    Examples
    --------
    >>> import nvtopo
    >>> fabric_problems(nvtopo.system("gb200-tray"))
    ()
    >>> fabric_problems(nvtopo.system("dgx-h100"))
    ('GPUs 0-7: no multi-node NVLink fabric info',)
    """
    by_reason: dict[str, list[int]] = {}
    for gpu in topology.gpus:
        for reason in (
            *gpu_fabric_problems(gpu, require_fabric=require_fabric),
            *link_problems(gpu),
        ):
            by_reason.setdefault(reason, []).append(gpu.index)
    problems = [f"{_gpu_list(gpus)}: {reason}" for reason, gpus in by_reason.items()]
    cliques = {g.fabric.clique for g in topology.gpus if g.fabric is not None}
    cliques.discard(None)
    if len(cliques) > 1:
        problems.append(f"GPUs disagree on the clique ({', '.join(sorted(map(str, cliques)))})")
    return tuple(problems)


def _gpu_list(indices: list[int]) -> str:
    """``GPU 2``, ``GPUs 0, 2`` or ``GPUs 0-7`` (a run of three or more is shortened)."""
    if len(indices) == 1:
        return f"GPU {indices[0]}"
    runs: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        if prev - start >= 2:
            runs.append(f"{start}-{prev}")
        else:
            runs.extend(str(x) for x in range(start, prev + 1))
        if i is not None:
            start = prev = i
    return "GPUs " + ", ".join(runs)
