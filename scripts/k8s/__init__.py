"""Build and run the pinned etcd + kube-apiserver that nvtopo's Kubernetes tests use.

``build`` needs the standard library and Go; ``start`` also needs ``cryptography``. Loaded
by ``scripts/k8s-test-env`` and ``tests/k8s/conftest.py`` from this directory.
"""

from __future__ import annotations

from .build import (
    GO_MODULE_DIR,
    Binaries,
    ControlPlaneError,
    build,
    cache_root,
    find_binaries,
    pinned_versions,
)
from .controlplane import SERVICE_ACCOUNT_ISSUER, ControlPlane, start, stop_pid

__all__ = [
    "GO_MODULE_DIR",
    "SERVICE_ACCOUNT_ISSUER",
    "Binaries",
    "ControlPlane",
    "ControlPlaneError",
    "build",
    "cache_root",
    "find_binaries",
    "pinned_versions",
    "start",
    "stop_pid",
]
