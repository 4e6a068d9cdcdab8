"""The gRPC server of ``nvtopo serve``: listeners, limits, health, reflection, shutdown.

- Listens on a unix socket (``unix:PATH``, made ``0660`` so only the owner and its group can
  call) unless TCP is asked for; TCP needs TLS (``tls_cert`` + ``tls_key``), mutual TLS with
  ``client_ca``, or an explicit ``insecure=True``.
- At most ``max_concurrent`` calls at once (streams included); the next one gets
  ``RESOURCE_EXHAUSTED`` at once instead of waiting in an unbounded queue. Requests larger
  than ``max_message`` bytes get ``RESOURCE_EXHAUSTED`` from gRPC itself.
- ``grpc.health.v1.Health`` says ``SERVING`` for ``""`` and ``nvtopo.v1.PlacementService``
  once the state is ready, ``NOT_SERVING`` during shutdown; server reflection lists both.
- :meth:`PlacementServer.stop`: new calls are refused, calls in flight get ``grace``
  seconds to finish, open ``WatchCapacity`` streams end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nvtopo.exceptions import NvtopoError
from nvtopo.service._proto import placement_pb2 as pb
from nvtopo.service._proto import placement_pb2_grpc as pb_grpc
from nvtopo.service.servicer import PlacementServicer
from nvtopo.service.state import PlacementState

__all__ = ["SERVICE_NAME", "PlacementServer", "Tls"]

#: Full name of the placement service, for health checks and reflection.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PlacementService"].full_name
_SWEEP = 0.5  # seconds between expiry sweeps


@dataclass(frozen=True)
class Tls:
    """Server certificate and key (PEM files); with ``client_ca``, clients must present a
    certificate it signed (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        try:
            pair = (self.key.read_bytes(), self.cert.read_bytes())
            ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        except OSError as exc:
            raise NvtopoError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None
        return grpc.ssl_server_credentials(
            [pair], root_certificates=ca, require_client_auth=ca is not None
        )


class PlacementServer:
    """``nvtopo.v1.PlacementService`` with health and reflection, on a socket or TCP.

    Parameters
    ----------
    state
        The cluster and reservations to serve.
    socket
        Unix socket path (default listener). None: no unix socket.
    tcp
        ``HOST:PORT`` to listen on as well (port 0 picks one; see :attr:`port`).
    tls
        Certificates for TCP.
    insecure
        Allow TCP without TLS (loopback tests, a mesh that encrypts).
    workers
        Threads serving calls.
    max_concurrent
        Calls in progress beyond which new ones get ``RESOURCE_EXHAUSTED``.
    max_message
        Largest request accepted, bytes.
    """

    def __init__(
        self,
        state: PlacementState,
        *,
        socket: str | Path | None = None,
        tcp: str | None = None,
        tls: Tls | None = None,
        insecure: bool = False,
        workers: int = 16,
        max_concurrent: int = 256,
        max_message: int = 64 * 1024,
    ) -> None:
        if socket is None and tcp is None:
            raise NvtopoError("nothing to listen on: give a unix socket path or a TCP address")
        if tcp is not None and tls is None and not insecure:
            raise NvtopoError(
                "TCP needs TLS (--tls-cert, --tls-key) or --insecure to allow plain TCP"
            )
        self.state = state
        self.stopping = threading.Event()
        self.socket = Path(socket) if socket is not None else None
        self.servicer = PlacementServicer(state, epoch=secrets.token_hex(4), stopping=self.stopping)
        self.health = health.HealthServicer()
        options = [
            ("grpc.max_receive_message_length", max_message),
            ("grpc.so_reuseport", 0),
        ]
        # Streams hold a worker each, so the pool matches the concurrency bound.
        self.server = grpc.server(
            ThreadPoolExecutor(
                max_workers=max(workers, max_concurrent), thread_name_prefix="nvtopo-rpc"
            ),
            options=options,
            maximum_concurrent_rpcs=max_concurrent,
        )
        pb_grpc.add_PlacementServiceServicer_to_server(self.servicer, self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = 0
        if self.socket is not None:
            try:
                self.socket.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    self.socket.unlink()  # left by a server that was killed
            except OSError as exc:
                raise NvtopoError(f"unix socket {self.socket}: {exc.strerror}") from None
            if not self.server.add_insecure_port(f"unix:{self.socket}"):
                raise NvtopoError(f"cannot listen on unix socket {self.socket}")
        if tcp is not None:
            try:
                if tls is not None:
                    self.port = self.server.add_secure_port(tcp, tls.credentials())
                else:
                    self.port = self.server.add_insecure_port(tcp)
            except RuntimeError:
                self.port = 0
            if not self.port:
                raise NvtopoError(f"cannot listen on {tcp}")
        self._sweeper = threading.Thread(target=self._sweep, name="nvtopo-sweep", daemon=True)

    def start(self, *, ready: bool = True) -> PlacementServer:
        """Start serving; ``ready=False`` keeps health at NOT_SERVING until :meth:`ready`."""
        self.server.start()
        if self.socket is not None:
            os.chmod(self.socket, 0o660)
        self._sweeper.start()
        if ready:
            self.ready()
        else:
            self._health(health_pb2.HealthCheckResponse.NOT_SERVING)
        return self

    def ready(self) -> None:
        """Report SERVING."""
        self._health(health_pb2.HealthCheckResponse.SERVING)

    def _health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def _sweep(self) -> None:
        while not self.stopping.wait(_SWEEP):
            self.state.sweep()

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let calls in flight finish within ``grace`` seconds, end streams."""
        self._health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.stopping.set()
        self.state.wake()
        self.server.stop(grace).wait()
        if self.socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()

    def wait(self) -> None:
        """Block until the server stops."""
        self.server.wait_for_termination()
