"""GPU health as DRA device taints: in nvtopo's slices, and as ``DeviceTaintRule`` objects
for NVIDIA's devices in companion mode.

A GPU with a finding (:mod:`nvtopo.model.gpu_health`) keeps its device in the slice, with
one taint per kind of finding: key ``topology.nvtopo.dev/<kind>``, the reason as the value
(a label value), effect ``NoSchedule`` (``NoExecute`` only when asked: it evicts running
pods). The stock kube-scheduler then allocates the GPU only to claims that tolerate the taint
(``resource.k8s.io/v1``, device taints GA in Kubernetes 1.37); the taint goes when the
finding does. The server stamps ``timeAdded``; nvtopo never sends it, and the publisher's
comparison ignores it, so an unchanged GPU costs no write.

In companion mode (NVIDIA's GPU driver keeps publishing the devices) the same findings become
cluster-scoped ``DeviceTaintRule`` objects, one per GPU and kind, selecting NVIDIA's device by
driver, pool and device name (:func:`taint_rules`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from nvtopo.dra.attributes import TOPOLOGY_DOMAIN, device_uuid
from nvtopo.model import Gpu, NodeTopology
from nvtopo.model.gpu_health import GpuFinding, gpu_findings

__all__ = [
    "COMPANION_DRIVER",
    "TAINTS_ANNOTATION",
    "TAINT_EFFECTS",
    "TAINT_RULE_API_VERSION",
    "TaintEffect",
    "device_taints",
    "devices_by_uuid",
    "taint_key",
    "taint_rule_name",
    "taint_rules",
    "taint_text",
]

TaintEffect = Literal["NoSchedule", "NoExecute"]
TAINT_EFFECTS: tuple[TaintEffect, ...] = ("NoSchedule", "NoExecute")
#: DeviceTaintRule is GA in ``resource.k8s.io/v1`` from Kubernetes 1.37.
TAINT_RULE_API_VERSION = "resource.k8s.io/v1"
#: The driver name of NVIDIA's DRA GPU driver, whose devices companion mode taints.
COMPANION_DRIVER = "gpu.nvidia.com"
#: Annotation on a slice whose devices carry taints: a digest of those taints. An API server
#: with device taints turned off (the DRADeviceTaints gate before Kubernetes 1.36) drops them
#: from what it stores; the digest lets the publisher see that it already sent exactly these
#: and write nothing more until they change.
TAINTS_ANNOTATION = "topology.nvtopo.dev/taints"
#: Label on every DeviceTaintRule nvtopo owns, with the node it is for.
RULE_NODE_LABEL = "nvtopo.dev/node"
RULE_MANAGED_BY = {"app.kubernetes.io/managed-by": "nvtopo"}


def taint_key(finding: GpuFinding) -> str:
    """``topology.nvtopo.dev/nvlink-degraded`` or ``topology.nvtopo.dev/fabric-unhealthy``."""
    return f"{TOPOLOGY_DOMAIN}/{finding.kind}"


def taint_text(finding: GpuFinding) -> str:
    """``key=value`` of the finding's taint, as ``dump`` and ``doctor`` print it."""
    return f"{taint_key(finding)}={finding.reason}"


def _taint(finding: GpuFinding, effect: TaintEffect) -> dict[str, str]:
    return {"key": taint_key(finding), "value": finding.reason, "effect": effect}


def device_taints(gpu: Gpu, *, effect: TaintEffect = "NoSchedule") -> list[dict[str, str]]:
    """The ``taints`` of ``gpu``'s device in a ResourceSlice (empty for a healthy GPU).

    Examples
    --------
    >>> from nvtopo.model import Gpu, NvLink
    >>> [t] = device_taints(Gpu(0, nvlinks=(NvLink(0, state="down"), NvLink(1))))
    >>> t["key"], t["value"], t["effect"]
    ('topology.nvtopo.dev/nvlink-degraded', 'nvlink-0-down', 'NoSchedule')
    """
    if effect not in TAINT_EFFECTS:
        raise ValueError(f"taint effect must be NoSchedule or NoExecute, not {effect!r}")
    return [_taint(f, effect) for f in gpu_findings(gpu)]


def taints_digest(devices: Iterable[Mapping[str, Any]]) -> str | None:
    """A digest of the devices' taints (key, value, effect; not ``timeAdded``), None without."""
    found = sorted(
        (str(d.get("name")), t.get("key"), t.get("value"), t.get("effect"))
        for d in devices
        for t in d.get("taints") or []
    )
    if not found:
        return None
    return hashlib.sha256(repr(found).encode()).hexdigest()[:16]


def taint_rule_name(node: str, device: str, finding: GpuFinding) -> str:
    """A DNS-subdomain name for the rule of one finding: readable, unique, at most 253."""
    head = f"nvtopo-{node}-{device}-{finding.kind}".lower()
    digest = hashlib.sha256(f"{node}/{device}/{finding.kind}".encode()).hexdigest()[:8]
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in head)[:240].strip("-.")
    return f"{cleaned}-{digest}"


def taint_rules(
    topology: NodeTopology,
    *,
    node: str,
    devices_by_uuid: Mapping[str, str],
    driver: str = COMPANION_DRIVER,
    effect: TaintEffect = "NoSchedule",
) -> list[dict[str, Any]]:
    """``DeviceTaintRule`` manifests for ``topology``'s unfit GPUs, as another driver names them.

    ``devices_by_uuid`` maps a GPU UUID to that driver's device name in the node's pool (read
    from its ResourceSlices: the device whose ``uuid`` attribute matches). A GPU the driver
    does not publish gets no rule.

    Examples
    --------
    >>> import nvtopo
    >>> from nvtopo.catalog import with_lost_nvlinks
    >>> t = with_lost_nvlinks(nvtopo.system("hgx-b200"), [2])
    >>> [r] = taint_rules(t, node="n1", devices_by_uuid={t.gpu(2).uuid: "gpu-2"})
    >>> r["spec"]["deviceSelector"]
    {'driver': 'gpu.nvidia.com', 'pool': 'n1', 'device': 'gpu-2'}
    >>> r["spec"]["taint"]["key"], r["spec"]["taint"]["value"]
    ('topology.nvtopo.dev/nvlink-degraded', '18-of-18-nvlinks-down')
    """
    rules = []
    for gpu in topology.gpus:
        device = devices_by_uuid.get(gpu.uuid or "")
        if device is None:
            continue
        for finding in gpu_findings(gpu):
            rules.append(
                {
                    "apiVersion": TAINT_RULE_API_VERSION,
                    "kind": "DeviceTaintRule",
                    "metadata": {
                        "name": taint_rule_name(node, device, finding),
                        "labels": {**RULE_MANAGED_BY, RULE_NODE_LABEL: node},
                    },
                    "spec": {
                        "deviceSelector": {"driver": driver, "pool": node, "device": device},
                        "taint": _taint(finding, effect),
                    },
                }
            )
    return rules


def devices_by_uuid(
    slices: Iterable[Mapping[str, Any]], *, driver: str, pool: str
) -> dict[str, str]:
    """GPU UUID → device name in ``driver``'s slices of ``pool`` (the ``uuid`` attribute)."""
    found: dict[str, str] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver or (spec.get("pool") or {}).get("name") != pool:
            continue
        for device in spec.get("devices") or []:
            uuid = device_uuid(device)
            if uuid is not None and "name" in device:
                found[uuid] = str(device["name"])
    return found
