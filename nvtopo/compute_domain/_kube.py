"""The few apiserver calls a ComputeDomain needs, on any group/version/plural.

Every object of a plan lives in a named API group (``resource.nvidia.com``,
``resource.k8s.io``, ``batch``), so ``CustomObjectsApi`` reaches them all with plain dicts:
no typed model per kind, and the same code for the CRD type as for Jobs. Errors from the
apiserver stay :class:`~kubernetes.client.exceptions.ApiException` (callers act on the
status code); a connection failure becomes one :class:`ComputeDomainError` line naming the
server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from nvtopo.compute_domain.errors import ComputeDomainError

__all__ = ["PLURALS", "REQUEST_TIMEOUT", "Kube", "api_message", "ref"]

#: (connect, read) seconds allowed to each request but a watch.
REQUEST_TIMEOUT = (10.0, 30.0)

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


def api_message(exc: Any) -> str:
    """``409 Conflict: jobs.batch "x" already exists`` from an ApiException."""
    detail = None
    body = getattr(exc, "body", None)
    if body:
        try:
            detail = json.loads(body).get("message")
        except (ValueError, AttributeError):
            detail = None
    head = f"{exc.status} {exc.reason}" if getattr(exc, "status", None) else str(exc.reason)
    return f"{head}: {detail}" if detail else head


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    if not group:
        raise ComputeDomainError(f"core API objects ({api_version}) are not handled here")
    return group, version


class Kube:
    """Create, read, delete, list and watch namespaced objects through one ApiClient."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._client = client
        self.api = client.CustomObjectsApi(api_client)
        self.host = getattr(getattr(api_client, "configuration", None), "host", "the apiserver")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from urllib3.exceptions import HTTPError

        # (connect, read) seconds: an apiserver that accepts the connection and never answers
        # must fail the call, not hang it past every timeout the user gave.
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return fn(*args, **kwargs)
        except HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ComputeDomainError(
                f"cannot reach the apiserver at {self.host}: {reason}"
            ) from None

    def _object(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = self._call(fn, *args, **kwargs)
        return found

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        group, version = _group_version(manifest["apiVersion"])
        meta = manifest["metadata"]
        return self._object(
            self.api.create_namespaced_custom_object,
            group,
            version,
            meta["namespace"],
            PLURALS[manifest["kind"]],
            manifest,
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        group, version = _group_version(api_version)
        return self._object(
            self.api.get_namespaced_custom_object, group, version, namespace, PLURALS[kind], name
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        group, version = _group_version(api_version)
        # Background: the Job's pods (and claims made from templates) go with it.
        options = self._client.V1DeleteOptions(propagation_policy="Background")
        self._call(
            self.api.delete_namespaced_custom_object,
            group,
            version,
            namespace,
            PLURALS[kind],
            name,
            body=options,
        )

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        group, version = _group_version(api_version)
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if limit:
            kwargs["limit"] = limit
        return self._object(
            self.api.list_namespaced_custom_object,
            group,
            version,
            namespace,
            PLURALS[kind],
            **kwargs,
        )

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
        from kubernetes import watch
        from urllib3.exceptions import HTTPError

        group, version = _group_version(api_version)
        w = watch.Watch()  # type: ignore[no-untyped-call]
        stream = w.stream(  # type: ignore[no-untyped-call]
            self.api.list_namespaced_custom_object,
            group,
            version,
            namespace,
            PLURALS[kind],
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=max(1, int(timeout)),
            _request_timeout=timeout + 10,
        )
        try:
            yield from stream
        except HTTPError:
            return
        finally:
            w.stop()  # type: ignore[no-untyped-call]
