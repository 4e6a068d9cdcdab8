"""The ``nvtopo.v1.PlacementService`` RPCs over a :class:`PlacementState`.

Status codes: a malformed field is ``INVALID_ARGUMENT`` naming it; an unknown node or
reservation ``NOT_FOUND``; a well-formed request that cannot be met now
``FAILED_PRECONDITION`` with the reason; an idempotency key reused for another request
``ALREADY_EXISTS``; a call whose deadline has passed before it starts ``DEADLINE_EXCEEDED``;
any call during shutdown ``UNAVAILABLE``. Overload (``RESOURCE_EXHAUSTED``) is the server's
bounded queue, set up in :mod:`nvtopo.service.server`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from nvtopo.exceptions import InfeasibleError, SelectionError, TopologyError
from nvtopo.select import select_gpus
from nvtopo.service import convert
from nvtopo.service._proto import placement_pb2 as pb
from nvtopo.service._proto import placement_pb2_grpc as pb_grpc
from nvtopo.service.state import KeyConflictError, PlacementState, UnknownReservationError

__all__ = ["PlacementServicer"]

log = logging.getLogger("nvtopo.service")
_T = TypeVar("_T")
_WATCH_TICK = 1.0  # seconds between checks of a stream's liveness while nothing changes


def _checked(
    method: Callable[[PlacementServicer, Any, grpc.ServicerContext], _T],
) -> Callable[[PlacementServicer, Any, grpc.ServicerContext], _T]:
    """Map nvtopo's errors to status codes; refuse calls past their deadline or at shutdown."""

    @functools.wraps(method)
    def run(self: PlacementServicer, request: Any, context: grpc.ServicerContext) -> _T:
        if self.stopping.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is shutting down")
        left = context.time_remaining()
        if left is not None and left <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the call ran")
        try:
            return method(self, request, context)
        except SelectionError as exc:
            code, text = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except InfeasibleError as exc:
            code, text = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        except UnknownReservationError as exc:
            code, text = grpc.StatusCode.NOT_FOUND, str(exc)
        except KeyConflictError as exc:
            code, text = grpc.StatusCode.ALREADY_EXISTS, str(exc)
        context.abort(code, text)
        raise AssertionError("context.abort returned")  # it raises

    return run


class PlacementServicer(pb_grpc.PlacementServiceServicer):  # type: ignore[misc]
    """The six RPCs of ``nvtopo.v1.PlacementService``.

    Parameters
    ----------
    state
        The cluster and its reservations.
    epoch
        Names this server instance in resume tokens, so a token from before a restart
        starts a stream with the current capacity.
    stopping
        Set at shutdown: new calls get ``UNAVAILABLE`` and streams end.
    """

    def __init__(self, state: PlacementState, *, epoch: str, stopping: threading.Event) -> None:
        self.state = state
        self.epoch = epoch
        self.stopping = stopping

    @_checked
    def Select(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.node:
            raise SelectionError("node: required")
        try:
            node = self.state.cluster.node(request.node)
        except TopologyError:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"node: no node {request.node!r} in the cluster"
            )
        count = len(node.topology.gpus)
        if not 1 <= request.count <= count:
            raise SelectionError(
                f"count: must be 1 to {count} (the node's GPUs), got {request.count}"
            )
        known = set(node.topology.gpu_indices)
        for g in request.required:
            if g not in known:
                raise SelectionError(f"required: GPU {g} is not on node {node.name}")
        free = self.state.free_gpus(node.name)
        try:
            s = select_gpus(node.topology, request.count, available=free, required=request.required)
        except SelectionError as exc:
            raise SelectionError(f"required: {exc}") from None
        return pb.SelectResponse(node=node.name, selection=convert.selection_message(s))

    @_checked
    def Place(self, request: Any, context: grpc.ServicerContext) -> Any:
        r = convert.placement_request(request)
        if request.dry_run:
            return pb.PlaceResponse(placement=convert.placement_message(self.state.place(r)))
        held, _ = self.state.reserve(r, ttl=None)
        return pb.PlaceResponse(
            placement=convert.placement_message(held.placement), reservation_id=held.id
        )

    @_checked
    def Reserve(self, request: Any, context: grpc.ServicerContext) -> Any:
        r = convert.placement_request(request)
        ttl = convert.ttl_seconds(request.ttl_seconds)
        held, created = self.state.reserve(r, ttl=ttl, idempotency_key=request.idempotency_key)
        return pb.ReserveResponse(reservation=convert.reservation_message(held), created=created)

    @_checked
    def Release(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.reservation_id:
            raise SelectionError("reservation_id: required")
        gone = self.state.release(request.reservation_id)
        return pb.ReleaseResponse(placement=convert.placement_message(gone.placement))

    @_checked
    def Explain(self, request: Any, context: grpc.ServicerContext) -> Any:
        r = convert.placement_request(request)
        placement, why, verdicts = self.state.explain(r)
        return pb.ExplainResponse(
            placement=None if placement is None else convert.placement_message(placement),
            infeasible=why,
            cliques=[convert.verdict_message(v) for v in verdicts],
        )

    def token(self, version: int) -> str:
        return f"{self.epoch}.{version}"

    def WatchCapacity(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if self.stopping.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is shutting down")
        version, loads, free, held = self.state.capacity()
        resume = request.resume_token
        if resume and resume != self.token(version):
            epoch, _, seen = resume.partition(".")
            if not epoch or not seen.isdigit():
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"resume_token: not a token this service gave out: {resume[:40]!r}",
                )
        sent = -1 if resume != self.token(version) else version
        while not self.stopping.is_set() and context.is_active():
            if version != sent:
                yield convert.capacity_message(self.token(version), loads, free, held)
                sent = version
            left = context.time_remaining()
            tick = _WATCH_TICK if left is None else min(_WATCH_TICK, max(0.0, left))
            if tick <= 0:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the stream's deadline passed")
            now = self.state.wait_change(sent, tick)
            if now != sent:
                version, loads, free, held = self.state.capacity()
