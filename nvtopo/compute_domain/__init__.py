"""ComputeDomains: multi-node NVLink jobs placed inside one clique, on Kubernetes.

NVIDIA's DRA driver turns a ``ComputeDomain`` (``resource.nvidia.com/v1beta1``) into an IMEX
domain over the nodes its pods land on, but leaves choosing those nodes to the user. nvtopo
chooses them:

* :func:`plan`: Contract 2 inside one clique on the healthy nodes, and the objects that run
  the job there (ComputeDomain, GPU claim template, a Job pinned to the chosen nodes);
* :func:`apply`: create them and wait until the driver reports every node Ready;
* :func:`delete`: remove everything a plan created;
* :func:`crd_manifest`: the ComputeDomain CRD, for clusters and test servers without the
  driver.

Examples
--------
>>> import nvtopo
>>> from nvtopo import compute_domain
>>> p = compute_domain.plan(nvtopo.cluster("gb200-nvl72x2"), name="train", gpus=8)
>>> p.nodes, p.compute_domain()["spec"]["numNodes"]
(('rack0000-tray00', 'rack0000-tray01'), 2)
"""

from __future__ import annotations

from nvtopo.compute_domain.apply import AppliedComputeDomain, DomainNode, apply, delete
from nvtopo.compute_domain.crd import crd_manifest
from nvtopo.compute_domain.errors import (
    ComputeDomainConflict,
    ComputeDomainError,
    ComputeDomainInterrupted,
    ComputeDomainTimeout,
    CrdMissingError,
)
from nvtopo.compute_domain.plan import ComputeDomainPlan, plan
from nvtopo.imex.domain import ExcludedNode

__all__ = [
    "AppliedComputeDomain",
    "ComputeDomainConflict",
    "ComputeDomainError",
    "ComputeDomainInterrupted",
    "ComputeDomainPlan",
    "ComputeDomainTimeout",
    "CrdMissingError",
    "DomainNode",
    "ExcludedNode",
    "apply",
    "crd_manifest",
    "delete",
    "plan",
]
