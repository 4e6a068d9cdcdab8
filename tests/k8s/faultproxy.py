"""A fault-injecting HTTP proxy in front of the test kube-apiserver, on loopback.

Clients talk plain HTTP to ``proxy.url`` (bearer token as usual); the proxy forwards each
request over TLS to the real apiserver and relays the answer, unless a :class:`Fault`
matches: then it answers the first ``times`` matching requests itself, with the status (429,
500, 503...), a Kubernetes ``Status`` body and an optional ``Retry-After`` header, as an
overloaded or restarting apiserver would. It logs every request (method, path, status,
injected or not) so tests can count reads and writes, can delay forwarded writes (to stop a
client half way), and can run a hook just before forwarding (to play a concurrent writer).

Only loopback addresses are used: the proxy listens on 127.0.0.1 and forwards to the
fixture's apiserver, itself on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["WRITE_METHODS", "Entry", "Fault", "FaultProxy"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)
_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class Fault:
    """Answer the first ``times`` requests matching ``method`` and ``path`` with ``status``."""

    method: str | None
    path: str
    status: int
    times: int
    retry_after: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method == method)
            and re.search(self.path, path) is not None
        )


@dataclass(frozen=True)
class Entry:
    """One request the proxy saw."""

    method: str
    path: str
    status: int
    injected: bool


class FaultProxy:
    """See the module text. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, upstream: str, ca_file: Path | str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 443
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.faults: list[Fault] = []
        self.log: list[Entry] = []
        self.write_delay = 0.0
        self.before_forward: Callable[[str, str, bytes], None] | None = None
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def fail(
        self,
        status: int,
        *,
        times: int,
        method: str | None = None,
        path: str = "",
        retry_after: str | None = None,
    ) -> Fault:
        """Inject ``status`` for the next ``times`` requests matching ``method``/``path``."""
        fault = Fault(method, path, status, times, retry_after)
        with self.lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        """Forget faults, the log, the delay and the hook."""
        with self.lock:
            self.faults.clear()
            self.log.clear()
            self.write_delay = 0.0
            self.before_forward = None

    def count(self, *, writes: bool | None = None, injected: bool | None = None) -> int:
        """Requests logged, optionally only writes (or reads), injected (or forwarded)."""
        with self.lock:
            entries = list(self.log)
        return sum(
            1
            for e in entries
            if (writes is None or (e.method in WRITE_METHODS) == writes)
            and (injected is None or e.injected == injected)
        )

    def client(self, token: str) -> Any:
        """A ``kubernetes.client.ApiClient`` that talks to the apiserver through this proxy."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(cfg)

    # -- per request ---------------------------------------------------------------------

    def _injected(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, method: str, path: str, status: int, injected: bool) -> None:
        with self.lock:
            self.log.append(Entry(method, path, status, injected))

    def connect(self) -> http.client.HTTPSConnection:
        """A new TLS connection to the apiserver."""
        return http.client.HTTPSConnection(
            self.upstream_host, self.upstream_port, context=self.context, timeout=60
        )


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    upstream: http.client.HTTPSConnection | None = None

    def finish(self) -> None:
        # One upstream connection per client connection, closed with it.
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        super().finish()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            if self.upstream is None:
                self.upstream = self.owner.connect()
            try:
                self.upstream.request(method, path, body=body or None, headers=headers)
                resp = self.upstream.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                # A kept-alive upstream connection that went stale: open a new one once.
                self.upstream.close()
                self.upstream = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the proxy's own log is FaultProxy.log

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        proxy = self.owner
        method, path = self.command, self.path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = proxy._injected(method, path)
        if fault is not None:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected by the test proxy: {fault.status}",
                "reason": _REASONS.get(fault.status, "InternalError"),
                "code": fault.status,
            }
            headers = [("Content-Type", "application/json")]
            if fault.retry_after is not None:
                headers.append(("Retry-After", fault.retry_after))
            proxy._record(method, path, fault.status, True)
            self._send(
                fault.status, HTTPStatus(fault.status).phrase, headers, json.dumps(status).encode()
            )
            return
        if method in WRITE_METHODS and proxy.write_delay:
            time.sleep(proxy.write_delay)
        hook = proxy.before_forward
        if hook is not None:
            hook(method, path, body)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
        status_code, reason, answer_headers, data = self.forward(method, path, headers, body)
        proxy._record(method, path, status_code, False)
        self._send(status_code, reason, answer_headers, data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
