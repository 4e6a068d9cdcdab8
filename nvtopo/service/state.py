"""The placement service's state: a cluster, the reservations held on it, their expiry.

:class:`PlacementState` wraps :class:`nvtopo.ClusterState` (the Rust core, which never hands
a GPU out twice) with what a long-running service adds:

- reservations: a placement held for a TTL (or until released), found again by an
  idempotency key, given back by :meth:`release` or when it expires;
- a new view of the cluster (:meth:`update`, from the Kubernetes watch): the core state is
  rebuilt from it with every live reservation's GPUs taken out again, so a GPU a claim
  took behind the service's back and a GPU the service promised both stay unavailable;
- spare nodes: ``spares`` fully free nodes per clique held back from placements;
- a change counter and condition for :meth:`wait_change` (``WatchCapacity``).

One lock guards everything: a call takes microseconds, and the core is not the part that
would contend. Reservations live in memory only; a restarted service rebuilds the cluster
from Kubernetes and has none.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nvtopo.exceptions import InfeasibleError, NvtopoError, SelectionError
from nvtopo.model import Cluster, ClusterNode
from nvtopo.place import ClusterState, Placement, PlacementRequest
from nvtopo.service.explain import CliqueVerdict, explain_cliques

__all__ = [
    "MAX_TTL",
    "CliqueLoad",
    "KeyConflictError",
    "PlacementState",
    "Reservation",
    "UnknownReservationError",
    "check_idempotency_key",
]

#: Longest reservation TTL, seconds (a day).
MAX_TTL = 86400
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ID = re.compile(r"^r-[0-9a-f]{16}$")


class UnknownReservationError(NvtopoError, KeyError):
    """No live reservation has that id (never made, released, or expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown reservation"


class KeyConflictError(NvtopoError):
    """An idempotency key already names a reservation of a different request."""


def check_idempotency_key(key: str) -> str:
    """``key`` if it is 1 to 128 characters of ``[A-Za-z0-9._:-]``, else SelectionError."""
    if not _KEY.match(key):
        raise SelectionError(
            f"idempotency_key: must be 1 to 128 characters of A-Z a-z 0-9 . _ : -, got {key[:40]!r}"
        )
    return key


@dataclass(frozen=True)
class Reservation:
    """A placement held by the service."""

    id: str
    placement: Placement
    request: PlacementRequest
    #: ``time.time()`` at which it lapses; None: held until released.
    expires: float | None
    idempotency_key: str = ""


@dataclass(frozen=True)
class CliqueLoad:
    """Capacity of one clique (``""``: the nodes outside any clique, together)."""

    clique: str
    nodes: int
    free_nodes: int
    gpus: int
    free_gpus: int


@dataclass
class _Held:
    reservation: Reservation
    core_id: int | None  # the core's allocation id; None once baked into a rebuilt state


class PlacementState:
    """Cluster, reservations and spares behind one lock.

    Parameters
    ----------
    cluster
        The cluster as its source describes it (``free_gpus`` from claims or the file).
    spares
        Fully free nodes per clique never placed on (kept for failures).
    clock
        Wall clock in seconds (tests pass their own).
    """

    def __init__(
        self, cluster: Cluster, *, spares: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        if spares < 0:
            raise SelectionError(f"spares must be >= 0, got {spares}")
        self.spares = spares
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._held: dict[str, _Held] = {}
        self._keys: dict[str, str] = {}
        self._expiry: list[tuple[float, str]] = []
        self.version = 0
        self._rebuild(cluster)

    # -- building -----------------------------------------------------------------------

    def _rebuild(self, cluster: Cluster) -> None:
        """New core state from ``cluster`` minus held GPUs and spares (lock held)."""
        self.cluster = cluster
        held: dict[str, set[int]] = {}
        for h in self._held.values():
            h.core_id = None
            for p in h.reservation.placement.nodes:
                held.setdefault(p.name, set()).update(p.gpus)
        nodes: list[ClusterNode] = []
        for n in cluster.nodes:
            taken = held.get(n.name)
            if taken:
                free = tuple(g for g in n.free if g not in taken)
                n = dataclasses.replace(n, free_gpus=free)
            nodes.append(n)
        self.spare_nodes = self._pick_spares(nodes)
        nodes = [
            dataclasses.replace(n, free_gpus=()) if n.name in self.spare_nodes else n for n in nodes
        ]
        self.effective = Cluster(tuple(nodes), name=cluster.name)
        self.core = ClusterState(self.effective)

    def _pick_spares(self, nodes: list[ClusterNode]) -> frozenset[str]:
        if not self.spares:
            return frozenset()
        by_clique: dict[str, list[str]] = {}
        for n in nodes:
            if n.domain is not None and len(n.free) == len(n.topology.gpus):
                by_clique.setdefault(n.domain, []).append(n.name)
        # The last names of each clique: stable while nothing changes.
        return frozenset(
            name for names in by_clique.values() for name in sorted(names)[-self.spares :]
        )

    def update(self, cluster: Cluster) -> None:
        """Take a new view of the cluster; live reservations keep their GPUs."""
        with self._lock:
            self._sweep()
            self._rebuild(cluster)
            self._bump()

    def _bump(self) -> None:
        self.version += 1
        self._changed.notify_all()

    # -- reservations -------------------------------------------------------------------

    def _sweep(self) -> bool:
        """Drop expired reservations (lock held); True when any was dropped."""
        now = self.clock()
        dropped = False
        while self._expiry and self._expiry[0][0] <= now:
            _, rid = heapq.heappop(self._expiry)
            h = self._held.get(rid)
            if h is not None and h.reservation.expires is not None and h.reservation.expires <= now:
                self._drop(rid)
                dropped = True
        return dropped

    def sweep(self) -> None:
        """Drop expired reservations now (the service calls this on a timer)."""
        with self._lock:
            if self._sweep():
                self._bump()

    def _drop(self, rid: str) -> Reservation:
        h = self._held.pop(rid)
        r = h.reservation
        if r.idempotency_key:
            self._keys.pop(r.idempotency_key, None)
        if h.core_id is not None:
            self.core.release(h.core_id)
        else:
            self._rebuild(self.cluster)  # baked in: give its GPUs back by rebuilding
        return r

    def place(self, request: PlacementRequest) -> Placement:
        """The best placement now; holds nothing."""
        with self._lock:
            if self._sweep():
                self._bump()
            return self.core.place(request)

    def reserve(
        self, request: PlacementRequest, *, ttl: float | None, idempotency_key: str = ""
    ) -> tuple[Reservation, bool]:
        """Hold the best placement for ``ttl`` seconds (None: until released).

        Returns the reservation and whether it was made now (False: the key's existing one).

        Raises
        ------
        InfeasibleError
            Nothing fits now.
        KeyConflictError
            The key names a live reservation of another request.
        """
        if idempotency_key:
            check_idempotency_key(idempotency_key)
        with self._lock:
            swept = self._sweep()
            if idempotency_key and idempotency_key in self._keys:
                old = self._held[self._keys[idempotency_key]].reservation
                if old.request != request:
                    raise KeyConflictError(
                        f"idempotency_key {idempotency_key!r} already holds reservation "
                        f"{old.id} for another request"
                    )
                if swept:
                    self._bump()
                return old, False
            try:
                allocation = self.core.allocate(request)
            finally:
                if swept:
                    self._bump()
            rid = f"r-{secrets.token_hex(8)}"
            expires = None if ttl is None else self.clock() + ttl
            r = Reservation(rid, allocation.placement, request, expires, idempotency_key)
            self._held[rid] = _Held(r, allocation.id)
            if idempotency_key:
                self._keys[idempotency_key] = rid
            if expires is not None:
                heapq.heappush(self._expiry, (expires, rid))
            self._bump()
            return r, True

    def release(self, reservation_id: str) -> Reservation:
        """Give a reservation back; UnknownReservationError when none lives under that id."""
        if not _ID.match(reservation_id):
            raise SelectionError(
                f"reservation_id: must be 'r-' and 16 hex digits, got {reservation_id[:40]!r}"
            )
        with self._lock:
            if self._sweep():
                self._bump()
            if reservation_id not in self._held:
                raise UnknownReservationError(
                    f"reservation_id: no live reservation {reservation_id} "
                    "(released, expired, or made before the service restarted)"
                )
            r = self._drop(reservation_id)
            self._bump()
            return r

    def reservations(self) -> tuple[Reservation, ...]:
        """The live reservations."""
        with self._lock:
            self._sweep()
            return tuple(h.reservation for h in self._held.values())

    # -- reading ------------------------------------------------------------------------

    def free_gpus(self, node: str) -> tuple[int, ...]:
        """Free GPUs of ``node`` now (spares and held GPUs excluded)."""
        with self._lock:
            self.cluster.node(node)  # TopologyError naming an unknown node
            return self.core.free_gpus(node)

    def capacity(self) -> tuple[int, tuple[CliqueLoad, ...], int, int]:
        """``(version, per-clique loads, free GPUs, live reservations)`` in one consistent read."""
        with self._lock:
            self._sweep()
            groups: dict[str, list[int]] = {}
            for n in self.effective.nodes:
                d = n.domain or ""
                row = groups.setdefault(d, [0, 0, 0, 0])
                free = len(self.core.free_gpus(n.name))
                total = len(n.topology.gpus)
                row[0] += 1
                row[1] += free == total
                row[2] += total
                row[3] += free
            loads = tuple(CliqueLoad(k, *v) for k, v in sorted(groups.items()))
            return self.version, loads, self.core.free_count, len(self._held)

    def explain(
        self, request: PlacementRequest
    ) -> tuple[Placement | None, str, tuple[CliqueVerdict, ...]]:
        """The placement (or why none fits) and a verdict per clique, in one consistent read."""
        with self._lock:
            self._sweep()
            try:
                placement: Placement | None = self.core.place(request)
                why = ""
            except InfeasibleError as exc:
                placement, why = None, str(exc)
            free = {n.name: len(self.core.free_gpus(n.name)) for n in self.effective.nodes}
            for name in self.spare_nodes:
                free[name] = len(self.cluster.node(name).topology.gpus)
            verdicts = explain_cliques(
                self.effective.nodes, free, self.spare_nodes, request, placement
            )
            return placement, why, verdicts

    def wait_change(self, after: int, timeout: float) -> int:
        """Block until :attr:`version` passes ``after`` or ``timeout``; the version then."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.version <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self.version

    def wake(self) -> None:
        """Wake every :meth:`wait_change` (at shutdown)."""
        with self._lock:
            self._changed.notify_all()
