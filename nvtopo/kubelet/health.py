"""Device health for the kubelet's DRA resource-health stream.

A GPU is unhealthy when any of its NVLinks is down or degraded, or when its fabric health
says unhealthy; the message names which. Every :meth:`HealthFeed.update` (a rediscovery)
compares the new states with the last ones, and each follower of the stream gets the
full picture first, then the devices whose state changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from nvtopo.dra.attributes import device_name
from nvtopo.model import Gpu, NodeTopology
from nvtopo.model.health import link_problems

__all__ = ["DeviceStatus", "HealthFeed", "gpu_status"]


@dataclass(frozen=True)
class DeviceStatus:
    """One device's health as streamed to the kubelet."""

    device: str
    healthy: bool
    message: str
    #: Unix seconds of the last change.
    since: float


def gpu_status(gpu: Gpu, now: float) -> DeviceStatus:
    """The health of one GPU: NVLinks not up, and fabric health, in the model's words.

    A GPU outside any multi-node domain (no fabric, or a fabric still being set up) is not
    unhealthy for that: it serves single-node work. Fabric health Unhealthy is.
    """
    problems = list(link_problems(gpu))
    if gpu.fabric is not None and gpu.fabric.health == "unhealthy":
        problems.append("fabric health Unhealthy")
    return DeviceStatus(device_name(gpu), not problems, "; ".join(problems), now)


class HealthFeed:
    """The latest health of the node's GPUs, and a stream of changes for each follower."""

    def __init__(self, topology: NodeTopology, *, poll: float = 0.5) -> None:
        self._changed = threading.Condition()
        self._states: dict[str, DeviceStatus] = {}
        self._version = 0
        self._closed = False
        self._poll = poll
        self.update(topology)

    def update(self, topology: NodeTopology) -> list[DeviceStatus]:
        """Take a rediscovered topology; return the devices whose health changed."""
        now = time.time()
        changed = []
        with self._changed:
            for gpu in topology.gpus:
                status = gpu_status(gpu, now)
                old = self._states.get(status.device)
                if old is None or (old.healthy, old.message) != (status.healthy, status.message):
                    self._states[status.device] = status
                    changed.append(status)
            if changed:
                self._version += 1
                self._changed.notify_all()
        return changed

    def snapshot(self) -> list[DeviceStatus]:
        """Every device's current health."""
        with self._changed:
            return [self._states[d] for d in sorted(self._states)]

    def follow(self, active: Callable[[], bool]) -> Iterator[list[DeviceStatus]]:
        """Yield every device's health, then each change, while ``active()`` holds."""
        with self._changed:
            seen = dict(self._states)
            version = self._version
        yield [seen[d] for d in sorted(seen)]
        while active():
            with self._changed:
                self._changed.wait_for(partial(self._moved, version), timeout=self._poll)
                if self._closed:
                    return
                if self._version == version:
                    continue
                version = self._version
                batch = [s for d, s in sorted(self._states.items()) if seen.get(d) != s]
                seen = dict(self._states)
            if batch:
                yield batch

    def _moved(self, version: int) -> bool:
        return self._version != version or self._closed

    def close(self) -> None:
        """End every follower's stream."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
