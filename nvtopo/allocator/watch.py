"""What the allocator sees of the cluster: the shared watched view, plus its own writes.

Slices and claims come from one :class:`~nvtopo.kube.view.ClusterView` (the same view the
placement service uses, so both see the same cluster); the allocator does not list them
each pass, it reads the view's latest :class:`~nvtopo.kube.view.Snapshot` and wakes when
the view's version moves.

A view lags the apiserver by the watch latency, and that matters twice:

- its own claim writes: until the view's watch brings them back, the allocator overlays
  the objects the apiserver returned for them, so the next pass does not plan on devices
  it has just handed out (:meth:`Watched.wrote`);
- claims written by anyone else that the view has not seen yet: before the first write of
  a gang, the allocator reads every claim afresh from the apiserver (a quorum list,
  :meth:`Watched.fresh_claims`) and gives the plan up if a planned device is already held.
  The claim status write's ``resourceVersion`` conflict is not enough for that: it guards
  only the claim being written, not a device held by *another* claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from nvtopo.exceptions import NvtopoError
from nvtopo.kube.client import RESOURCE_CLAIMS, RawApi
from nvtopo.kube.view import ClusterView, Snapshot

__all__ = ["Claims", "Watched"]

#: ``(namespace, name)`` → ResourceClaim object.
Claims = dict[tuple[str, str], Mapping[str, Any]]

_SYNC_TIMEOUT = 60.0  # seconds for the view's first lists
_OVERLAY_TTL = 30.0  # seconds an own write is overlaid at most (the view echoes it in ms)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


class Watched:
    """The allocator's reading of slices and claims through a :class:`ClusterView`.

    Parameters
    ----------
    api
        The allocator's client (fresh claim lists).
    view
        A view shared with others (not stopped here); it must watch the topology driver's
        slices and, when the devices handed out are another driver's, those too
        (``extra_drivers``). Without one, a view of its own is started on first use.
    """

    def __init__(self, api: RawApi, view: ClusterView | None = None) -> None:
        self.api = api
        self._shared = view
        self._own: ClusterView | None = None
        self._lock = threading.Lock()
        # claim key -> (resourceVersion we wrote over, the object the write returned, when)
        self._pending: dict[tuple[str, str], tuple[str, Mapping[str, Any], float]] = {}

    def view(self, topology_driver: str, driver: str) -> ClusterView:
        """The view for these drivers, synced (started here when not shared)."""
        view = self._shared
        if view is not None:
            if view.driver != topology_driver or (
                driver != topology_driver and driver not in view.extra_drivers
            ):
                raise NvtopoError(
                    f"the shared cluster view watches {view.driver} {view.extra_drivers}; "
                    f"the allocator needs {topology_driver} and {driver}"
                )
        else:
            own = self._own
            if (
                own is None
                or own.driver != topology_driver
                or (driver != topology_driver and driver not in own.extra_drivers)
            ):
                if own is not None:
                    own.stop()
                own = ClusterView(
                    self.api.client, driver=topology_driver, extra_drivers=(driver,)
                ).start()
                self._own = own
            view = own
        if not view.wait_synced(timeout=_SYNC_TIMEOUT):
            raise NvtopoError(
                f"the cluster view did not list slices and claims within {_SYNC_TIMEOUT:.0f} s"
            )
        return view

    def claims(self, snapshot: Snapshot) -> Claims:
        """The snapshot's claims with the allocator's own writes it has not echoed yet.

        A write stays overlaid while the view still holds the very version it replaced;
        once the view moved on (our write, a later change, the claim deleted) the view wins.
        A view further behind than that loses the overlay early; the fresh read before the
        next write still keeps the devices from being given twice.
        """
        out: Claims = {_key(c): c for c in snapshot.claims}
        now = time.monotonic()
        with self._lock:
            for key, (replaced, obj, at) in list(self._pending.items()):
                seen = out.get(key)
                if seen is not None and _rv(seen) == replaced and now - at <= _OVERLAY_TTL:
                    out[key] = obj
                else:
                    del self._pending[key]
        return out

    def wrote(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Overlay ``after`` (what the apiserver returned for a write over ``before``)."""
        with self._lock:
            self._pending[_key(after)] = (_rv(before), after, time.monotonic())

    def fresh_claims(self) -> Claims:
        """Every claim as the apiserver has it now (a quorum list, not the view)."""
        return {_key(c): c for c in self.api.list(RESOURCE_CLAIMS, what="list ResourceClaims")}

    def close(self) -> None:
        """Stop the view started here (a shared one keeps running)."""
        if self._own is not None:
            self._own.stop()
            self._own = None
