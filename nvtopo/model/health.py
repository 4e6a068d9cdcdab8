"""The one clique and health rule: when a GPU, and so a node, counts in an NVLink domain.

Every caller — the cluster model, placement, ComputeDomain plans, IMEX, slices, exports —
asks this module, so they all see the same cliques and say the same thing in the same words.

A GPU counts in a multi-node NVLink domain (clique ``"<clusterUUID>.<cliqueId>"``) when its
fabric registration is Completed with a success status, its cluster UUID is not all zeros and
its fabric health is not Unhealthy (:func:`fabric_problem`). A node counts in a clique when
every GPU counts and all agree on one clique, and a clique declared for the node (a cluster
file, a node label) agrees with them (:func:`node_clique`). Where no GPU carries fabric info
(a cluster read back from labels, a hand-written file) the declared clique counts alone.

Joining a ComputeDomain asks one thing more, working NVLinks (:func:`fabric_problems`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nvtopo.model.topology import Fabric, Gpu, NodeTopology

__all__ = [
    "ZERO_CLUSTER_UUID",
    "CliqueVerdict",
    "fabric_problem",
    "fabric_problems",
    "gpu_fabric_problems",
    "gpu_list",
    "link_problems",
    "links_not_up",
    "node_clique",
    "state_text",
    "status_text",
]

#: The cluster UUID of a fabric that was never set up; it names no NVLink domain.
ZERO_CLUSTER_UUID = "00000000-0000-0000-0000-000000000000"

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


def fabric_problem(fabric: Fabric) -> str | None:
    """Why a GPU with this fabric record is in no multi-node NVLink domain (None: it is).

    Examples
    --------
    >>> from nvtopo.model import Fabric
    >>> fabric_problem(Fabric(cluster_uuid="a" * 8, clique_id=1, state="in_progress"))
    'fabric state In Progress'
    """
    if fabric.state != "completed":
        return f"fabric state {state_text(fabric.state)}"
    if status_text(fabric.status) != "Success":
        return f"fabric status {status_text(fabric.status)}"
    if fabric.cluster_uuid == ZERO_CLUSTER_UUID:
        return "fabric cluster UUID is all zeros"
    if fabric.health == "unhealthy":
        return "fabric health Unhealthy"
    return None


@dataclass(frozen=True)
class CliqueVerdict:
    """A node's NVLink domain after the rule: ``clique`` or, where it has none, ``reason``.

    ``reason`` is None both for a node in a clique and for a node that simply has no
    multi-node fabric (a DGX H100): only a node that *looks* like it should be in a clique
    and is not gets a reason.
    """

    clique: str | None
    reason: str | None = None


def node_clique(topology: NodeTopology, declared: str | None = None) -> CliqueVerdict:
    """The clique ``topology``'s node counts in, with the reason when it counts in none.

    ``declared`` is the clique a cluster file or a node label gives the node; it must agree
    with what the GPUs report.

    Examples
    --------
    >>> import nvtopo
    >>> node_clique(nvtopo.system("dgx-h100"))
    CliqueVerdict(clique=None, reason=None)
    >>> tray = nvtopo.system("gb200-tray")
    >>> node_clique(tray).clique == tray.gpus[0].fabric.clique
    True
    >>> node_clique(tray, declared="other.1").reason  # doctest: +ELLIPSIS
    'declared clique other.1, GPUs say ...'
    """
    if declared is not None and declared.startswith(ZERO_CLUSTER_UUID):
        return CliqueVerdict(None, f"declared clique {declared} has an all-zero cluster UUID")
    with_fabric = [g for g in topology.gpus if g.fabric is not None]
    if not with_fabric:
        return CliqueVerdict(declared)
    if len(with_fabric) != len(topology.gpus):
        missing = [g.index for g in topology.gpus if g.fabric is None]
        return CliqueVerdict(None, f"{gpu_list(missing)}: no fabric info while other GPUs have")
    by_problem: dict[str, list[int]] = {}
    for g in with_fabric:
        assert g.fabric is not None
        problem = fabric_problem(g.fabric)
        if problem is not None:
            by_problem.setdefault(problem, []).append(g.index)
    if by_problem:
        return CliqueVerdict(
            None, "; ".join(f"{gpu_list(gpus)}: {why}" for why, gpus in by_problem.items())
        )
    first_gpu: dict[str, int] = {}
    for g in with_fabric:
        assert g.fabric is not None
        first_gpu.setdefault(_clique_of(g.fabric), g.index)
    if len(first_gpu) > 1:
        says = ", ".join(f"GPU {gpu} says clique {c}" for c, gpu in first_gpu.items())
        return CliqueVerdict(None, says)
    clique = next(iter(first_gpu))
    if declared is not None and declared != clique:
        return CliqueVerdict(None, f"declared clique {declared}, GPUs say {clique}")
    return CliqueVerdict(clique)


def _clique_of(fabric: Fabric) -> str:
    return f"{fabric.cluster_uuid}.{fabric.clique_id}"


def gpu_fabric_problems(gpu: Gpu, *, require_fabric: bool = True) -> tuple[str, ...]:
    """What keeps ``gpu`` out of a multi-node NVLink domain (empty when nothing does).

    ``require_fabric=False`` lets a GPU without fabric info pass: a cluster read back from
    node labels carries the clique but not each GPU's fabric record.
    """
    if gpu.fabric is None:
        return ("no multi-node NVLink fabric info",) if require_fabric else ()
    problem = fabric_problem(gpu.fabric)
    return () if problem is None else (problem,)


def links_not_up(gpu: Gpu) -> dict[str, list[str]]:
    """``{"down": [...], "degraded": [...]}``: link numbers by state, states with none left out."""
    found: dict[str, list[str]] = {}
    for state in ("down", "degraded"):
        links = [str(link.link) for link in gpu.nvlinks if link.state == state]
        if links:
            found[state] = links
    return found


def link_problems(gpu: Gpu) -> tuple[str, ...]:
    """``NVLinks 3, 4 down`` style notes for links that are not up (empty when all are)."""
    return tuple(
        f"{'NVLink' if len(links) == 1 else 'NVLinks'} {', '.join(links)} {state}"
        for state, links in links_not_up(gpu).items()
    )


def fabric_problems(topology: NodeTopology, *, require_fabric: bool = True) -> tuple[str, ...]:
    """Every reason ``topology``'s node cannot join a ComputeDomain, one per line.

    The clique rule of :func:`node_clique`, per GPU, plus working NVLinks. Reasons that
    several GPUs share are merged (``GPUs 0, 2: fabric state In Progress``). The tuple is
    empty when the node qualifies.

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
    problems = [f"{gpu_list(gpus)}: {reason}" for reason, gpus in by_reason.items()]
    verdict = node_clique(topology)
    if verdict.reason is not None and " says clique " in verdict.reason:
        problems.append(f"GPUs disagree on the clique ({verdict.reason})")
    return tuple(problems)


def gpu_list(indices: list[int]) -> str:
    """``GPU 2``, ``GPUs 0, 2`` or ``GPUs 0-7`` (a run of three or more is shortened).

    Examples
    --------
    >>> gpu_list([0, 1, 2, 3]), gpu_list([0, 2]), gpu_list([5])
    ('GPUs 0-3', 'GPUs 0, 2', 'GPU 5')
    """
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
