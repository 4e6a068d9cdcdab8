"""Watch mode of the node agent: publish again on an interval, on NVML events, on fabric changes.

The agent publishes at start, then waits for the first of:

- the interval (``--interval``, seconds) running out: a full discovery, which also picks up
  anything no event reports (a link retrained down, a driver upgrade);
- an NVML event on any GPU (:class:`NvmlEvents`): XID critical errors (NVLink and
  fallen-off-the-bus XIDs among them), double-bit ECC errors, and where the binding and driver
  have them, GPU-unavailable and recovery-action events. ``nvmlEventSetCreate`` and
  ``nvmlDeviceRegisterEvents`` register each GPU for the types it supports
  (``nvmlDeviceGetSupportedEventTypes``); ``nvmlEventSetWait_v2`` waits;
- a change of any GPU's multi-node fabric info (state, clique, health), which NVML reports
  through no event, so it is polled (every ``fabric_poll`` seconds);
- a stop request (SIGTERM): the loop ends after the publish in progress.

Republishing is idempotent (:func:`nvtopo.dra.publish.publish` writes nothing when nothing
changed), so a burst of events costs one list request per wake-up.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from nvtopo.exceptions import DiscoveryError, NvtopoError

__all__ = ["WAKE_EVENT_TYPES", "EventSource", "NvmlEvents", "watch"]

log = logging.getLogger("nvtopo.dra.watch")

#: NVML event types that wake the agent, by ``pynvml`` constant name; a binding without a
#: name (older ``nvidia-ml-py``) just lacks that type.
WAKE_EVENT_TYPES = (
    "nvmlEventTypeXidCriticalError",
    "nvmlEventTypeDoubleBitEccError",
    "nvmlEventTypeGpuUnavailableError",
    "nvmlEventTypeGpuRecoveryAction",
)
_TIMEOUT = 10  # NVML_ERROR_TIMEOUT
_SLICE = 1.0  # seconds: longest block, so a stop request is seen quickly


class EventSource(Protocol):
    """What :func:`watch` waits on besides the clock."""

    def wait(self, timeout: float) -> str | None:
        """Block up to ``timeout`` seconds; a description of what happened, or None."""

    def fabric(self) -> Hashable:
        """A value that changes whenever any GPU's fabric info changes."""

    def close(self) -> None:
        """Release what the source holds."""


def _handle_key(handle: Any) -> Any:
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return handle  # a stand-in binding's handle object


class NvmlEvents:
    """NVML event set over every GPU of the node, plus fabric-info polling.

    Parameters
    ----------
    nvml
        The NVML binding (``pynvml`` by default; tests pass a stand-in).

    Raises
    ------
    DiscoveryError
        NVML cannot start or count the GPUs.
    """

    def __init__(self, nvml: Any = None) -> None:
        from nvtopo.discovery._nvml_gpu import NvmlCalls

        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml = nvml
        self.calls = NvmlCalls(nvml)
        # Held for the watcher's life; discovery's own init and shutdown nest inside it.
        started = self.calls.call("nvmlInit")
        if _failed(started):
            raise DiscoveryError(f"NVML: cannot start watching for events ({started.reason})")
        count = self.calls.call("nvmlDeviceGetCount")
        if _failed(count):
            self.calls.call("nvmlShutdown")
            raise DiscoveryError(f"NVML: cannot count the GPUs to watch ({count.reason})")
        #: GPU index → NVML handle, for the GPUs that could be opened.
        self.handles: dict[int, Any] = {}
        for i in range(int(count)):
            handle = self.calls.call("nvmlDeviceGetHandleByIndex", i)
            if not _failed(handle):
                self.handles[i] = handle
        self.types = {
            getattr(nvml, n): n.removeprefix("nvmlEventType") for n in WAKE_EVENT_TYPES
            if isinstance(getattr(nvml, n, None), int)
        }  # fmt: skip
        self.registered: dict[int, int] = {}
        self.event_set: Any = None
        if self.types:
            made = self.calls.call("nvmlEventSetCreate")
            if not _failed(made):
                self.event_set = made
                for index, handle in self.handles.items():
                    mask = self._register(handle)
                    if mask:
                        self.registered[index] = mask
        if not self.registered:
            log.info("NVML: no GPU takes event registration; fabric info is still polled")

    def _register(self, handle: Any) -> int:
        supported = self.calls.call("nvmlDeviceGetSupportedEventTypes", handle)
        wanted = 0
        for bit in self.types:
            if _failed(supported) or int(supported) & bit:
                wanted |= bit
        if not wanted:
            return 0
        if not _failed(self.calls.call("nvmlDeviceRegisterEvents", handle, wanted, self.event_set)):
            return wanted
        # Some types are refused (in containers, without privileges): take the others one by
        # one rather than none at all.
        mask = 0
        for bit in self.types:
            if wanted & bit and not _failed(
                self.calls.call("nvmlDeviceRegisterEvents", handle, bit, self.event_set)
            ):
                mask |= bit
        return mask

    def _gpu_of(self, handle: Any) -> str:
        key = _handle_key(handle)
        for i, h in self.handles.items():
            if _handle_key(h) == key:
                return f"GPU {i}"
        return "a GPU"

    def _describe(self, data: Any) -> str:
        kind = self.types.get(int(data.eventType), f"0x{int(data.eventType):x}")
        detail = f" {int(data.eventData)}" if kind == "XidCriticalError" else ""
        return f"NVML {kind}{detail} on {self._gpu_of(data.device)}"

    def wait(self, timeout: float) -> str | None:
        if self.event_set is None or not self.registered:
            time.sleep(max(0.0, timeout))
            return None
        from nvtopo.discovery._nvml_gpu import GpuLostError

        seen: list[str] = []
        wait_ms = max(0, int(timeout * 1000))
        while True:
            try:
                data = self.calls.call("nvmlEventSetWait_v2", self.event_set, wait_ms)
            except GpuLostError:
                seen.append("NVML GpuIsLost while waiting for events")
                break
            if _failed(data):
                if data.code != _TIMEOUT:
                    log.warning("NVML: waiting for events failed: %s", data.reason)
                    if not seen:
                        time.sleep(max(0.0, timeout))
                break
            seen.append(self._describe(data))
            wait_ms = 0  # take what else is queued now, then report the burst once
        if not seen:
            return None
        more = f" (+{len(seen) - 1} more)" if len(seen) > 1 else ""
        return seen[0] + more

    def fabric(self) -> Hashable:
        from nvtopo.discovery._nvml_gpu import GpuLostError, read_fabric

        out: list[Any] = []
        for handle in self.handles.values():
            try:
                out.append(read_fabric(self.calls, handle))
            except GpuLostError:
                out.append("lost")
        return tuple(out)

    def close(self) -> None:
        if self.event_set is not None:
            self.calls.call("nvmlEventSetFree", self.event_set)
            self.event_set = None
        self.calls.call("nvmlShutdown")


def _failed(answer: Any) -> bool:
    from nvtopo.discovery._nvml_gpu import Failure

    return isinstance(answer, Failure)


def _wait_for_wake(
    deadline: float,
    stop: threading.Event,
    events: EventSource | None,
    fabric_poll: float,
    fabric_seen: list[Hashable],
    clock: Callable[[], float],
) -> str | None:
    """The reason to publish again, or None when asked to stop."""
    next_poll = clock() + fabric_poll
    while not stop.is_set():
        now = clock()
        if now >= deadline:
            return "interval"
        step = min(_SLICE, deadline - now)
        if events is not None:
            step = min(step, max(0.0, next_poll - now))
            reason = events.wait(step)
            if reason is not None:
                return reason
        elif stop.wait(step):
            return None
        if events is not None and clock() >= next_poll:
            next_poll = clock() + fabric_poll
            current = events.fabric()
            if current != fabric_seen[0]:
                fabric_seen[0] = current
                return "fabric info changed"
    return None


def watch(
    publish_once: Callable[[str], Any],
    *,
    interval: float,
    stop: threading.Event,
    events: EventSource | None = None,
    fabric_poll: float = 10.0,
    on_error: Callable[[NvtopoError], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    max_rounds: int | None = None,
) -> int:
    """Publish now, then again on every wake-up (see the module text) until ``stop`` is set.

    Parameters
    ----------
    publish_once
        Discovers and publishes; called with the reason (``"start"``, ``"interval"``,
        ``"fabric info changed"``, an NVML event's description).
    interval
        Seconds between publishes when nothing else wakes the loop.
    stop
        Set it (from a SIGTERM handler) to end the loop after the publish in progress.
    events
        NVML events and fabric polling (:class:`NvmlEvents`); None: the interval alone.
    fabric_poll
        Seconds between fabric-info reads.
    on_error
        Receives each :class:`~nvtopo.exceptions.NvtopoError` of a publish (the apiserver
        away, a GPU lost); the loop goes on and tries again at the next wake-up.
    clock
        Monotonic seconds.
    max_rounds
        Stop after this many publishes (tests).

    Returns
    -------
    int
        Publishes done.
    """
    from nvtopo.dra.publish import PublishInterrupted

    rounds = 0
    reason: str | None = "start"
    fabric_seen: list[Hashable] = [events.fabric() if events is not None else None]
    while reason is not None and not stop.is_set():
        try:
            publish_once(reason)
        except PublishInterrupted:
            break
        except NvtopoError as exc:
            if on_error is None:
                raise
            on_error(exc)
        rounds += 1
        if max_rounds is not None and rounds >= max_rounds:
            break
        reason = _wait_for_wake(clock() + interval, stop, events, fabric_poll, fabric_seen, clock)
    return rounds
