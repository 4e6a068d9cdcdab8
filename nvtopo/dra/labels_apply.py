"""The node agent's labels: applied with server-side apply, never over another owner's.

nvtopo applies one Node apply configuration under its own field manager
(:data:`FIELD_MANAGER`), holding every label it wants on the node:

- its own keys (:data:`~nvtopo.export.labels.OWN_LABELS`) always;
- a shared key (:data:`~nvtopo.export.labels.SHARED_LABELS`: ``nvidia.com/gpu.clique``,
  Topograph's ``accelerator.topograph.run/*``) only when the Node's ``managedFields`` show
  that no other manager holds it and the label is absent or already nvtopo's. A label
  present with no manager recorded counts as another component's.

A key that nvtopo held and leaves out of its next configuration (the node left its clique,
or its fabric turned unhealthy) is removed by the apiserver, unless another manager also
holds it. The apply is not forced, so a shared key that another component wrote between the
read and the write makes it fail with a conflict; the Node is then read again and the
configuration recomputed, which leaves that key out. A conflict that remains after two such
reads can only be on nvtopo's own keys (someone wrote ``topology.nvtopo.dev/*`` by hand):
the third apply, from a fresh read, is forced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nvtopo.export.labels import OWN_LABELS, SHARED_LABELS
from nvtopo.kube.client import RawApi
from nvtopo.kube.retry import KubeApiError, RetryPolicy, api_message

__all__ = [
    "FIELD_MANAGER",
    "LabelResult",
    "apply_cluster_labels",
    "apply_node_labels",
    "label_owners",
]

#: The field manager under which nvtopo applies node labels.
FIELD_MANAGER = "nvtopo-labels"
_NODES = "/api/v1/nodes"


@dataclass(frozen=True)
class LabelResult:
    """What one apply did on one node."""

    node: str
    #: Labels nvtopo holds after the apply (key → value).
    applied: dict[str, str]
    #: Keys nvtopo held before and gave up (removed unless someone else holds them too).
    released: tuple[str, ...]
    #: Shared keys left alone: key → the managers that hold them (``?`` for none recorded).
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dry_run: bool = False

    def summary(self) -> str:
        """One line: node, labels set, released and skipped."""
        parts = [f"node {self.node}: {len(self.applied)} labels"]
        if self.released:
            parts.append("released " + ",".join(self.released))
        if self.skipped:
            parts.append(
                "left alone "
                + ",".join(f"{k} ({'/'.join(v)})" for k, v in sorted(self.skipped.items()))
            )
        return "; ".join(parts) + (" (dry run)" if self.dry_run else "")


def label_owners(node: dict[str, Any]) -> dict[str, set[str]]:
    """Label key → the field managers holding it, from the Node's ``managedFields``.

    An applier's entry is named ``<manager>`` and any other ``<manager>:<operation>``, so
    that nvtopo's own apply is told apart from an update by a tool of the same name.
    """
    owners: dict[str, set[str]] = {}
    for entry in (node.get("metadata") or {}).get("managedFields") or []:
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:labels") or {}
        who = str(entry.get("manager", "?"))
        if entry.get("operation") != "Apply":
            who = f"{who}:{entry.get('operation', '?')}"
        for key in fields:
            if key.startswith("f:"):
                owners.setdefault(key[2:], set()).add(who)
    return owners


def _configuration(
    node: dict[str, Any], wanted: dict[str, str]
) -> tuple[dict[str, str], dict[str, tuple[str, ...]], tuple[str, ...]]:
    """Labels to apply, shared keys skipped (with their holders), keys released."""
    present = (node.get("metadata") or {}).get("labels") or {}
    owners = label_owners(node)
    mine = {k for k, who in owners.items() if FIELD_MANAGER in who}
    labels: dict[str, str] = {}
    skipped: dict[str, tuple[str, ...]] = {}
    for key, value in wanted.items():
        others = sorted(owners.get(key, set()) - {FIELD_MANAGER})
        if key in SHARED_LABELS:
            if others:
                skipped[key] = tuple(others)
                continue
            if key in present and key not in mine:
                skipped[key] = ("?",)
                continue
        elif key not in OWN_LABELS:
            raise ValueError(f"label {key} is not one nvtopo manages")
        labels[key] = value
    released = tuple(sorted(mine - set(labels)))
    return labels, skipped, released


def apply_node_labels(
    api_client: Any,
    node: str,
    wanted: dict[str, str],
    *,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
) -> LabelResult:
    """Apply ``wanted`` (from :func:`nvtopo.export.labels.place_labels`) to Node ``node``.

    Needs ``get`` and ``patch`` on nodes. ``dry_run`` sends the apply with
    ``dryRun=All``: the apiserver checks it and changes nothing.

    Raises
    ------
    KubeApiError
        The Node cannot be read or patched (one line: what, status, message).
    """
    from kubernetes.client.exceptions import ApiException

    api = RawApi(api_client, policy=retry)
    path = RawApi.item(_NODES, node)
    for attempt in range(3):
        try:
            current = api.request("GET", path, what=f"get Node {node}")
        except ApiException as exc:
            raise KubeApiError(f"get Node {node}: {api_message(exc)}", status=exc.status) from None
        labels, skipped, released = _configuration(current, wanted)
        force = attempt == 2
        try:
            _apply(api, path, node, labels, force=force, dry_run=dry_run)
        except ApiException as exc:
            if exc.status == 409 and attempt < 2:
                continue  # someone wrote a label between the read and the apply: read again
            raise KubeApiError(
                f"apply labels to Node {node}: {api_message(exc)}", status=exc.status
            ) from None
        return LabelResult(node, labels, released, skipped, dry_run)
    raise AssertionError("unreachable")  # pragma: no cover


def _apply(
    api: RawApi, path: str, node: str, labels: dict[str, str], *, force: bool, dry_run: bool
) -> None:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": labels}}
    query: list[tuple[str, Any]] = [("fieldManager", FIELD_MANAGER)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    client = api.client
    request = client.param_serialize(
        method="PATCH",
        resource_path=path,
        query_params=query,
        header_params={
            "Accept": "application/json",
            "Content-Type": "application/apply-patch+yaml",
        },
        body=json.dumps(body),  # JSON is YAML; the client sends a str body as it is
        auth_settings=["BearerToken"],
    )

    def once() -> None:
        from kubernetes.client.exceptions import ApiException

        api.requests += 1
        api.writes += 1
        response = client.call_api(*request, _request_timeout=(10.0, 30.0))
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)

    from nvtopo.kube.retry import call_with_retry

    call_with_retry(once, what=f"apply labels to Node {node}", policy=api.policy, sleep=api.sleep)


def apply_cluster_labels(
    api_client: Any,
    cluster: Any,
    *,
    node: str | None = None,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
) -> list[LabelResult]:
    """Apply the labels of every node of ``cluster`` (a :class:`~nvtopo.model.Cluster`).

    ``node`` limits it to that node. Each node's labels come from
    :func:`nvtopo.export.labels.node_labels`, so a node whose clique the health rule drops
    loses its clique keys.
    """
    from nvtopo.export.labels import node_labels

    wanted = node_labels(cluster)
    names = [node] if node is not None else sorted(wanted)
    return [
        apply_node_labels(api_client, n, wanted.get(n, {}), dry_run=dry_run, retry=retry)
        for n in names
    ]
