"""Node objects that the scheduler takes as Ready, schedulable nodes, without a kubelet.

Creating a Node runs the ``TaintNodesByCondition`` admission plugin, which adds the
``node.kubernetes.io/not-ready:NoSchedule`` taint; a kubelet's first status report and the
node lifecycle controller would lift it, and neither runs here. So each node is created,
given a Ready condition and allocatable resources in its status, and then its taints are
cleared.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from .build import ControlPlaneError
from .controlplane import ControlPlane

__all__ = ["NOT_READY_TAINT", "add_nodes", "ready_node"]

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
_RESOURCES = {"cpu": "256", "memory": "2Ti", "pods": "1000", "ephemeral-storage": "10Ti"}


def _call(
    plane: ControlPlane, method: str, path: str, body: Mapping[str, Any], content_type: str
) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    request = urllib.request.Request(
        plane.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {plane.token}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[-300:]
        raise ControlPlaneError(f"{method} {path}: HTTP {exc.code}: {detail}") from None


def ready_node(
    plane: ControlPlane, name: str, *, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Create Node ``name`` (with ``labels``), Ready, untainted, with ample allocatable.

    A node that exists already is made so too (several tests may use one node name).
    """
    path = f"/api/v1/nodes/{quote(name, safe='')}"
    node_labels = {"kubernetes.io/hostname": name, **(labels or {})}
    try:
        _call(
            plane,
            "POST",
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels}},
            "application/json",
        )
    except ControlPlaneError as exc:
        if "HTTP 409" not in str(exc):
            raise
        # Made earlier in the session: the same node, with these labels added.
        patch = {"metadata": {"labels": node_labels}}
        _call(plane, "PATCH", path, patch, "application/merge-patch+json")
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "no kubelet: made Ready by the test control plane",
    }
    _call(
        plane,
        "PATCH",
        path + "/status",
        {"status": {"conditions": [condition], "capacity": _RESOURCES, "allocatable": _RESOURCES}},
        "application/strategic-merge-patch+json",
    )
    # Taints are replaced as a whole (a JSON merge patch sets the list).
    return _call(plane, "PATCH", path, {"spec": {"taints": None}}, "application/merge-patch+json")


def add_nodes(
    plane: ControlPlane,
    names: Iterable[str],
    *,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    workers: int = 8,
) -> None:
    """:func:`ready_node` for many nodes, a few at a time (``labels`` per node name)."""
    by_name = labels or {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(lambda n: ready_node(plane, n, labels=by_name.get(n)), names):
            pass
