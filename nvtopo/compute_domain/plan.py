"""Planning a ComputeDomain: a multi-node NVLink job placed inside one clique.

:func:`plan` places the job by Contract 2 (:func:`nvtopo.place`) on the nodes the health
rule keeps (:func:`nvtopo.imex.place_domain`), then describes the Kubernetes objects that
run it there (:mod:`nvtopo.compute_domain.manifests`): the ComputeDomain, the GPU claim
template (DRA) and a Job whose pods are pinned to the chosen nodes and clique.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

from nvtopo.compute_domain.errors import ComputeDomainError
from nvtopo.compute_domain.manifests import (
    DEFAULT_COMMAND,
    DEFAULT_IMAGE,
    LABEL_COMPUTE_DOMAIN,
    GpuRequest,
    PodPlacement,
    compute_domain_manifest,
    gpu_claim_template,
    gpu_template_name,
    job_manifest,
)
from nvtopo.imex.domain import ExcludedNode, place_domain, summarize_excluded
from nvtopo.model.cluster import Cluster
from nvtopo.place import Domain, Placement, PlacementRequest

__all__ = ["MAX_NAME_LENGTH", "ComputeDomainPart", "ComputeDomainPlan", "plan"]

#: Longest ComputeDomain name: the Job's pods are named ``<name>-<index>-<suffix>`` and
#: their host names ``<name>-<index>`` must stay DNS labels (63 characters).
MAX_NAME_LENGTH = 52
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_EXPLAIN_EXCLUDED = 20


def _check_label(value: str, what: str, limit: int) -> None:
    if not isinstance(value, str) or not _DNS_LABEL_RE.match(value) or len(value) > limit:
        raise ComputeDomainError(
            f"{what} {value!r} must be a DNS label: at most {limit} lower-case letters, "
            "digits and '-', starting and ending with a letter or digit"
        )


@dataclass(frozen=True)
class ComputeDomainPart:
    """One ComputeDomain of a plan: the nodes of one clique, with its own Job."""

    name: str
    nodes: tuple[str, ...]
    cliques: tuple[str, ...]


@dataclass(frozen=True)
class ComputeDomainPlan:
    """A placed multi-node NVLink job and the objects that run it.

    ``placement`` is Contract 2's answer to ``request`` on the healthy nodes; ``excluded``
    lists the nodes that could not take part and why. The manifests are built on demand, as
    fresh dicts, in the order :func:`nvtopo.compute_domain.apply` creates them.
    """

    name: str
    namespace: str
    request: PlacementRequest
    placement: Placement
    excluded: tuple[ExcludedNode, ...]
    gpu_request: GpuRequest = "dra"
    image: str = DEFAULT_IMAGE
    command: tuple[str, ...] | None = DEFAULT_COMMAND
    #: ``"pinned"``: pods pinned to the chosen nodes by affinity; ``"allocator"``: pods
    #: handed to the nvtopo allocator as one gated gang (it places and allocates them).
    pod_placement: PodPlacement = "pinned"

    @property
    def nodes(self) -> tuple[str, ...]:
        """The chosen nodes, in placement order."""
        return tuple(n.name for n in self.placement.nodes)

    @property
    def cliques(self) -> tuple[str, ...]:
        """The cliques of the chosen nodes (one under ``domain="required"``)."""
        return self.placement.cliques

    @property
    def gpus_per_node(self) -> int:
        """GPUs each pod takes (the placement is even)."""
        return len(self.placement.nodes[0].gpus)

    @property
    def parts(self) -> tuple[ComputeDomainPart, ...]:
        """One ComputeDomain per clique the placement touches (one part, named ``name``,
        when the job lies in one clique)."""
        groups = self.placement.compute_domains
        if len(groups) <= 1:
            return (ComputeDomainPart(self.name, self.nodes, self.cliques),)
        return tuple(
            ComputeDomainPart(f"{self.name}-{i}", g.nodes, (g.clique,))
            for i, g in enumerate(groups)
        )

    def compute_domain(self) -> dict[str, Any]:
        """The ``ComputeDomain`` manifest (the first one where the job spans cliques)."""
        return self.compute_domains()[0]

    def compute_domains(self) -> list[dict[str, Any]]:
        """One ``ComputeDomain`` manifest per clique."""
        return [self._owned(self._domain(part)) for part in self.parts]

    def _domain(self, part: ComputeDomainPart) -> dict[str, Any]:
        return compute_domain_manifest(part.name, self.namespace, part.nodes, part.cliques)

    def _owned(self, doc: dict[str, Any]) -> dict[str, Any]:
        # Every object of the plan carries the plan's name, so that one delete finds them
        # all, also those of a second clique's ComputeDomain.
        doc["metadata"]["labels"][LABEL_COMPUTE_DOMAIN] = self.name
        return doc

    def claim_template(self) -> dict[str, Any] | None:
        """The GPU ResourceClaimTemplate (DRA), or None with the device plugin."""
        if self.gpu_request != "dra":
            return None
        return gpu_claim_template(self.parts[0].name, self.namespace, self.gpus_per_node)

    def workload(self) -> dict[str, Any]:
        """The ``batch/v1`` Job, one indexed pod per chosen node (the first clique's)."""
        return self._owned(self._job(self.parts[0]))

    def _job(self, part: ComputeDomainPart) -> dict[str, Any]:
        return job_manifest(
            part.name,
            self.namespace,
            nodes=part.nodes,
            cliques=part.cliques,
            gpus_per_node=self.gpus_per_node,
            gpu_request=self.gpu_request,
            image=self.image,
            command=self.command,
            allocator_domain=self.request.domain if self.pod_placement == "allocator" else None,
        )

    def manifests(self) -> list[dict[str, Any]]:
        """Every object, in the order to create them: per clique its ComputeDomain, GPU
        claim template and Job."""
        docs: list[dict[str, Any]] = []
        for part in self.parts:
            docs.append(self._owned(self._domain(part)))
            if self.gpu_request == "dra":
                template = gpu_claim_template(part.name, self.namespace, self.gpus_per_node)
                docs.append(self._owned(template))
            docs.append(self._owned(self._job(part)))
        return docs

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data: placement, excluded nodes and manifests."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "request": {
                "gpus": self.request.gpus,
                "nodes": self.request.nodes,
                "domain": self.request.domain,
            },
            "placement": self.placement.to_json(),
            "excluded": [{"name": e.name, "reasons": list(e.reasons)} for e in self.excluded],
            "gpuRequest": self.gpu_request,
            "manifests": self.manifests(),
        }

    def explain(self) -> str:
        """What goes where and why some nodes were left out, for a person to read."""
        count = len(self.nodes)
        parts = self.parts
        where = (
            f"in clique {self.cliques[0]}"
            if len(self.cliques) == 1
            else f"across cliques {', '.join(self.cliques)}, one ComputeDomain per clique ("
            + "; ".join(
                f"{p.name}: {len(p.nodes)} node{'s' if len(p.nodes) != 1 else ''}" for p in parts
            )
            + ")"
            if self.cliques
            else "outside any clique"
        )
        gpus = (
            f"through DRA (ResourceClaimTemplate "
            f"{', '.join(gpu_template_name(p.name) for p in parts)})"
            if self.gpu_request == "dra"
            else "as nvidia.com/gpu limits (device plugin)"
        )
        lines = [
            f"ComputeDomain {self.namespace}/{self.name}: {count} node"
            f"{'s' if count != 1 else ''} {where}, {self.gpus_per_node} GPUs each "
            f"({self.placement.gpu_count} in total), GPUs requested {gpus}",
        ]
        width = max(len(n) for n in self.nodes)
        for node in self.placement.nodes:
            lines.append(f"  {node.name:<{width}}  GPUs {', '.join(map(str, node.gpus))}")
        if self.excluded:
            lines.append(f"Excluded: {summarize_excluded(self.excluded)}")
            shown = self.excluded[:_EXPLAIN_EXCLUDED]
            width = max(len(e.name) for e in shown)
            for e in shown:
                lines.append(f"  {e.name:<{width}}  {'; '.join(e.reasons)}")
            if len(self.excluded) > len(shown):
                lines.append(f"  ... and {len(self.excluded) - len(shown)} more")
        kinds = ", ".join(f"{m['kind']} {m['metadata']['name']}" for m in self.manifests())
        lines.append(f"Objects: {kinds}; one pod per node, pinned to these nodes and the clique")
        for node in self.placement.nodes:
            if node.clique_problem is not None:
                lines.append(f"Node {node.name} is in no clique: {node.clique_problem}")
        return "\n".join(lines)


def plan(
    cluster: Cluster,
    *,
    name: str,
    namespace: str = "default",
    gpus: int,
    nodes: int | None = None,
    domain: Domain = "required",
    gpu_request: GpuRequest = "dra",
    image: str = DEFAULT_IMAGE,
    command: Sequence[str] | None = DEFAULT_COMMAND,
    pod_placement: PodPlacement = "pinned",
) -> ComputeDomainPlan:
    """Place a multi-node NVLink job in one clique and describe the objects that run it.

    Parameters
    ----------
    cluster
        Nodes with their cliques, free GPUs, fabric info and ComputeDomains.
    name, namespace
        Name of the ComputeDomain and of the Job (a DNS label of at most
        :data:`MAX_NAME_LENGTH` characters), and their namespace.
    gpus, nodes, domain
        The request of Contract 2; with ``nodes`` each node takes ``gpus / nodes``. Without
        it, the placement is made even (a Job's pods share one spec): see
        :func:`nvtopo.imex.place_domain`.
    gpu_request
        ``"dra"``: pods claim their GPUs through a ResourceClaimTemplate; ``"device-plugin"``:
        through ``nvidia.com/gpu`` limits.
    image, command
        The workload container (a placeholder that lists its GPUs and IMEX channel by
        default; replace it or merge the pod template into your own).
    pod_placement
        ``"pinned"`` (pods pinned by node affinity to the chosen nodes, for clusters without
        the allocator) or ``"allocator"`` (one gated gang the nvtopo allocator places; needs
        ``gpu_request="dra"``).

    Raises
    ------
    ComputeDomainError
        A bad name, namespace, GPU request kind or image.
    InfeasibleError
        No clique has room; the message counts the excluded nodes by reason.

    Examples
    --------
    >>> import nvtopo
    >>> p = plan(nvtopo.cluster("gb200-nvl72x2"), name="train", gpus=16, nodes=4)
    >>> len(p.nodes), len(p.cliques), [m["kind"] for m in p.manifests()]
    (4, 1, ['ComputeDomain', 'ResourceClaimTemplate', 'Job'])
    """
    _check_label(name, "name", MAX_NAME_LENGTH)
    _check_label(namespace, "namespace", 63)
    if gpu_request not in get_args(GpuRequest):
        raise ComputeDomainError(
            f"gpu_request must be 'dra' or 'device-plugin', got {gpu_request!r}"
        )
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise ComputeDomainError(f"image {image!r} is not a container image reference")
    if pod_placement not in get_args(PodPlacement):
        raise ComputeDomainError(
            f"pod_placement must be 'pinned' or 'allocator', got {pod_placement!r}"
        )
    if pod_placement == "allocator" and gpu_request != "dra":
        raise ComputeDomainError("the allocator places DRA claims: use gpu_request='dra'")
    placed = place_domain(cluster, gpus=gpus, nodes=nodes, domain=domain, even=True)
    spans = len(placed.placement.compute_domains)
    if spans > 1 and len(name) + len(f"-{spans - 1}") > MAX_NAME_LENGTH:
        raise ComputeDomainError(
            f"name {name!r} is too long for a job over {spans} cliques: each clique's "
            f"ComputeDomain is named <name>-<i>, at most {MAX_NAME_LENGTH} characters"
        )
    return ComputeDomainPlan(
        name=name,
        namespace=namespace,
        request=placed.request,
        placement=placed.placement,
        excluded=placed.excluded,
        gpu_request=gpu_request,
        image=image,
        command=tuple(command) if command else None,
        pod_placement=pod_placement,
    )
