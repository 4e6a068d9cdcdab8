"""A stand-in for the ``pynvml`` module that replays a recorded machine.

A recording (``tests/data/nvml/*.json``, written by ``scripts/record-nvml``) holds every NVML
answer :func:`nvtopo.discovery.nvml.discover` asks for, errors included::

    {
      "format": "nvtopo/nvml-capture/v1",
      "source": "where the answers come from",
      "missing": ["nvmlDeviceGetGpuFabricInfoV", ...],   # names the recording binding lacked
      "nvmlInit": null,                                  # or {"error": "DriverNotLoaded"}
      "system": {"nvmlSystemGetDriverVersion": "580.159.04", "nvmlDeviceGetCount": 1, ...},
      "devices": [{
        "default": {"error": "GpuIsLost"},      # optional: the answer to anything unrecorded
        "nvmlDeviceGetName": "NVIDIA H200", ...,              # function name → answer
        "nvmlDeviceGetCpuAffinity": [65535],                  # 64-bit words
        "nvmlDeviceGetTopologyCommonAncestor": {"1": 40},     # other GPU index → level
        "nvmlDeviceGetGpuFabricInfoV": {"maxVersion": 3, "clusterUuid": "…", ...},
        "nvlinks": [{"state": 1, "version": 6, "remote_pci": "00000000:05:00.0",
                     "remote_type": 2}, ...]                   # list index = link number
      }],
      "sysfs": {"pci": {"0000:00:06.0": {"path": "devices/pci0000:00/0000:00:06.0",
                                         "numa_node": -1}},
                "nodes": {"0": "0-15"}}
    }

An answer ``{"error": "NotSupported"}`` raises the real ``pynvml.NVMLError`` subclass, so the
production error handling runs as it would against a driver. Unrecorded device answers are
NotSupported (or the device's ``default``); link numbers past the recorded list answer
InvalidArgument, as drivers do past a GPU's last link. Constants, structs and exception
classes come from the installed ``pynvml``, except the names listed in ``missing``, which
are absent here as they were from the binding that recorded.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynvml

__all__ = ["DATA", "FakeHandle", "FakeNvml", "error_code", "load", "recorder", "write_sysfs"]

DATA = Path(__file__).parent / "data" / "nvml"
RECORDER = Path(__file__).parents[1] / "scripts" / "record-nvml"
FORMAT = "nvtopo/nvml-capture/v1"

# Single-handle getters answered straight from the recording.
_SIMPLE = frozenset(
    {
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetSerial",
        "nvmlDeviceGetBrand",
        "nvmlDeviceGetArchitecture",
        "nvmlDeviceGetCudaComputeCapability",
        "nvmlDeviceGetMinorNumber",
        "nvmlDeviceGetNumaNodeId",
        "nvmlDeviceGetMigMode",
        "nvmlDeviceGetPciInfo_v3",
        "nvmlDeviceGetPciInfo",
        "nvmlDeviceGetMemoryInfo",
    }
)
_SYSTEM = frozenset(
    {
        "nvmlSystemGetDriverVersion",
        "nvmlSystemGetNVMLVersion",
        "nvmlSystemGetCudaDriverVersion",
        "nvmlSystemGetCudaDriverVersion_v2",
        "nvmlDeviceGetCount",
    }
)


def _error_codes() -> dict[str, int]:
    codes: dict[str, int] = {}
    for attr in dir(pynvml):
        if attr.startswith("NVML_ERROR_"):
            code = getattr(pynvml, attr)
            cls = pynvml.NVMLError._valClassMapping.get(code)
            codes[attr.removeprefix("NVML_ERROR_")] = code
            if cls is not None:
                codes[cls.__name__.removeprefix("NVMLError_")] = code
    return codes


_CODES = _error_codes()


def error_code(name: str) -> int:
    """``"NotSupported"``, ``"NVMLError_NotSupported: Not Supported"`` or ``"NOT_SUPPORTED"``
    → the nvmlReturn_t value."""
    key = name.split(":", 1)[0].strip().removeprefix("NVMLError_")
    if key not in _CODES:
        raise KeyError(f"unknown NVML error name {name!r}")
    return _CODES[key]


def load(name: str) -> dict[str, Any]:
    """The recording ``tests/data/nvml/<name>.json``."""
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{name}: not an {FORMAT} recording")
    return data


def recorder() -> Any:
    """``scripts/record-nvml`` as a module (the script has no ``.py`` suffix)."""
    loader = importlib.machinery.SourceFileLoader("record_nvml", str(RECORDER))
    spec = importlib.util.spec_from_loader("record_nvml", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@dataclass(frozen=True)
class FakeHandle:
    """What ``nvmlDeviceGetHandleByIndex`` returns here."""

    index: int


def _raise_if_error(answer: Any) -> Any:
    if isinstance(answer, dict) and "error" in answer:
        raise pynvml.NVMLError(error_code(answer["error"]))
    return answer


def _target(arg: Any) -> Any:
    """The struct behind a ``ctypes.pointer`` or ``ctypes.byref`` argument."""
    if isinstance(arg, ctypes._Pointer):
        return arg.contents
    if type(arg).__name__ == "CArgObject":
        return arg._obj
    return arg


def _field_bytes(value: Any, size: int) -> bytes:
    if isinstance(value, int):
        return bytes([value])
    if isinstance(value, list):
        return bytes(value)
    text = str(value)
    if text.startswith("hex:"):
        return bytes.fromhex(text[4:])
    if size == 16 and len(text) == 36 and text.count("-") == 4:  # a UUID
        return bytes.fromhex(text.replace("-", ""))
    return text.encode("latin-1")


def _fill(struct: Any, answer: dict[str, Any]) -> None:
    """Write recorded fields into a pynvml struct the way the driver would."""
    for name, ctype in type(struct)._fields_:
        if name == "version" or name not in answer:
            continue
        value = answer[name]
        base = ctype._type_ if issubclass(ctype, ctypes.Array) else ctype
        if base in (ctypes.c_char, ctypes.c_uint8) and isinstance(value, (str, list, int)):
            size = ctypes.sizeof(ctype)
            data = _field_bytes(value, size)[:size].ljust(size, b"\0")
            offset = getattr(type(struct), name).offset
            ctypes.memmove(ctypes.addressof(struct) + offset, data, size)
        else:
            setattr(struct, name, value)


def _pci(answer: Any) -> Any:
    info = pynvml.nvmlPciInfo_t()
    fields = {"busId": answer} if isinstance(answer, str) else dict(answer)
    bus_id = str(fields.get("busId", ""))
    parts = bus_id.replace(".", ":").split(":")
    if len(parts) == 4 and "domain" not in fields:
        fields.update(domain=int(parts[0], 16), bus=int(parts[1], 16), device=int(parts[2], 16))
    fields.setdefault("busIdLegacy", bus_id[-12:] if bus_id else "")
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def _memory(answer: dict[str, int]) -> Any:
    info = pynvml.c_nvmlMemory_t()
    for key in ("total", "free", "used"):
        setattr(info, key, int(answer.get(key, 0)))
    return info


def _words(answer: list[int], size: int) -> Any:
    words = (list(answer) + [0] * size)[:size]
    return (ctypes.c_ulonglong * size)(*words)


class FakeNvml:
    """Replays one recording with ``pynvml``'s function names and errors."""

    def __init__(self, recording: dict[str, Any] | str | Path) -> None:
        if isinstance(recording, (str, Path)):
            recording = json.loads(Path(recording).read_text())
        self._data: dict[str, Any] = recording
        self._missing = frozenset(recording.get("missing", ()))
        self.initialized = False
        self.init_calls = 0
        self.shutdown_calls = 0

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name in object.__getattribute__(self, "_missing"):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "_missing"):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        if name in _SIMPLE:
            return lambda handle, *version: self._simple(name, handle)
        if name in _SYSTEM:
            return lambda: self._system(name)
        value = getattr(pynvml, name)
        if name.startswith("nvml") and callable(value) and not isinstance(value, type):

            def unanswered(*args: Any) -> Any:
                raise AssertionError(f"the fake NVML has no answer for {name}")

            return unanswered
        return value

    # -- lifecycle -----------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.init_calls += 1
        _raise_if_error(self._data.get("nvmlInit"))
        self.initialized = True

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.nvmlInit()

    def nvmlShutdown(self) -> None:
        self._check()
        self.shutdown_calls += 1
        self.initialized = False

    def _check(self) -> None:
        if not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    # -- answers -------------------------------------------------------------------------

    def _system(self, name: str) -> Any:
        self._check()
        system = self._data.get("system", {})
        if name not in system:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return _raise_if_error(system[name])

    def _device(self, handle: FakeHandle) -> dict[str, Any]:
        self._check()
        if not isinstance(handle, FakeHandle):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        device: dict[str, Any] = self._data["devices"][handle.index]
        return device

    def _answer(self, handle: FakeHandle, name: str) -> Any:
        device = self._device(handle)
        default = device.get("default", {"error": "NotSupported"})
        return _raise_if_error(device.get(name, default))

    def _simple(self, name: str, handle: FakeHandle) -> Any:
        answer = self._answer(handle, name)
        if name.startswith("nvmlDeviceGetPciInfo"):
            return _pci(answer)
        if name == "nvmlDeviceGetMemoryInfo":
            return _memory(answer)
        if name == "nvmlDeviceGetCudaComputeCapability":
            return tuple(answer)
        return answer

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._check()
        devices = self._data.get("devices", [])
        if not 0 <= index < len(devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        _raise_if_error(devices[index].get("nvmlDeviceGetHandleByIndex"))
        return FakeHandle(index)

    def nvmlDeviceGetCpuAffinity(self, handle: FakeHandle, cpuSetSize: int) -> Any:
        return _words(self._answer(handle, "nvmlDeviceGetCpuAffinity"), cpuSetSize)

    def nvmlDeviceGetMemoryAffinity(self, handle: FakeHandle, nodeSetSize: int, scope: int) -> Any:
        if scope != pynvml.NVML_AFFINITY_SCOPE_NODE:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return _words(self._answer(handle, "nvmlDeviceGetMemoryAffinity"), nodeSetSize)

    def nvmlDeviceGetTopologyCommonAncestor(self, device1: FakeHandle, device2: FakeHandle) -> int:
        self._device(device2)
        levels = self._answer(device1, "nvmlDeviceGetTopologyCommonAncestor")
        if str(device2.index) not in levels:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        level: int = _raise_if_error(levels[str(device2.index)])
        return level

    # -- NVLinks -------------------------------------------------------------------------

    def _link(self, handle: FakeHandle, link: int, key: str) -> Any:
        device = self._device(handle)
        links = device.get("nvlinks")
        if links is None:
            return _raise_if_error(device.get("default", {"error": "NotSupported"}))
        if not 0 <= link < len(links):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _raise_if_error(links[link].get(key, {"error": "NotSupported"}))

    def nvmlDeviceGetNvLinkState(self, device: FakeHandle, link: int) -> int:
        state: int = self._link(device, link, "state")
        return state

    def nvmlDeviceGetNvLinkVersion(self, device: FakeHandle, link: int) -> int:
        version: int = self._link(device, link, "version")
        return version

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: FakeHandle, link: int) -> int:
        kind: int = self._link(handle, link, "remote_type")
        return kind

    def nvmlDeviceGetNvLinkRemotePciInfo(self, device: FakeHandle, link: int) -> Any:
        return _pci(self._link(device, link, "remote_pci"))

    # -- struct-filling queries ----------------------------------------------------------

    def _struct_answer(self, handle: FakeHandle, name: str, target: Any) -> int:
        answer = self._answer(handle, name)
        struct = _target(target)
        version = getattr(struct, "version", None)
        if version is not None and (version >> 24) > answer.get("maxVersion", 1 << 8):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        _fill(struct, answer)
        success: int = pynvml.NVML_SUCCESS
        return success

    def nvmlDeviceGetGpuFabricInfoV(self, device: FakeHandle, gpuFabricInfo: Any) -> int:
        return self._struct_answer(device, "nvmlDeviceGetGpuFabricInfoV", gpuFabricInfo)

    def nvmlDeviceGetGpuFabricInfo(self, device: FakeHandle, gpuFabricInfo: Any) -> int:
        name = "nvmlDeviceGetGpuFabricInfo"
        if name not in self._device(device):  # one answer serves both, where only V is recorded
            name = "nvmlDeviceGetGpuFabricInfoV"
        return self._struct_answer(device, name, gpuFabricInfo)

    def nvmlDeviceGetPlatformInfo(self, device: FakeHandle, platformInfo: Any) -> int:
        return self._struct_answer(device, "nvmlDeviceGetPlatformInfo", platformInfo)


def write_sysfs(recording: dict[str, Any], root: Path) -> Path:
    """Lay out the recording's sysfs facts under ``root`` the way Linux does; returns root."""
    sysfs = recording.get("sysfs", {})
    devices = root / "bus" / "pci" / "devices"
    devices.mkdir(parents=True, exist_ok=True)
    for bus_id, facts in sysfs.get("pci", {}).items():
        real = root / facts["path"]
        real.mkdir(parents=True, exist_ok=True)
        if "numa_node" in facts:
            (real / "numa_node").write_text(f"{facts['numa_node']}\n")
        os.symlink(os.path.relpath(real, devices), devices / bus_id)
    for node, cpus in sysfs.get("nodes", {}).items():
        folder = root / "devices" / "system" / "node" / f"node{node}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpulist").write_text(f"{cpus}\n")
    return root
