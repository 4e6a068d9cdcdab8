"""Build and run the pinned control plane that nvtopo's Kubernetes tests use.

etcd and kube-apiserver always; kube-scheduler and kube-controller-manager on request
(:mod:`.components`); Ready Node objects without kubelets (:mod:`.nodes`).

``build`` needs the standard library and Go; ``start`` also needs ``cryptography``. Loaded
by ``scripts/k8s-test-env`` and ``tests/k8s/conftest.py`` from this directory.
"""

from __future__ import annotations

from .build import (
    GO_MODULE_DIR,
    SCHEMA_VERSION,
    Binaries,
    ControlPlaneError,
    build,
    cache_root,
    find_binaries,
    openapi_spec,
    pinned_versions,
)
from .components import CONTROLLERS, Component, start_controller_manager, start_scheduler
from .controlplane import FEATURE_GATES, SERVICE_ACCOUNT_ISSUER, ControlPlane, start, stop_pid
from .nodes import NOT_READY_TAINT, add_nodes, ready_node

__all__ = [
    "CONTROLLERS",
    "FEATURE_GATES",
    "GO_MODULE_DIR",
    "NOT_READY_TAINT",
    "SCHEMA_VERSION",
    "SERVICE_ACCOUNT_ISSUER",
    "Binaries",
    "Component",
    "ControlPlane",
    "ControlPlaneError",
    "add_nodes",
    "build",
    "cache_root",
    "find_binaries",
    "openapi_spec",
    "pinned_versions",
    "ready_node",
    "start",
    "start_controller_manager",
    "start_scheduler",
    "stop_pid",
]
