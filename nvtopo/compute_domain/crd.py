"""The ``ComputeDomain`` custom resource (``resource.nvidia.com/v1beta1``).

NVIDIA's DRA driver for GPUs defines the type and runs its controller; nvtopo only creates
ComputeDomains and reads their status. The schema here follows the driver's documented API:

``spec``
    ``numNodes`` (int ≥ 0: the IMEX daemons expected; ``status.status`` turns Ready when
    that many are ready) and ``channel``: ``resourceClaimTemplate.name`` (the
    ResourceClaimTemplate the controller creates for pods to claim an IMEX channel) and
    ``allocationMode`` (``Single``, the default, or ``All`` channels). The spec is
    immutable.
``status``
    ``status`` (``Ready`` | ``NotReady``) and ``nodes[]``, keyed by ``name``: ``ipAddress``,
    ``cliqueID``, ``index`` (the node's place in its clique's DNS names) and ``status``
    (``Ready`` | ``NotReady`` | ``Failed``).

:func:`crd_manifest` gives the CustomResourceDefinition, so that a test apiserver, or a
cluster without the driver, can serve the type; ``deploy/computedomain-crd.yaml`` is the
same document.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "API_VERSION",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "NODE_STATUSES",
    "PLURAL",
    "STATUSES",
    "VERSION",
    "crd_manifest",
]

GROUP = "resource.nvidia.com"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ComputeDomain"
PLURAL = "computedomains"
CRD_NAME = f"{PLURAL}.{GROUP}"
#: Values of ``status.status``.
STATUSES = ("Ready", "NotReady")
#: Values of ``status.nodes[].status``.
NODE_STATUSES = ("Ready", "NotReady", "Failed")


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _spec_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "What the ComputeDomain provides; immutable once created.",
        "required": ["numNodes", "channel"],
        "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "message": "A computeDomain.spec is immutable"}
        ],
        "properties": {
            "numNodes": {
                "type": "integer",
                "minimum": 0,
                "description": "IMEX daemons (nodes) expected; status turns Ready when this "
                "many are ready.",
            },
            "channel": {
                "type": "object",
                "description": "The IMEX channel that workload pods claim.",
                "required": ["resourceClaimTemplate"],
                "properties": {
                    "resourceClaimTemplate": {
                        "type": "object",
                        "description": "The ResourceClaimTemplate the controller creates.",
                        "required": ["name"],
                        "properties": {"name": _string("Name of the ResourceClaimTemplate.")},
                    },
                    "allocationMode": _string(
                        "One IMEX channel per claim (Single) or all of them (All).",
                        enum=["All", "Single"],
                        default="Single",
                    ),
                },
            },
        },
    }


def _status_schema() -> dict[str, Any]:
    node = {
        "type": "object",
        "required": ["name", "ipAddress", "cliqueID"],
        "properties": {
            "name": _string("Kubernetes node name."),
            "ipAddress": _string("Address the node's IMEX daemon listens on."),
            "cliqueID": _string("The node's NVLink clique, <clusterUUID>.<cliqueId>."),
            "index": {
                "type": "integer",
                "description": "The node's index in its clique (stable DNS name).",
            },
            "status": _string(
                "Readiness of the node's IMEX daemon.",
                enum=list(NODE_STATUSES),
                default="NotReady",
            ),
        },
    }
    return {
        "type": "object",
        "description": "Written by the ComputeDomain controller and its node daemons.",
        "required": ["status"],
        "properties": {
            "status": _string(
                "Ready once numNodes IMEX daemons are ready.",
                enum=list(STATUSES),
                default="NotReady",
            ),
            "nodes": {
                "type": "array",
                "items": node,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        },
    }


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition of ``computedomains.resource.nvidia.com``.

    Examples
    --------
    >>> crd = crd_manifest()
    >>> crd["metadata"]["name"], crd["spec"]["versions"][0]["name"]
    ('computedomains.resource.nvidia.com', 'v1beta1')
    """
    schema = {
        "type": "object",
        "description": "ComputeDomain prepares a set of nodes to run a multi-node NVLink "
        "workload in (one IMEX domain).",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _spec_schema(),
            "status": _status_schema(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Nodes", "type": "integer", "jsonPath": ".spec.numNodes"},
                        {"name": "Status", "type": "string", "jsonPath": ".status.status"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }
