"""A Python client of the placement service that speaks in nvtopo's own types.

Examples
--------
>>> from nvtopo.service import Client
>>> with Client("unix:/run/nvtopo/placement.sock") as c:          # doctest: +SKIP
...     held = c.reserve(gpus=16, nodes=4, domain="required", ttl=60, key="job-42")
...     c.release(held.id)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from nvtopo.exceptions import NvtopoError
from nvtopo.place import Domain, Placement, PlacementRequest
from nvtopo.select import Selection
from nvtopo.service import convert
from nvtopo.service._proto import placement_pb2 as pb
from nvtopo.service._proto import placement_pb2_grpc as pb_grpc
from nvtopo.service.explain import CliqueVerdict, Verdict
from nvtopo.service.state import CliqueLoad

__all__ = ["Capacity", "Client", "Explanation", "Held", "ServiceError"]

_VERDICT_NAMES: dict[int, Verdict] = {
    pb.VERDICT_TAKEN: "taken",
    pb.VERDICT_RANKED_LOWER: "ranked_lower",
    pb.VERDICT_TOO_FEW_FREE_NODES: "too_few_free_nodes",
    pb.VERDICT_UNHEALTHY_FABRIC: "unhealthy_fabric",
    pb.VERDICT_SPARES_HELD: "spares_held",
    pb.VERDICT_IN_COMPUTE_DOMAIN: "in_compute_domain",
}


class ServiceError(NvtopoError):
    """A call failed; :attr:`code` is the gRPC status code (``grpc.StatusCode``)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.details = message


@dataclass(frozen=True)
class Held:
    """A reservation (or a placement held by a non-dry-run :meth:`Client.place`)."""

    id: str
    placement: Placement
    expires_unix_ms: int = 0
    idempotency_key: str = ""
    created: bool = True


@dataclass(frozen=True)
class Explanation:
    """The placement chosen (None: none fits, see :attr:`infeasible`), verdicts per clique."""

    placement: Placement | None
    infeasible: str
    cliques: tuple[CliqueVerdict, ...]


@dataclass(frozen=True)
class Capacity:
    """One ``WatchCapacity`` update."""

    resume_token: str
    cliques: tuple[CliqueLoad, ...]
    free_gpus: int
    reservations: int


class Client:
    """Calls ``nvtopo.v1.PlacementService``.

    Parameters
    ----------
    target
        ``unix:/path/to.sock`` (or a bare path), or ``host:port`` for TCP.
    timeout
        Deadline of each call, seconds.
    root_ca, cert, key
        PEM files for TLS (``root_ca``) and mutual TLS (``cert`` + ``key``); without
        ``root_ca`` a TCP target is plaintext.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        timeout: float = 10.0,
        root_ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        target = str(target)
        if target.startswith("/"):
            target = f"unix:{target}"
        self.timeout = timeout
        if root_ca is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=root_ca.read_bytes(),
                private_key=key.read_bytes() if key else None,
                certificate_chain=cert.read_bytes() if cert else None,
            )
            self.channel = grpc.secure_channel(target, creds)
        else:
            self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.PlacementServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, message: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, method)(message, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise ServiceError(exc.code(), exc.details() or "") from None

    def select(self, node: str, count: int, *, required: tuple[int, ...] = ()) -> Selection:
        """The best ``count`` free GPUs of ``node``."""
        m = self._call("Select", pb.SelectRequest(node=node, count=count, required=required))
        s = m.selection
        pair = tuple(s.bottleneck_pair)
        return Selection(
            gpus=tuple(s.gpus), bottleneck=s.bottleneck, total=s.total, numa_keys=s.numa_keys,
            cut=s.cut, optimal=s.optimal,
            bottleneck_pair=(pair[0], pair[1]) if len(pair) == 2 else None,
            bottleneck_path=s.bottleneck_path or None, remaining=tuple(s.remaining),
        )  # fmt: skip

    def place(
        self, *, gpus: int, nodes: int | None = None, domain: Domain = "preferred",
        dry_run: bool = True,
    ) -> Placement | Held:  # fmt: skip
        """The best placement; a dry run holds nothing, otherwise a :class:`Held` comes back."""
        r = convert.request_message(PlacementRequest(gpus, nodes, domain))
        m = self._call("Place", pb.PlaceRequest(request=r, dry_run=dry_run))
        placement = convert.placement_from_message(m.placement)
        return placement if dry_run else Held(m.reservation_id, placement)

    def reserve(
        self, *, gpus: int, nodes: int | None = None, domain: Domain = "preferred",
        ttl: int = 60, key: str = "",
    ) -> Held:  # fmt: skip
        """Hold the best placement for ``ttl`` seconds; ``key`` makes retries safe."""
        r = convert.request_message(PlacementRequest(gpus, nodes, domain))
        m = self._call(
            "Reserve", pb.ReserveRequest(request=r, ttl_seconds=ttl, idempotency_key=key)
        )
        res = m.reservation
        return Held(
            res.id, convert.placement_from_message(res.placement), res.expires_unix_ms,
            res.idempotency_key, m.created,
        )  # fmt: skip

    def release(self, reservation_id: str) -> Placement:
        """Give a reservation back; the placement it held."""
        m = self._call("Release", pb.ReleaseRequest(reservation_id=reservation_id))
        return convert.placement_from_message(m.placement)

    def explain(
        self, *, gpus: int, nodes: int | None = None, domain: Domain = "preferred"
    ) -> Explanation:
        """The placement and a verdict per clique."""
        r = convert.request_message(PlacementRequest(gpus, nodes, domain))
        m = self._call("Explain", pb.ExplainRequest(request=r))
        return Explanation(
            convert.placement_from_message(m.placement) if m.HasField("placement") else None,
            m.infeasible,
            tuple(
                CliqueVerdict(
                    v.clique,
                    _VERDICT_NAMES[v.verdict],
                    v.reason,
                    v.nodes,
                    v.eligible_nodes,
                    v.free_gpus,
                )
                for v in m.cliques
            ),
        )

    def watch_capacity(
        self, *, resume_token: str = "", timeout: float | None = None
    ) -> Iterator[Capacity]:
        """Capacity now (unless ``resume_token`` is current), then after every change."""
        stream = self.stub.WatchCapacity(
            pb.WatchCapacityRequest(resume_token=resume_token), timeout=timeout
        )
        try:
            for m in stream:
                yield Capacity(
                    m.resume_token,
                    tuple(
                        CliqueLoad(c.clique, c.nodes, c.free_nodes, c.gpus, c.free_gpus)
                        for c in m.cliques
                    ),
                    m.free_gpus,
                    m.reservations,
                )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise ServiceError(exc.code(), exc.details() or "") from None
        finally:
            stream.cancel()

    def health(self, service: str = "") -> str:
        """``SERVING``, ``NOT_SERVING``... from ``grpc.health.v1``."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ServiceError(exc.code(), exc.details() or "") from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
