"""Pure translations of NVML answers (enums, bitmasks, bus ids) into the model's words.

Nothing here calls NVML; every function takes plain values so it is tested without a GPU.
The enum values are NVML's ABI (``nvml.h``) and do not change between releases, so they are
spelled out here instead of being read from whichever ``pynvml`` is installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from nvtopo.model import PcieClass, RemoteType

FabricStateName = Literal["not_supported", "not_started", "in_progress", "completed"]
FabricHealthName = Literal["healthy", "degraded", "unhealthy", "unknown"]

# nvmlBrandType_t, named the way NVIDIA's Kubernetes GPU drivers publish the `brand` attribute
# (so CEL selectors written against those drivers keep matching).
_BRANDS = {
    1: "Quadro",
    2: "Tesla",
    3: "NVS",
    4: "Grid",
    5: "GeForce",
    6: "Titan",
    7: "NvidiaVApps",
    8: "NvidiaVPC",
    9: "NvidiaVCS",
    10: "NvidiaVWS",
    11: "NvidiaCloudGaming",
    12: "QuadroRTX",
    13: "NvidiaRTX",
    14: "Nvidia",
    15: "GeForceRTX",
    16: "TitanRTX",
}

# nvmlDeviceArchitecture_t.
_ARCHITECTURES = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada",
    9: "Hopper",
    10: "Blackwell",
    13: "Rubin",
}

# nvmlDeviceGetNvLinkVersion answers an nvmlNvlinkVersion_t enum, not a version number:
# 1 = 1.0, 2 = 2.0, 3 = 2.2, 4 = 3.0, 5 = 3.1, 6 = 4.0, 7 = 5.0, 8 = 6.0. A100 answers 5
# (NVLink 3.1), H100 6, B200/GB200 7. The model counts NVLink generations (1 = P100,
# 2 = V100, 3 = A100, 4 = H100/H200, 5 = Blackwell), so minor revisions fold into their major.
_NVLINK_GENERATION = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 5, 8: 6}

# nvmlIntNvLinkDeviceType_t (nvmlDeviceGetNvLinkRemoteDeviceType).
_REMOTE_TYPES: dict[int, RemoteType] = {0: "gpu", 1: "cpu", 2: "nvswitch"}

# nvmlGpuTopologyLevel_t (nvmlDeviceGetTopologyCommonAncestor) → topo -m path class.
# INTERNAL (two GPUs of one board) and SINGLE both cross at most one PCIe bridge.
_TOPOLOGY_LEVELS: dict[int, PcieClass] = {
    0: "PIX",
    10: "PIX",
    20: "PXB",
    30: "PHB",
    40: "NODE",
    50: "SYS",
}

_FABRIC_STATES: dict[int, FabricStateName] = {
    0: "not_supported",
    1: "not_started",
    2: "in_progress",
    3: "completed",
}

# nvmlReturn_t names, snake case (the `status` of fabric info is one of these).
_RETURN_NAMES = {
    0: "success",
    1: "uninitialized",
    2: "invalid_argument",
    3: "not_supported",
    4: "no_permission",
    5: "already_initialized",
    6: "not_found",
    7: "insufficient_size",
    8: "insufficient_power",
    9: "driver_not_loaded",
    10: "timeout",
    11: "irq_issue",
    12: "library_not_found",
    13: "function_not_found",
    14: "corrupted_inforom",
    15: "gpu_is_lost",
    16: "reset_required",
    17: "operating_system",
    18: "lib_rm_version_mismatch",
    19: "in_use",
    20: "memory",
    21: "no_data",
    22: "vgpu_ecc_not_supported",
    23: "insufficient_resources",
    24: "freq_not_supported",
    25: "argument_version_mismatch",
    26: "deprecated",
    27: "not_ready",
    28: "gpu_not_found",
    29: "invalid_state",
    30: "reset_type_not_supported",
    999: "unknown",
}

_BUS_ID_RE = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def brand_name(code: int | None) -> str | None:
    """``nvmlBrandType_t`` → ``"Nvidia"``, ``"Tesla"``, ...; None when unknown."""
    return None if code is None else _BRANDS.get(code)


def architecture_name(code: int | None) -> str | None:
    """``nvmlDeviceArchitecture_t`` → ``"Hopper"``, ``"Blackwell"``, ...; None when unknown."""
    return None if code is None else _ARCHITECTURES.get(code)


def nvlink_generation(version: int | None) -> int | None:
    """NVML's NVLink version enum → the NVLink generation (``6`` → ``4``, H100).

    Examples
    --------
    >>> nvlink_generation(5), nvlink_generation(7), nvlink_generation(0)
    (3, 5, None)
    """
    return None if version is None else _NVLINK_GENERATION.get(version)


def remote_type(code: int | None) -> RemoteType:
    """``nvmlIntNvLinkDeviceType_t`` → ``"gpu"``, ``"nvswitch"``, ``"cpu"`` or ``"unknown"``."""
    return "unknown" if code is None else _REMOTE_TYPES.get(code, "unknown")


def pcie_class(level: int | None) -> PcieClass | None:
    """``nvmlGpuTopologyLevel_t`` → path class (``40`` → ``"NODE"``); None when unknown."""
    return None if level is None else _TOPOLOGY_LEVELS.get(level)


def fabric_state(code: int) -> FabricStateName:
    """``nvmlGpuFabricState_t`` → the model's fabric state (unknown values: not supported)."""
    return _FABRIC_STATES.get(code, "not_supported")


def return_name(code: int) -> str:
    """``nvmlReturn_t`` → ``"success"``, ``"not_ready"``, ... (``"error_<n>"`` if unnamed)."""
    return _RETURN_NAMES.get(code, f"error_{code}")


def fabric_health(summary: int | None, mask: int) -> FabricHealthName:
    """The model's health from ``healthSummary`` (v3) or, without one, from ``healthMask``.

    Summary: 1 healthy, 2 unhealthy, 3 limited capacity (→ degraded), 0 not supported.
    Mask (2 bits per condition, ``TRUE = 1``, ``FALSE = 2``): an unhealthy route or a wrong
    configuration (codes 2 to 8) is unhealthy; degraded bandwidth or a recovery in progress is
    degraded; any condition reported false with none true is healthy; an all-zero mask says
    nothing.

    Examples
    --------
    >>> fabric_health(1, 0), fabric_health(3, 0), fabric_health(None, 0b10_0001_1010)
    ('healthy', 'degraded', 'unhealthy')
    """
    if summary == 1:
        return "healthy"
    if summary == 2:
        return "unhealthy"
    if summary == 3:
        return "degraded"
    if mask == 0:
        return "unknown"
    degraded_bw = mask & 0x3
    route_recovery = (mask >> 2) & 0x3
    route_unhealthy = (mask >> 4) & 0x3
    timeout_recovery = (mask >> 6) & 0x3
    bad_config = (mask >> 8) & 0xF
    if route_unhealthy == 1 or bad_config >= 2:
        return "unhealthy"
    if 1 in (degraded_bw, route_recovery, timeout_recovery):
        return "degraded"
    return "healthy"


def uuid_from_bytes(raw: bytes) -> str:
    """16 bytes → ``"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"`` (lowercase, zero padded)."""
    h = raw[:16].ljust(16, b"\0").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def normalize_bus_id(bus_id: str | bytes | None) -> str | None:
    """NVML's PCI bus id (``"00000000:1B:00.0"``) → the sysfs form (``"0000:1b:00.0"``).

    The domain keeps at least four hex digits (wider only where the domain needs it, as
    Linux prints it); bus and device two, lowercase. None for text that is no bus id.

    Examples
    --------
    >>> normalize_bus_id("00000008:01:00.0"), normalize_bus_id("0000:00:06.0")
    ('0008:01:00.0', '0000:00:06.0')
    """
    if bus_id is None:
        return None
    text = bus_id.decode("ascii", "replace") if isinstance(bus_id, bytes) else bus_id
    match = _BUS_ID_RE.match(text.strip().rstrip("\0"))
    if not match:
        return None
    domain, bus, device, function = match.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{function}"


def bits_of(words: Iterable[int], width: int = 64) -> tuple[int, ...]:
    """Indices of the set bits of a bitmask given as ``width``-bit words, lowest word first.

    Examples
    --------
    >>> bits_of([0b1011, 1])
    (0, 1, 3, 64)
    """
    found: list[int] = []
    for i, word in enumerate(words):
        value = int(word)
        bit = 0
        while value:
            if value & 1:
                found.append(i * width + bit)
            value >>= 1
            bit += 1
    return tuple(found)


def text_field(raw: bytes) -> str | None:
    """A fixed-size NVML char field → text; None when empty; hex when not printable ASCII."""
    if not raw.strip(b"\0"):
        return None
    value = raw.split(b"\0", 1)[0]
    if value and all(0x20 <= b < 0x7F for b in value):
        return value.decode("ascii").strip() or None
    return raw.rstrip(b"\0").hex()
