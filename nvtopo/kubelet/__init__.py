"""The kubelet plugin of nvtopo's DRA driver: prepares claimed GPUs so that pods start.

:class:`~nvtopo.kubelet.server.KubeletPlugin` registers with the kubelet's plugin watcher
and serves the DRA gRPC API (v1, v1beta1) on unix sockets; :class:`ClaimPreparer` reads
each claim's allocation, writes a per-claim CDI spec with the claim's environment, and
keeps a crash-safe checkpoint. ``nvtopo kubelet-plugin`` runs it.
"""

from __future__ import annotations

from nvtopo.kubelet.cdi import claim_device_id, gpu_device_id, host_gpu_names
from nvtopo.kubelet.checkpoint import Checkpoint, PreparedClaim
from nvtopo.kubelet.environment import claim_environment, ring_order
from nvtopo.kubelet.errors import CdiError, CheckpointError, ClaimError, KubeletPluginError
from nvtopo.kubelet.health import HealthFeed
from nvtopo.kubelet.prepare import ClaimPreparer
from nvtopo.kubelet.server import KubeletPlugin

__all__ = [
    "CdiError",
    "Checkpoint",
    "CheckpointError",
    "ClaimError",
    "ClaimPreparer",
    "HealthFeed",
    "KubeletPlugin",
    "KubeletPluginError",
    "PreparedClaim",
    "claim_device_id",
    "claim_environment",
    "gpu_device_id",
    "host_gpu_names",
    "ring_order",
]
