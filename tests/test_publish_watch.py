"""Watch mode of ``nvtopo publish``: what wakes it, and NVML event registration (replayed)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

import nvtopo.discovery.nvml as nvml_source
from nvtopo.discovery.nvml import discover
from nvtopo.dra.publish import PublishInterrupted
from nvtopo.dra.watch import NvmlEvents, watch
from nvtopo.exceptions import DiscoveryError, NvtopoError
from tests.fake_nvml import FakeHandle, FakeNvml, load, write_sysfs

XID = pynvml.nvmlEventTypeXidCriticalError
ECC = pynvml.nvmlEventTypeDoubleBitEccError
UNAVAILABLE = pynvml.nvmlEventTypeGpuUnavailableError
PSTATE = pynvml.nvmlEventTypePState  # supported by GPUs, not wanted by the agent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """An event source on a fake clock: events and fabric changes at given times."""

    def __init__(self, clock: Clock, events: dict[float, str], fabric_at: float | None) -> None:
        self.clock = clock
        self.events = dict(events)
        self.fabric_at = fabric_at
        self.waits: list[float] = []

    def wait(self, timeout: float) -> str | None:
        self.waits.append(timeout)
        end = self.clock.now + timeout
        due = sorted(t for t in self.events if t <= end)
        if due:
            self.clock.now = max(self.clock.now, due[0])
            return self.events.pop(due[0])
        self.clock.now = end
        return None

    def fabric(self) -> Any:
        return "after" if self.fabric_at is not None and self.clock.now >= self.fabric_at else "b"

    def close(self) -> None:
        pass


def test_publish_again_on_events_fabric_changes_and_the_interval() -> None:
    clock = Clock()
    source = Scripted(clock, {5.0: "NVML XidCriticalError 79 on GPU 3"}, fabric_at=12.0)
    reasons: list[tuple[str, float]] = []
    rounds = watch(
        lambda reason: reasons.append((reason, clock.now)),
        interval=60,
        stop=threading.Event(),
        events=source,
        fabric_poll=10,
        clock=clock,
        max_rounds=4,
    )
    assert rounds == 4
    assert [r for r, _ in reasons] == [
        "start",
        "NVML XidCriticalError 79 on GPU 3",
        "fabric info changed",
        "interval",
    ]
    assert [t for _, t in reasons] == [0.0, 5.0, 15.0, 75.0]
    # No wait blocks longer than a second: a stop request is seen at once.
    assert max(source.waits) <= 1.0


def test_a_failed_publish_is_reported_and_tried_again() -> None:
    errors: list[str] = []
    calls: list[str] = []

    def publish_once(reason: str) -> None:
        calls.append(reason)
        if len(calls) == 1:
            raise NvtopoError(
                "list ResourceSlices: 503 Service Unavailable (gave up after 6 tries)"
            )

    clock = Clock()
    watch(
        publish_once,
        interval=30,
        stop=threading.Event(),
        events=Scripted(clock, {}, None),
        on_error=lambda exc: errors.append(str(exc)),
        clock=clock,
        max_rounds=2,
    )
    assert calls == ["start", "interval"]
    assert errors == ["list ResourceSlices: 503 Service Unavailable (gave up after 6 tries)"]


def test_stop_ends_the_loop_after_the_publish_in_progress() -> None:
    stop = threading.Event()
    calls: list[str] = []

    def publish_once(reason: str) -> None:
        calls.append(reason)
        stop.set()  # SIGTERM arrives while publishing

    clock = Clock()
    assert watch(publish_once, interval=30, stop=stop, events=Scripted(clock, {}, None),
                 clock=clock) == 1  # fmt: skip
    assert calls == ["start"]
    interrupted = watch(
        lambda reason: (_ for _ in ()).throw(PublishInterrupted("stopped")),
        interval=30,
        stop=threading.Event(),
        clock=clock,
    )
    assert interrupted == 0


def test_without_events_the_interval_alone_wakes_it() -> None:
    calls: list[str] = []
    watch(calls.append, interval=0.01, stop=threading.Event(), max_rounds=3)
    assert calls == ["start", "interval", "interval"]


# -- NVML events, replayed ----------------------------------------------------------------------


class EventNvml(FakeNvml):
    """The recorded machine plus an event set; ``nvmlInit`` nests as in the real library."""

    def __init__(self, data: dict[str, Any], *, supported: int, refuse: int = 0) -> None:
        super().__init__(data)
        self.depth = 0
        self.supported = supported
        self.refuse = refuse
        self.registered: dict[int, int] = {}
        self.queue: list[Any] = []
        self.freed = False

    def nvmlInit(self) -> None:
        super().nvmlInit()
        self.depth += 1

    def nvmlShutdown(self) -> None:
        self._check()
        self.depth -= 1
        if self.depth == 0:
            super().nvmlShutdown()

    def nvmlEventSetCreate(self) -> str:
        self._check()
        return "event-set"

    def nvmlDeviceGetSupportedEventTypes(self, handle: FakeHandle) -> int:
        self._device(handle)
        return self.supported

    def nvmlDeviceRegisterEvents(self, handle: FakeHandle, types: int, event_set: str) -> None:
        self._device(handle)
        if types & self.refuse:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.registered[handle.index] = self.registered.get(handle.index, 0) | types

    def nvmlEventSetWait_v2(self, event_set: str, timeout_ms: int) -> Any:
        self._check()
        if not self.queue:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        return self.queue.pop(0)

    def nvmlEventSetFree(self, event_set: str) -> None:
        self.freed = True


@pytest.fixture
def tray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    data = load("gb200-tray")
    monkeypatch.setattr(nvml_source, "SYSFS_ROOT", write_sysfs(data, tmp_path / "sys"))
    return data


def test_every_gpu_is_registered_for_the_wanted_types_it_supports(tray: dict[str, Any]) -> None:
    fake = EventNvml(tray, supported=XID | ECC | PSTATE)
    events = NvmlEvents(fake)
    assert fake.registered == {i: XID | ECC for i in range(4)}
    assert events.registered == fake.registered
    fake.queue = [
        SimpleNamespace(device=FakeHandle(2), eventType=XID, eventData=79),
        SimpleNamespace(device=FakeHandle(0), eventType=ECC, eventData=0),
    ]
    assert events.wait(1.0) == "NVML XidCriticalError 79 on GPU 2 (+1 more)"
    assert events.wait(0.01) is None  # NVML_ERROR_TIMEOUT is no event
    events.close()
    assert fake.freed and not fake.initialized


def test_types_refused_together_are_registered_one_by_one(tray: dict[str, Any]) -> None:
    fake = EventNvml(tray, supported=XID | ECC | UNAVAILABLE, refuse=ECC)
    NvmlEvents(fake)
    assert fake.registered == {i: XID | UNAVAILABLE for i in range(4)}


def test_discovery_inside_the_watcher_keeps_nvml_open(tray: dict[str, Any]) -> None:
    fake = EventNvml(tray, supported=XID)
    events = NvmlEvents(fake)
    topo = discover(nvml=fake, name="tray")  # its own init and shutdown nest inside
    assert len(topo.gpus) == 4 and fake.initialized
    fake.queue = [SimpleNamespace(device=FakeHandle(1), eventType=XID, eventData=74)]
    assert events.wait(0.0) == "NVML XidCriticalError 74 on GPU 1"
    events.close()


def test_fabric_changes_are_seen_by_polling(tray: dict[str, Any]) -> None:
    fake = EventNvml(tray, supported=0)
    events = NvmlEvents(fake)
    assert events.registered == {}
    before = events.fabric()
    assert events.fabric() == before
    tray["devices"][3]["nvmlDeviceGetGpuFabricInfoV"]["state"] = 2  # in progress again
    assert events.fabric() != before
    events.close()


def test_nvml_that_cannot_start_is_one_line(tray: dict[str, Any]) -> None:
    tray["nvmlInit"] = {"error": "DriverNotLoaded"}
    with pytest.raises(DiscoveryError, match=r"^NVML: cannot start watching for events \("):
        NvmlEvents(EventNvml(tray, supported=XID))
