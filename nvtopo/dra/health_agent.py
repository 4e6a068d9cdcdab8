"""What the node agent writes besides its slices when a GPU's health changes.

- Companion mode: clusters that keep NVIDIA's GPU driver get one ``DeviceTaintRule`` per
  unfit GPU and kind, selecting NVIDIA's device (:func:`nvtopo.dra.taints.taint_rules`);
  the agent creates the missing rules of its node and deletes the ones no longer found, and
  leaves every other rule alone (it lists only rules labelled with its node).
- A node condition, ``NVLinkCliqueDegraded``, on the node's status: True with the findings
  in its message while any GPU has one, False otherwise, so ``kubectl describe node``,
  operators' alerts and ``nvtopo doctor`` see it. The transition time moves only when the
  status flips, and an unchanged condition costs no write.

Both are idempotent: called again with the same topology they make no write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nvtopo.dra.taints import (
    COMPANION_DRIVER,
    RULE_NODE_LABEL,
    TaintEffect,
    devices_by_uuid,
    taint_rules,
)
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import KubeApiError, api_message
from nvtopo.model import NodeTopology
from nvtopo.model.gpu_health import gpu_findings

__all__ = [
    "CONDITION_TYPE",
    "DEVICE_TAINT_RULES",
    "HealthWrites",
    "node_condition",
    "reconcile_node_condition",
    "reconcile_taint_rules",
]

#: The node condition type the agent owns.
CONDITION_TYPE = "NVLinkCliqueDegraded"
DEVICE_TAINT_RULES = "/apis/resource.k8s.io/v1/devicetaintrules"
_NODES = "/api/v1/nodes"
_MAX_MESSAGE = 1024


@dataclass(frozen=True)
class HealthWrites:
    """What one reconcile wrote: rule names created and deleted, condition written."""

    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    condition: bool = False

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.deleted) + int(self.condition)


def node_condition(topology: NodeTopology) -> dict[str, str]:
    """The ``NVLinkCliqueDegraded`` condition for ``topology`` (without timestamps).

    Examples
    --------
    >>> import nvtopo
    >>> from nvtopo.catalog import with_lost_nvlinks
    >>> c = node_condition(with_lost_nvlinks(nvtopo.system("gb200-tray"), [1]))
    >>> c["status"], c["reason"], c["message"][:43] + "..."
    ('True', 'GpuHealthFindings', 'GPU 1: nvlink-degraded (NVLinks 0, 1, 2, 3,...')
    >>> node_condition(nvtopo.system("gb200-tray"))["status"]
    'False'
    """
    found = [f.text for g in topology.gpus for f in gpu_findings(g)]
    if not found:
        return {
            "type": CONDITION_TYPE,
            "status": "False",
            "reason": "AllGpusHealthy",
            "message": "every GPU has its NVLinks up and a healthy fabric",
        }
    message = "; ".join(found)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return {
        "type": CONDITION_TYPE,
        "status": "True",
        "reason": "GpuHealthFindings",
        "message": message,
    }


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile_node_condition(
    api: RawApi, node: str, topology: NodeTopology, *, now: Callable[[], str] = _now
) -> bool:
    """Write the node's ``NVLinkCliqueDegraded`` condition when it changed; True if written.

    A conflict with another writer of the node's status (the kubelet's heartbeat) is read
    again and retried.
    """
    from kubernetes.client.exceptions import ApiException

    wanted = node_condition(topology)
    path = RawApi.item(_NODES, node)
    for _ in range(5):
        try:
            obj = api.request("GET", path, what=f"node {node}")
        except ApiException as exc:
            if exc.status == 404:  # no Node object (a test cluster, a node being removed)
                return False
            raise KubeApiError(f"node {node}: {api_message(exc)}", status=exc.status) from None
        conditions: list[dict[str, Any]] = list((obj.get("status") or {}).get("conditions") or [])
        old = next((c for c in conditions if c.get("type") == CONDITION_TYPE), None)
        if old is not None and all(old.get(k) == v for k, v in wanted.items()):
            return False
        stamp = now()
        moved = old is None or old.get("status") != wanted["status"]
        new = {
            **wanted,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp if moved else (old or {}).get("lastTransitionTime", stamp),
        }
        others = [c for c in conditions if c.get("type") != CONDITION_TYPE]
        obj.setdefault("status", {})["conditions"] = [*others, new]
        try:
            api.request("PUT", f"{path}/status", what=f"status of node {node}", body=obj)
            return True
        except ApiException as exc:
            if exc.status != 409:
                what = f"status of node {node}: {api_message(exc)}"
                raise KubeApiError(what, status=exc.status) from None
    raise KubeApiError(f"status of node {node}: it kept changing under five tries", status=409)


def reconcile_taint_rules(
    api: RawApi,
    node: str,
    topology: NodeTopology,
    *,
    driver: str = COMPANION_DRIVER,
    effect: TaintEffect = "NoSchedule",
) -> HealthWrites:
    """Make the node's DeviceTaintRules for ``driver``'s devices match ``topology``'s health.

    An API refusal raises :class:`~nvtopo.kube.retry.KubeApiError` in one line.
    """
    from kubernetes.client.exceptions import ApiException

    try:
        return _reconcile_taint_rules(api, node, topology, driver, effect)
    except ApiException as exc:
        what = f"DeviceTaintRules of node {node}: {api_message(exc)}"
        raise KubeApiError(what, status=exc.status) from None


def _reconcile_taint_rules(
    api: RawApi, node: str, topology: NodeTopology, driver: str, effect: TaintEffect
) -> HealthWrites:
    slices = api.list(
        RESOURCE_SLICES,
        what=f"ResourceSlices of driver {driver}",
        field_selector=f"spec.driver={driver},spec.nodeName={node}",
    )
    names = devices_by_uuid(slices, driver=driver, pool=node)
    wanted = {
        r["metadata"]["name"]: r
        for r in taint_rules(
            topology, node=node, devices_by_uuid=names, driver=driver, effect=effect
        )
    }
    have = {
        str(r["metadata"]["name"]): r
        for r in api.list(
            DEVICE_TAINT_RULES,
            what=f"DeviceTaintRules of node {node}",
            label_selector=f"{RULE_NODE_LABEL}={node}",
        )
    }
    created, deleted = [], []
    for name, rule in sorted(wanted.items()):
        current = have.get(name)
        if current is not None and _same_taint(current, rule):
            continue
        if current is not None:
            body = {**rule, "metadata": {**rule["metadata"], **_version(current)}}
            api.request("PUT", RawApi.item(DEVICE_TAINT_RULES, name), what=name, body=body)
        else:
            api.request("POST", DEVICE_TAINT_RULES, what=f"DeviceTaintRule {name}", body=rule)
        created.append(name)
    for name in sorted(set(have) - set(wanted)):
        api.request("DELETE", RawApi.item(DEVICE_TAINT_RULES, name), what=name)
        deleted.append(name)
    return HealthWrites(created=tuple(created), deleted=tuple(deleted))


def _version(obj: dict[str, Any]) -> dict[str, Any]:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return {"resourceVersion": rv} if rv else {}


def _same_taint(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    cur, want = current.get("spec") or {}, wanted["spec"]
    taint = {k: v for k, v in (cur.get("taint") or {}).items() if k != "timeAdded"}
    return bool(cur.get("deviceSelector") == want["deviceSelector"] and taint == want["taint"])
