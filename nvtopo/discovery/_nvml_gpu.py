"""Ask NVML about one GPU, where every failed question means "unknown".

NVML answers NotSupported, FunctionNotFound or NotFound wherever a platform lacks a feature
(cloud VMs, older drivers), and older ``pynvml`` releases lack whole functions and structs.
:class:`NvmlCalls` turns each of those into a :class:`Failure` value so that discovery
builds a correct, smaller topology instead of stopping. The one answer that is not
"unknown" is GpuIsLost: it raises :class:`GpuLostError` and the GPU is left out.
"""

from __future__ import annotations

import ctypes
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvtopo.discovery._nvml_decode import (
    architecture_name,
    bits_of,
    brand_name,
    fabric_health,
    fabric_state,
    normalize_bus_id,
    return_name,
    text_field,
    uuid_from_bytes,
)
from nvtopo.formats._cpulist import compress_cpulist
from nvtopo.model import Fabric, Gpu, Platform

log = logging.getLogger("nvtopo.discovery.nvml")

# nvmlReturn_t values this module reacts to.
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
ARGUMENT_VERSION_MISMATCH = 25

#: 64-bit words asked for in CPU and NUMA affinity masks (4096 CPUs, 1024 NUMA nodes): fixed
#: so a replayed capture of a big machine reads the same on a small one.
CPU_SET_WORDS = 64
NODE_SET_WORDS = 16
_AFFINITY_SCOPE_NODE = 0
_MIB = 1 << 20
_PCIE_ROOT_RE = re.compile(r"^pci[0-9a-f]{4,}:[0-9a-f]{2}$")

# (function, struct) pairs tried in order: the newest struct a driver accepts wins. A driver
# older than the struct answers ArgumentVersionMismatch; a pynvml older than it lacks the name.
_FABRIC_CALLS = (
    ("nvmlDeviceGetGpuFabricInfoV", "c_nvmlGpuFabricInfo_v3_t"),
    ("nvmlDeviceGetGpuFabricInfoV", "c_nvmlGpuFabricInfo_v2_t"),
    ("nvmlDeviceGetGpuFabricInfo", "c_nvmlGpuFabricInfo_t"),
)
_PLATFORM_STRUCTS = ("c_nvmlPlatformInfo_v2_t", "c_nvmlPlatformInfo_v1_t")
_TRY_NEXT = (None, FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH)


class GpuLostError(Exception):
    """NVML answered GpuIsLost: the GPU fell off the bus or is otherwise unreachable."""


@dataclass(frozen=True)
class Failure:
    """An NVML question without an answer: ``code`` is the nvmlReturn_t, None when the
    binding itself could not ask (function or struct missing, wrong arguments)."""

    code: int | None
    reason: str


@dataclass(frozen=True)
class RawLink:
    """One NVLink as NVML described it, before remote ends are matched to GPUs."""

    link: int
    up: bool
    version: int | None
    remote_bus: str | None
    remote_type: int | None


@dataclass(frozen=True)
class RawGpu:
    """A GPU that answered, with its handle and links still to be tied to the others."""

    handle: Any
    gpu: Gpu
    links: tuple[RawLink, ...]


class NvmlCalls:
    """Calls into an NVML binding (``pynvml`` or a stand-in with the same names)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        errors = [
            cls
            for cls in (
                getattr(module, "NVMLError", None),
                getattr(module, "NVMLLibraryMismatchError", None),
            )
            if isinstance(cls, type) and issubclass(cls, BaseException)
        ]
        self._errors: tuple[type[BaseException], ...] = tuple(errors)

    def error_code(self, exc: BaseException) -> int | None:
        """The nvmlReturn_t of an exception raised by the binding."""
        if type(exc).__name__ == "NVMLLibraryMismatchError":
            return FUNCTION_NOT_FOUND
        code = getattr(exc, "value", None)
        return code if isinstance(code, int) else None

    @staticmethod
    def error_name(exc: BaseException) -> str:
        """``NVMLError_NotSupported`` → ``NotSupported``."""
        return type(exc).__name__.removeprefix("NVMLError_")

    def call(self, name: str, *args: Any) -> Any:
        """``name(*args)``'s answer, or a :class:`Failure`; raises :class:`GpuLostError`."""
        fn = getattr(self.module, name, None)
        if fn is None:
            return self._failed(None, f"{name} is not in this NVML binding")
        try:
            return fn(*args)
        except self._errors as exc:
            code = self.error_code(exc)
            if code == GPU_IS_LOST:
                raise GpuLostError(name) from None
            return self._failed(code, f"{name}: {self.error_name(exc)}")
        except (TypeError, ctypes.ArgumentError, UnicodeDecodeError) as exc:
            # An older or newer pynvml with another signature: the answer is unknown.
            return self._failed(None, f"{name}: {type(exc).__name__}: {exc}")

    def ask(self, name: str, *args: Any) -> Any:
        """Like :meth:`call`, with None for every failure."""
        answer = self.call(name, *args)
        return None if isinstance(answer, Failure) else answer

    @staticmethod
    def _failed(code: int | None, reason: str) -> Failure:
        log.debug("NVML: %s (taken as unknown)", reason)
        return Failure(code, reason)


def text(value: Any) -> str | None:
    """A string answer (older pynvml answers bytes) or None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.strip().rstrip("\0") or None


def read_bus_id(q: NvmlCalls, handle: Any) -> str | None:
    """The GPU's PCI bus id in sysfs form (``0000:1b:00.0``), or None."""
    for fn in ("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo"):
        info = q.ask(fn, handle)
        if info is not None:
            return pci_info_bus_id(info)
    return None


def pci_info_bus_id(info: Any) -> str | None:
    """The bus id of an ``nvmlPciInfo_t``: ``busId``, else ``busIdLegacy``, else its numbers."""
    for attr in ("busId", "busIdLegacy"):
        bus_id = normalize_bus_id(text(getattr(info, attr, None)))
        if bus_id is not None:
            return bus_id
    try:
        domain, bus, device = int(info.domain), int(info.bus), int(info.device)
    except (AttributeError, TypeError, ValueError):
        return None
    return f"{domain:04x}:{bus:02x}:{device:02x}.0"


def collect_gpu(q: NvmlCalls, index: int, handle: Any, bus_id: str | None, sysfs: Path) -> RawGpu:
    """Everything NVML says about GPU ``index``; raises :class:`GpuLostError`."""
    cc = q.ask("nvmlDeviceGetCudaComputeCapability", handle)
    total = getattr(q.ask("nvmlDeviceGetMemoryInfo", handle), "total", None)
    numa_node = q.ask("nvmlDeviceGetNumaNodeId", handle)
    if not isinstance(numa_node, int) or numa_node < 0:
        numa_node = _sysfs_numa_node(sysfs, bus_id)
    node_words = q.ask("nvmlDeviceGetMemoryAffinity", handle, NODE_SET_WORDS, _AFFINITY_SCOPE_NODE)
    cpu_words = q.ask("nvmlDeviceGetCpuAffinity", handle, CPU_SET_WORDS)
    minor = q.ask("nvmlDeviceGetMinorNumber", handle)
    numa_affinity = bits_of(node_words) if node_words is not None else ()
    # On C2C-coherent GPUs (GB200) NVML's NUMA node is the GPU's own memory node, which is
    # not among the CPU nodes near it; the PCI device's node then comes from sysfs.
    gpu_numa_id = None
    if numa_node is not None and numa_affinity and numa_node not in numa_affinity:
        gpu_numa_id, numa_node = numa_node, _sysfs_numa_node(sysfs, bus_id)
    gpu = Gpu(
        index=index,
        uuid=text(q.ask("nvmlDeviceGetUUID", handle)),
        name=text(q.ask("nvmlDeviceGetName", handle)),
        brand=brand_name(_int(q.ask("nvmlDeviceGetBrand", handle))),
        architecture=architecture_name(_int(q.ask("nvmlDeviceGetArchitecture", handle))),
        compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else None,
        memory_mib=total // _MIB if isinstance(total, int) else None,
        pci_bus_id=bus_id,
        pcie_root=pcie_root(sysfs, bus_id),
        numa_node=numa_node,
        numa_affinity=numa_affinity,
        cpu_affinity=compress_cpulist(bits_of(cpu_words or ())) or None,
        mig_mode=_mig_mode(q, handle),
        fabric=read_fabric(q, handle),
        platform=read_platform(q, handle),
        minor=minor if isinstance(minor, int) else None,
        gpu_numa_id=gpu_numa_id,
    )
    return RawGpu(handle=handle, gpu=gpu, links=read_links(q, handle))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _mig_mode(q: NvmlCalls, handle: Any) -> bool | None:
    answer = q.call("nvmlDeviceGetMigMode", handle)
    if isinstance(answer, Failure):
        # NotSupported means the GPU has no MIG, so MIG is off; anything else is unknown.
        return False if answer.code == NOT_SUPPORTED else None
    return int(answer[0]) == 1


def read_links(q: NvmlCalls, handle: Any) -> tuple[RawLink, ...]:
    """Every NVLink that answers its state, up to the binding's link limit."""
    limit = getattr(q.module, "NVML_NVLINK_MAX_LINKS", 18)
    links: list[RawLink] = []
    for link in range(limit if isinstance(limit, int) else 18):
        state = q.call("nvmlDeviceGetNvLinkState", handle, link)
        if isinstance(state, Failure):
            # InvalidArgument: past the GPU's last link. The others: no NVLink API at all.
            if state.code in (None, INVALID_ARGUMENT, FUNCTION_NOT_FOUND):
                break
            continue
        pci = q.ask("nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
        links.append(
            RawLink(
                link=link,
                up=int(state) == 1,
                version=_int(q.ask("nvmlDeviceGetNvLinkVersion", handle, link)),
                remote_bus=pci_info_bus_id(pci) if pci is not None else None,
                remote_type=_int(q.ask("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)),
            )
        )
    return tuple(links)


def _raw(struct: Any, field: str, size: int) -> bytes | None:
    """The bytes of a struct field, read from memory: pynvml decodes char fields to text
    and fails on bytes that are not UTF-8, so they are read underneath it."""
    descriptor = getattr(type(struct), field, None)
    if descriptor is None:
        return None
    return ctypes.string_at(ctypes.addressof(struct) + descriptor.offset, size)


def _byte(struct: Any, field: str) -> int | None:
    raw = _raw(struct, field, 1)
    return raw[0] if raw else None


def read_fabric(q: NvmlCalls, handle: Any) -> Fabric | None:
    """Multi-node NVLink fabric info, with the newest struct the driver and binding share."""
    for fn, struct_name in _FABRIC_CALLS:
        cls = getattr(q.module, struct_name, None)
        if cls is None:
            continue
        info = cls()
        answer = q.call(fn, handle, ctypes.pointer(info))
        if isinstance(answer, Failure):
            if answer.code in _TRY_NEXT:
                continue
            return None
        raw_uuid = _raw(info, "clusterUuid", 16) or b""
        mask = int(getattr(info, "healthMask", 0))
        summary = getattr(info, "healthSummary", None)
        return Fabric(
            cluster_uuid=uuid_from_bytes(raw_uuid),
            clique_id=int(info.cliqueId),
            state=fabric_state(int(info.state)),
            status=return_name(int(info.status)),
            health=fabric_health(int(summary) if summary is not None else None, mask),
            health_mask=mask,
        )
    return None


def read_platform(q: NvmlCalls, handle: Any) -> Platform | None:
    """Rack position (chassis, slot, tray, host, module) where the GPU reports it."""
    for struct_name in _PLATFORM_STRUCTS:
        cls = getattr(q.module, struct_name, None)
        if cls is None:
            continue
        info = cls()
        answer = q.call("nvmlDeviceGetPlatformInfo", handle, ctypes.pointer(info))
        if isinstance(answer, Failure):
            if answer.code in _TRY_NEXT:
                continue
            return None
        if hasattr(cls, "chassisSerialNumber"):  # v2
            serial = _raw(info, "chassisSerialNumber", 16)
            return Platform(
                chassis_serial=text_field(serial) if serial else None,
                slot=_byte(info, "slotNumber"),
                tray=_byte(info, "trayIndex"),
                host_id=_byte(info, "hostId"),
                module_id=_byte(info, "moduleId"),
            )
        return Platform(  # v1 names the same places differently and has no chassis serial
            slot=_byte(info, "chassisPhysicalSlotNumber"),
            tray=_byte(info, "computeSlotIndex"),
            host_id=_byte(info, "nodeIndex"),
            module_id=_byte(info, "moduleId"),
        )
    return None


# -- sysfs: what NVML does not say ---------------------------------------------------------


def pcie_root(sysfs: Path, bus_id: str | None) -> str | None:
    """The PCIe root complex above a device (``pci0000:00``), from its sysfs path."""
    if bus_id is None:
        return None
    try:
        real = (sysfs / "bus" / "pci" / "devices" / bus_id).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return next((part for part in real.parts if _PCIE_ROOT_RE.match(part)), None)


def _sysfs_numa_node(sysfs: Path, bus_id: str | None) -> int | None:
    if bus_id is None:
        return None
    try:
        node = int((sysfs / "bus" / "pci" / "devices" / bus_id / "numa_node").read_text())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def numa_cpus(sysfs: Path) -> dict[int, str]:
    """CPU list of each NUMA node that has CPUs (``{0: "0-55,112-167"}``)."""
    found: dict[int, str] = {}
    try:
        nodes = list((sysfs / "devices" / "system" / "node").glob("node[0-9]*"))
    except OSError:
        return found
    for node in nodes:
        try:
            cpus = (node / "cpulist").read_text().strip()
            number = int(node.name[4:])
        except (OSError, ValueError):
            continue
        if cpus:
            found[number] = cpus
    return dict(sorted(found.items()))
