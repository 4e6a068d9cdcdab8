"""Raw JSON requests through a ``kubernetes.client.ApiClient``, retried and counted.

The typed API classes of the official client turn every body into a pydantic model and
back: slow for a thousand slices, and a field the installed client does not know yet would
be dropped on the way. Here the client still does authentication (tokens, in-cluster token
refresh, client certificates), TLS and connection pooling (``param_serialize`` and
``call_api``), while bodies stay the plain dicts nvtopo builds and compares.

Every HTTP request goes through ``ApiClient.call_api``, so a test can count them there; this
class also counts them (:attr:`RawApi.requests`, :attr:`RawApi.writes`) for the
:class:`~nvtopo.dra.publish.PublishResult`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from nvtopo.kube.retry import RetryPolicy, call_with_retry

__all__ = ["REQUEST_TIMEOUT", "RESOURCE_CLAIMS", "RESOURCE_SLICES", "RawApi"]

#: Paths of the two ``resource.k8s.io/v1`` collections nvtopo reads and writes.
RESOURCE_SLICES = "/apis/resource.k8s.io/v1/resourceslices"
RESOURCE_CLAIMS = "/apis/resource.k8s.io/v1/resourceclaims"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: (connect, read) seconds of every request but a watch: a request that hangs must fail and
#: be retried, not block forever.
REQUEST_TIMEOUT = (10.0, 30.0)
_PAGE = 500


class RawApi:
    """``GET``/``POST``/``PUT``/``DELETE`` of JSON objects with retries on 429/5xx.

    Parameters
    ----------
    api_client
        A configured ``kubernetes.client.ApiClient``.
    policy
        Retry policy for 429/5xx and connection failures.
    sleep
        Sleep used between retries (a caller that must stop on SIGTERM passes one that
        raises).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.client = api_client
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.requests = 0
        self.writes = 0
        self.retries = 0
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        config = getattr(self.client, "configuration", None)
        return str(getattr(config, "host", "the apiserver"))

    def _count(self, method: str) -> None:
        with self._lock:
            self.requests += 1
            if method in _WRITES:
                self.writes += 1

    def _retried(self, _exc: BaseException, _delay: float) -> None:
        with self._lock:
            self.retries += 1

    def _once(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None,
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        self._count(method)
        response = self.client.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        if not data:
            return {}
        result: dict[str, Any] = json.loads(data)
        return result

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: list[tuple[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One request, retried on 429/5xx; other failures raise ``ApiException`` at once.

        ``what`` names the object and operation for the final error line.
        """
        return call_with_retry(
            lambda: self._once(method, path, query, body),
            what=what,
            policy=self.policy,
            sleep=self.sleep,
            on_retry=self._retried,
            host=self.host,
        )

    def list(
        self,
        path: str,
        *,
        what: str,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a collection, page by page (``limit``/``continue``)."""
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", _PAGE)]
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = self.request("GET", path, what=what, query=query)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def watch(
        self,
        path: str,
        *,
        resource_version: str,
        timeout: float,
        field_selector: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type": ..., "object": {...}}``) on a collection, one per line.

        Not retried: the stream ends when the server closes it, after about ``timeout``
        seconds, or when the connection drops, and the caller reads the object again (a
        request that is retried, and that reports a server that is really gone). A refusal
        (410 Gone, 403) raises ``ApiException``.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", max(1, int(timeout))),
            ("allowWatchBookmarks", "false"),
        ]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        request = self.client.param_serialize(
            method="GET",
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        self._count("GET")
        try:
            response = self.client.call_api(
                *request, _request_timeout=(REQUEST_TIMEOUT[0], timeout + 10)
            )
        except HTTPError:
            return
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException(http_resp=response)
        stream = response.response  # urllib3's, not preloaded: read line by line
        try:
            buffer = b""
            for chunk in stream.stream(4096, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event: dict[str, Any] = json.loads(line)
                        yield event
        except (HTTPError, ValueError):
            return
        finally:
            stream.release_conn()

    @staticmethod
    def item(path: str, name: str) -> str:
        """The path of the object ``name`` in collection ``path``."""
        return f"{path}/{quote(name, safe='')}"
