"""Live discovery of the local node through NVML (``nvidia-ml-py``, module ``pynvml``).

:func:`discover` asks NVML for every GPU, its NVLinks, NUMA and CPU affinity, PCIe paths and
multi-node fabric (clique) info, and builds a :class:`~nvtopo.model.NodeTopology`.

What NVML cannot answer is left unknown rather than guessed: cloud VMs answer NotSupported
for NVLink, NUMA and fabric queries, older drivers lack functions, older ``pynvml`` releases
lack functions and structs. Each of those gives a correct, smaller topology. A GPU that
answers GpuIsLost is left out with a warning naming it.

Conventions of the result:

* ``pci_bus_id`` is the Linux sysfs spelling (``0000:1b:00.0``): NVML's ``busId`` has an
  8-digit domain (``00000000:1B:00.0``), which is narrowed to the width sysfs and
  Kubernetes' ``resource.kubernetes.io/pciBusID`` use.
* ``pcie_root`` (``pci0000:00``) comes from the device's sysfs path; None where ``/sys`` is
  not readable.
* ``numa_node`` is ``nvmlDeviceGetNumaNodeId`` (the GPU's own memory node on Grace systems),
  else the device's sysfs ``numa_node``; ``numa_affinity`` is NVML's memory affinity, the
  ``NUMA Affinity`` column of ``nvidia-smi topo -m``.
* ``nvlink_generation`` is the NVLink generation (NVML's NVLink version enum, mapped in
  :func:`nvtopo.discovery._nvml_decode.nvlink_generation`).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from nvtopo.discovery._nvml_decode import normalize_bus_id, pcie_class
from nvtopo.discovery._nvml_gpu import (
    Failure,
    GpuLostError,
    NvmlCalls,
    RawGpu,
    collect_gpu,
    numa_cpus,
    read_bus_id,
    text,
)
from nvtopo.discovery._nvml_links import UNKNOWN_SWITCH, link_graph
from nvtopo.exceptions import DiscoveryError
from nvtopo.model import NodeTopology, PcieClass

__all__ = ["SYSFS_ROOT", "UNKNOWN_SWITCH", "discover", "normalize_bus_id"]

log = logging.getLogger("nvtopo.discovery.nvml")

#: Where sysfs is mounted (PCIe roots, device NUMA nodes, NUMA CPU lists).
SYSFS_ROOT = Path("/sys")

_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_WITHOUT_GPU = "use --source system:NAME or smi-topo:PATH to work without a GPU"
_NO_LIBRARY = f"NVML: no NVIDIA driver found (libnvidia-ml.so.1 not loadable); {_WITHOUT_GPU}"
_NO_KERNEL_DRIVER = (
    f"NVML: no NVIDIA driver found (the kernel driver is not loaded); {_WITHOUT_GPU}"
)


def discover(*, nvml: Any = None, name: str | None = None) -> NodeTopology:
    """The topology of this node, as NVML reports it.

    Parameters
    ----------
    nvml
        The NVML binding to ask; the installed ``pynvml`` by default. Anything with the same
        function names works (the tests replay recorded machines this way).
    name
        The node's name; the host name by default.

    Returns
    -------
    NodeTopology
        Every GPU that answered, every GPU pair, and the NVSwitches the GPUs reach.

    Raises
    ------
    DiscoveryError
        When NVML cannot start (no driver, library not found) or cannot count the GPUs.

    Examples
    --------
    >>> import nvtopo
    >>> topo = nvtopo.discover()  # doctest: +SKIP
    >>> topo.path_class(0, 1)  # doctest: +SKIP
    'NV18'
    """
    module = nvml if nvml is not None else _import_pynvml()
    q = NvmlCalls(module)
    _init(q)
    try:
        return _discover(q, name if name is not None else socket.gethostname())
    finally:
        try:
            module.nvmlShutdown()
        except Exception as exc:  # a failed shutdown must not hide the result or error
            log.debug("NVML: nvmlShutdown failed: %s", exc)


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise DiscoveryError(
            f"NVML: the nvidia-ml-py package (module pynvml) is not installed; {_WITHOUT_GPU}"
        ) from None
    return pynvml


def _init(q: NvmlCalls) -> None:
    answer = q.call("nvmlInit")
    if not isinstance(answer, Failure):
        return
    if answer.code == _LIBRARY_NOT_FOUND:
        raise DiscoveryError(_NO_LIBRARY)
    if answer.code == _DRIVER_NOT_LOADED:
        raise DiscoveryError(_NO_KERNEL_DRIVER)
    raise DiscoveryError(f"NVML: cannot start ({answer.reason}); {_WITHOUT_GPU}")


def _discover(q: NvmlCalls, name: str) -> NodeTopology:
    count = q.call("nvmlDeviceGetCount")
    if isinstance(count, Failure):
        raise DiscoveryError(f"NVML: cannot count the GPUs ({count.reason})")
    raw: list[RawGpu] = []
    for index in range(int(count)):
        found = _gpu(q, index)
        if found is not None:
            raw.append(found)
    gpus, pairs, nvswitches = link_graph(raw, _pcie_classes(q, raw))
    return NodeTopology(
        gpus=gpus,
        pairs=pairs,
        nvswitches=nvswitches,
        name=name,
        driver_version=text(q.ask("nvmlSystemGetDriverVersion")),
        cuda_version=_cuda_version(q),
        numa_cpus=numa_cpus(SYSFS_ROOT),
    )


def _gpu(q: NvmlCalls, index: int) -> RawGpu | None:
    """GPU ``index``, or None (with a warning) when NVML cannot reach it."""
    bus_id: str | None = None
    try:
        handle = q.call("nvmlDeviceGetHandleByIndex", index)
        if isinstance(handle, Failure):
            log.warning(
                "NVML: GPU %d cannot be opened (%s); leaving it out of the topology",
                index,
                handle.reason,
            )
            return None
        bus_id = read_bus_id(q, handle)
        return collect_gpu(q, index, handle, bus_id, SYSFS_ROOT)
    except GpuLostError as lost:
        log.warning(
            "NVML: GPU %d (%s) is lost (GpuIsLost from %s); leaving it out of the topology",
            index,
            bus_id or "bus id unknown",
            lost,
        )
        return None


def _pcie_classes(q: NvmlCalls, raw: list[RawGpu]) -> dict[tuple[int, int], PcieClass | None]:
    found: dict[tuple[int, int], PcieClass | None] = {}
    for i, a in enumerate(raw):
        for b in raw[i + 1 :]:
            try:
                level = q.ask("nvmlDeviceGetTopologyCommonAncestor", a.handle, b.handle)
            except GpuLostError:  # lost since it answered: its PCIe path is unknown
                level = None
            found[(a.gpu.index, b.gpu.index)] = pcie_class(level)
    return found


def _cuda_version(q: NvmlCalls) -> str | None:
    """The CUDA version the driver supports (``13000`` → ``"13.0"``)."""
    for fn in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        version = q.ask(fn)
        if isinstance(version, int) and version > 0:
            return f"{version // 1000}.{version % 1000 // 10}"
    return None
