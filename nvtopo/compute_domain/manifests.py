"""The Kubernetes objects of a ComputeDomain plan, as plain dicts.

Three objects, created in this order and deleted in reverse:

1. the ``ComputeDomain`` (``resource.nvidia.com/v1beta1``): ``numNodes`` = the placed nodes,
   channel template ``<name>-channel``, one channel per claim (``Single``). The driver's
   controller creates that ResourceClaimTemplate itself;
2. with ``gpu_request="dra"``, a ResourceClaimTemplate ``<name>-gpus`` from
   :func:`nvtopo.dra.claim_template` asking for each node's GPUs;
3. the workload, a ``batch/v1`` Job with indexed completions, one pod per placed node.
   Its pods claim the IMEX channel and their GPUs (the DRA template above, or
   ``nvidia.com/gpu`` limits for the device plugin), and are pinned by required node
   affinity to the chosen node names (``kubernetes.io/hostname``) and clique
   (``nvidia.com/gpu.clique``, the label NVIDIA's GPU feature discovery sets), with
   required pod anti-affinity on the host name so no node gets two.

Every object carries ``app.kubernetes.io/managed-by: nvtopo`` and
``nvtopo.dev/compute-domain: <name>``, which is how :func:`nvtopo.compute_domain.delete`
finds them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from nvtopo.compute_domain.crd import API_VERSION, KIND

__all__ = [
    "ANNOTATION_CLIQUES",
    "ANNOTATION_NODES",
    "CHANNEL_CLAIM",
    "CLIQUE_LABEL",
    "DEFAULT_COMMAND",
    "DEFAULT_IMAGE",
    "DEVICE_PLUGIN_RESOURCE",
    "GPU_CLAIM",
    "HOSTNAME_LABEL",
    "LABEL_COMPUTE_DOMAIN",
    "LABEL_MANAGED_BY",
    "LAUNCH_PLAN_PATH",
    "MANAGER",
    "GpuRequest",
    "PodPlacement",
    "channel_template_name",
    "compute_domain_manifest",
    "gpu_claim_template",
    "gpu_template_name",
    "job_manifest",
    "labels",
    "launch_config_map",
    "launch_service",
    "with_launch",
]

GpuRequest = Literal["dra", "device-plugin"]
#: How the Job's pods reach their nodes: pinned by affinity, or placed by the nvtopo allocator.
PodPlacement = Literal["pinned", "allocator"]

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPUTE_DOMAIN = "nvtopo.dev/compute-domain"
MANAGER = "nvtopo"
ANNOTATION_NODES = "nvtopo.dev/nodes"
ANNOTATION_CLIQUES = "nvtopo.dev/cliques"
HOSTNAME_LABEL = "kubernetes.io/hostname"
CLIQUE_LABEL = "nvidia.com/gpu.clique"
DEVICE_PLUGIN_RESOURCE = "nvidia.com/gpu"
#: Names of the pod's resource claims (entries of ``spec.resourceClaims``).
CHANNEL_CLAIM = "imex-channel"
GPU_CLAIM = "gpus"
#: A plain image: the NVIDIA container runtime injects ``nvidia-smi`` with the GPUs.
DEFAULT_IMAGE = "ubuntu:24.04"
#: Shows the GPUs and the IMEX channel a pod got, then waits to be replaced by real work.
DEFAULT_COMMAND = (
    "sh",
    "-c",
    "nvidia-smi -L; ls -l /dev/nvidia-caps-imex-channels; sleep infinity",
)


def labels(name: str) -> dict[str, str]:
    """The labels on every object of ComputeDomain ``name``."""
    return {LABEL_MANAGED_BY: MANAGER, LABEL_COMPUTE_DOMAIN: name}


def channel_template_name(name: str) -> str:
    """The IMEX channel ResourceClaimTemplate the driver makes for ComputeDomain ``name``."""
    return f"{name}-channel"


def gpu_template_name(name: str) -> str:
    """The GPU ResourceClaimTemplate nvtopo makes for ComputeDomain ``name``."""
    return f"{name}-gpus"


def _metadata(name: str, namespace: str, owner: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(owner)}


def compute_domain_manifest(
    name: str, namespace: str, nodes: Sequence[str], cliques: Sequence[str]
) -> dict[str, Any]:
    """The ComputeDomain for ``nodes``; the planned nodes and cliques ride as annotations."""
    metadata = _metadata(name, namespace, name)
    metadata["annotations"] = {
        ANNOTATION_NODES: ",".join(nodes),
        ANNOTATION_CLIQUES: ",".join(cliques),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "numNodes": len(nodes),
            "channel": {
                "resourceClaimTemplate": {"name": channel_template_name(name)},
                "allocationMode": "Single",
            },
        },
    }


def gpu_claim_template(name: str, namespace: str, gpus_per_node: int) -> dict[str, Any]:
    """The DRA claim template each pod uses for its node's GPUs."""
    from nvtopo.dra.claims import claim_template

    template = claim_template(gpus=gpus_per_node, name=gpu_template_name(name), namespace=namespace)
    template["metadata"].setdefault("labels", {}).update(labels(name))
    return template


def _affinity(name: str, nodes: Sequence[str], cliques: Sequence[str]) -> dict[str, Any]:
    expressions = [{"key": HOSTNAME_LABEL, "operator": "In", "values": list(nodes)}]
    if cliques:
        expressions.append({"key": CLIQUE_LABEL, "operator": "In", "values": list(cliques)})
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {LABEL_COMPUTE_DOMAIN: name}},
                    "topologyKey": HOSTNAME_LABEL,
                }
            ]
        },
    }


def _gang(name: str, count: int, domain: str) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations that make the Job's pods one gang of the nvtopo allocator."""
    from nvtopo.allocator.gang import DOMAIN_ANNOTATION, GANG_LABEL, SIZE_ANNOTATION

    return {GANG_LABEL: name}, {SIZE_ANNOTATION: str(count), DOMAIN_ANNOTATION: domain}


def job_manifest(
    name: str,
    namespace: str,
    *,
    nodes: Sequence[str],
    cliques: Sequence[str],
    gpus_per_node: int,
    gpu_request: GpuRequest,
    image: str,
    command: Sequence[str] | None,
    allocator_domain: str | None = None,
) -> dict[str, Any]:
    """The workload Job: one indexed pod per node of ``nodes``.

    With ``allocator_domain`` (the request's domain rule) the pods are not pinned: they form
    one gang of the nvtopo allocator (gang label, size and domain annotations, scheduling
    gate), which places them when they are all there and allocates their GPU claims.
    """
    claims: list[dict[str, str]] = [
        {"name": CHANNEL_CLAIM, "resourceClaimTemplateName": channel_template_name(name)}
    ]
    resources: dict[str, Any] = {"claims": [{"name": CHANNEL_CLAIM}]}
    if gpu_request == "dra":
        claims.append({"name": GPU_CLAIM, "resourceClaimTemplateName": gpu_template_name(name)})
        resources["claims"].append({"name": GPU_CLAIM})
    else:
        resources["limits"] = {DEVICE_PLUGIN_RESOURCE: str(gpus_per_node)}
    container: dict[str, Any] = {"name": "worker", "image": image, "resources": resources}
    if command:
        container["command"] = list(command)
    count = len(nodes)
    metadata: dict[str, Any] = {"labels": labels(name)}
    spec: dict[str, Any] = {"restartPolicy": "Never"}
    if allocator_domain is None:
        spec["affinity"] = _affinity(name, nodes, cliques)
    else:
        from nvtopo.allocator.gang import GATE

        gang_labels, annotations = _gang(name, count, allocator_domain)
        metadata = {"labels": {**labels(name), **gang_labels}, "annotations": annotations}
        spec["schedulingGates"] = [{"name": GATE}]
    spec["resourceClaims"] = claims
    spec["containers"] = [container]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, namespace, name),
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            "template": {"metadata": metadata, "spec": spec},
        },
    }


#: Where the launch plan is mounted in each pod of a job planned with a command.
LAUNCH_PLAN_PATH = "/etc/nvtopo/launch-plan.json"
_LAUNCH_VOLUME = "nvtopo-launch"


def launch_config_map(name: str, namespace: str, plan_json: str) -> dict[str, Any]:
    """The ConfigMap ``<name>-launch`` holding the launch plan (``nvtopo launch plan -o json``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{name}-launch", namespace, name),
        "data": {LAUNCH_PLAN_PATH.rsplit("/", 1)[1]: plan_json},
    }


def launch_service(name: str, namespace: str) -> dict[str, Any]:
    """A headless Service ``<name>``: each pod of the Job gets the DNS name
    ``<name>-<index>.<name>``, so the pod of index 0 is the rendezvous address."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, name),
        "spec": {"clusterIP": "None", "selector": {LABEL_COMPUTE_DOMAIN: name}},
    }


def with_launch(job: dict[str, Any], name: str, command: Sequence[str]) -> dict[str, Any]:
    """``job`` with ``nvtopo launch exec`` wrapping ``command`` and the plan mounted.

    The pod learns its node name through the downward API (``NVTOPO_NODE_NAME``) so that it
    takes that node's GPUs, NICs and clique from the plan, and its node rank from its
    completion index; the image must have ``nvtopo`` installed.
    """
    spec = job["spec"]["template"]["spec"]
    spec["subdomain"] = name
    spec.setdefault("volumes", []).append(
        {"name": _LAUNCH_VOLUME, "configMap": {"name": f"{name}-launch"}}
    )
    container = spec["containers"][0]
    container["command"] = ["nvtopo", "launch", "exec", "--plan", LAUNCH_PLAN_PATH, "--", *command]
    container.setdefault("env", []).append(
        {"name": "NVTOPO_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    )
    container.setdefault("volumeMounts", []).append(
        {
            "name": _LAUNCH_VOLUME,
            "mountPath": LAUNCH_PLAN_PATH.rsplit("/", 1)[0],
            "readOnly": True,
        }
    )
    return job
