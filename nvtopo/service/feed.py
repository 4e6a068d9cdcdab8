"""Keeping the service's state in step with Kubernetes.

:class:`KubeFeed` runs a :class:`~nvtopo.kube.view.ClusterView` and, after each change it
reports, hands the new cluster to :meth:`PlacementState.update`. Bursts of changes (a
publisher writing a thousand slices) coalesce: the feed always takes the newest snapshot.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nvtopo.kube.view import ClusterView
from nvtopo.service.state import PlacementState

__all__ = ["KubeFeed"]

log = logging.getLogger("nvtopo.service.feed")


class KubeFeed:
    """Follow ``view`` into ``state`` on a thread of its own.

    Parameters
    ----------
    view
        The watched view (started by :meth:`start` if it is not yet).
    state
        Gets every new snapshot's cluster.
    """

    def __init__(self, view: ClusterView, state: PlacementState) -> None:
        self.view = view
        self.state = state
        self.applied = 0
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvtopo-feed", daemon=True)

    def start(self) -> KubeFeed:
        self.view.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.view.wait_synced(timeout=1.0):
                continue
            snap = self.view.snapshot()
            if snap.version != self.applied:
                try:
                    self.state.update(snap.cluster)
                except Exception:  # a bad object must not stop the feed; the next change retries
                    log.exception("cannot take the cluster view at version %d", snap.version)
                self.applied = snap.version
                self.synced.set()
            self.view.wait(self.applied, timeout=1.0)

    def stop(self, *_args: Any) -> None:
        self._stop.set()
        self.view.stop()
        self._thread.join(5.0)
