"""The few apiserver calls a ComputeDomain needs, on nvtopo's one Kubernetes client.

Every object of a plan lives in a named API group (``resource.nvidia.com``,
``resource.k8s.io``, ``batch``), reached as plain JSON through
:class:`~nvtopo.kube.client.RawApi`: the same timeouts, the same retries of 429/5xx (with
the server's ``Retry-After``) and the same error line as the publisher. A refusal that is not
retried (404, 409, 422, 403) stays :class:`~kubernetes.client.exceptions.ApiException`, so
callers act on the status code; retries that run out, an apiserver that cannot be reached
and a TLS failure become one :class:`ComputeDomainError` line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from nvtopo.compute_domain.errors import ComputeDomainError
from nvtopo.kube.client import RawApi
from nvtopo.kube.retry import KubeApiError, RetryPolicy

__all__ = ["PLURALS", "Kube", "ref"]

T = TypeVar("T")

#: Resource (plural) of each kind a plan creates.
PLURALS = {
    "ComputeDomain": "computedomains",
    "ResourceClaimTemplate": "resourceclaimtemplates",
    "Job": "jobs",
}


def ref(manifest: dict[str, Any]) -> str:
    """``Kind namespace/name`` of a manifest, for messages."""
    meta = manifest["metadata"]
    return f"{manifest['kind']} {meta.get('namespace', 'default')}/{meta['name']}"


def _collection(api_version: str, kind: str, namespace: str) -> str:
    group, _, version = api_version.rpartition("/")
    if not group:
        raise ComputeDomainError(f"core API objects ({api_version}) are not handled here")
    return f"/apis/{group}/{version}/namespaces/{namespace}/{PLURALS[kind]}"


class Kube:
    """Create, read, delete, list and watch namespaced objects through one ApiClient.

    Parameters
    ----------
    api_client
        A configured ``kubernetes.client.ApiClient``.
    policy
        Retry policy for 429/5xx answers and failed connections.
    sleep
        Sleep between retries (tests pass one that records).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.raw = RawApi(api_client, policy=policy, sleep=sleep or time.sleep)
        self.host = self.raw.host

    @staticmethod
    def _once(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except KubeApiError as exc:  # retries ran out, or the server cannot be reached
            raise ComputeDomainError(str(exc)) from None

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """POST ``manifest``; with ``dry_run`` the apiserver validates it and stores nothing
        (``dryRun=All``, admission included)."""
        meta = manifest["metadata"]
        path = _collection(manifest["apiVersion"], manifest["kind"], meta["namespace"])
        query = [("dryRun", "All")] if dry_run else None
        what = f"create {ref(manifest)}" + (" (server dry run)" if dry_run else "")
        return self._once(
            lambda: self.raw.request("POST", path, what=what, query=query, body=manifest)
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        path = RawApi.item(_collection(api_version, kind, namespace), name)
        what = f"get {kind} {namespace}/{name}"
        return self._once(lambda: self.raw.request("GET", path, what=what))

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = RawApi.item(_collection(api_version, kind, namespace), name)
        # Background: the Job's pods (and claims made from templates) go with it.
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        what = f"delete {kind} {namespace}/{name}"
        self._once(lambda: self.raw.request("DELETE", path, what=what, body=body))

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        path = _collection(api_version, kind, namespace)
        query: list[tuple[str, Any]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if limit:
            query.append(("limit", limit))
        what = f"list {kind}s in namespace {namespace}"
        return self._once(lambda: self.raw.request("GET", path, what=what, query=query))

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        resource_version: str,
        timeout: float,
    ) -> Iterator[dict[str, Any]]:
        """Events on one object after ``resource_version``, for about ``timeout`` seconds.

        The stream simply ends when the connection drops or times out: the caller reads the
        object again, which reports a server that is really gone.
        """
        yield from self.raw.watch(
            _collection(api_version, kind, namespace),
            resource_version=resource_version,
            timeout=timeout,
            field_selector=f"metadata.name={name}",
        )
