"""Tie NVML's per-GPU NVLinks together: the far end of each link, GPU pairs, NVSwitches.

NVML describes links one GPU at a time ("link 4 of GPU 0 reaches PCI device X, an
NVSwitch"). The node's picture follows from matching those far ends to the GPUs found:

* a direct link reaches the bus id of another GPU; a pair's count is the number of working
  links between the two (the smaller of the two GPUs' views, which agree on a sane node);
* on NVSwitch systems every GPU reaches every other through the switches at the rate of the
  narrower side, so a pair's count is ``min(up switch links of a, up switch links of b)``
  with ``via_nvswitch`` set, and ``nvlinks_down`` is how far that falls short of the wider
  side's full bond;
* an inactive link whose far end NVML cannot name is taken as not cabled (PCIe cards with a
  bridge on a few of their links) and left out, so it does not read as a fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from nvtopo.discovery._nvml_decode import nvlink_generation, remote_type
from nvtopo.discovery._nvml_gpu import RawGpu, RawLink
from nvtopo.model import Gpu, GpuPair, NvLink, NvSwitch, PcieClass, RemoteType

#: NvSwitch id used for switch links whose far end NVML cannot name (off-tray switches).
UNKNOWN_SWITCH = "unknown"
_NO_DEVICE = "0000:00:00.0"  # what NVML fills in for "no remote PCI device"


def link_graph(
    raw: list[RawGpu], pcie: Mapping[tuple[int, int], PcieClass | None]
) -> tuple[tuple[Gpu, ...], tuple[GpuPair, ...], tuple[NvSwitch, ...]]:
    """The GPUs with their NVLinks, every GPU pair, and the NVSwitches of a node.

    ``pcie`` holds the PCIe path class of each pair ``(a, b)``, ``a < b``, where known.
    """
    by_bus = {r.gpu.pci_bus_id: r.gpu.index for r in raw if r.gpu.pci_bus_id}
    sharers = _gpus_per_remote(raw, by_bus)
    gpus: list[Gpu] = []
    for r in raw:
        links = tuple(nv for nv in (_link(r.gpu.index, x, by_bus, sharers) for x in r.links) if nv)
        generations = [g for g in (nvlink_generation(nv.version) for nv in links) if g]
        gpus.append(replace(r.gpu, nvlinks=links, nvlink_generation=max(generations, default=None)))
    pairs = tuple(
        _pair(a, b, pcie.get((a.index, b.index))) for i, a in enumerate(gpus) for b in gpus[i + 1 :]
    )
    return tuple(gpus), pairs, _switches(gpus)


def _gpus_per_remote(raw: list[RawGpu], by_bus: Mapping[str, int]) -> dict[str, int]:
    """How many GPUs reach each remote bus id that is not a GPU of this node."""
    seen: dict[str, set[int]] = {}
    for r in raw:
        for x in r.links:
            bus = _remote_bus(x)
            if bus is not None and bus not in by_bus:
                seen.setdefault(bus, set()).add(r.gpu.index)
    return {bus: len(gpus) for bus, gpus in seen.items()}


def _remote_bus(x: RawLink) -> str | None:
    return None if x.remote_bus in (None, _NO_DEVICE) else x.remote_bus


def _link(
    index: int, x: RawLink, by_bus: Mapping[str, int], sharers: Mapping[str, int]
) -> NvLink | None:
    bus = _remote_bus(x)
    kind: RemoteType = remote_type(x.remote_type)
    if x.remote_type is None:
        # Drivers without nvmlDeviceGetNvLinkRemoteDeviceType: a far end that is one of
        # our GPUs is that GPU; one that several GPUs reach is a switch.
        if bus is not None and bus in by_bus:
            kind = "gpu"
        elif bus is not None and sharers.get(bus, 0) >= 2:
            kind = "nvswitch"
    if not x.up and bus is None and kind == "unknown":
        return None
    peer = by_bus.get(bus) if bus is not None and kind == "gpu" else None
    if peer == index:
        peer = None
    return NvLink(
        link=x.link,
        state="up" if x.up else "down",
        version=x.version,
        remote_type=kind,
        remote_pci_bus_id=bus,
        remote_gpu=peer,
    )


def _pair(a: Gpu, b: Gpu, pcie: PcieClass | None) -> GpuPair:
    up_ab, down_ab = _direct(a, b.index)
    up_ba, down_ba = _direct(b, a.index)
    # Each side sees the same cable; a GPU without NVLink answers leaves only the other view.
    views = [v for v, g in ((up_ab, a), (up_ba, b)) if g.nvlinks]
    direct = min(views, default=0)
    down = max(down_ab, down_ba)
    sw_up_a, sw_all_a = _switch_links(a)
    sw_up_b, sw_all_b = _switch_links(b)
    switched = min(sw_up_a, sw_up_b) if sw_all_a and sw_all_b else 0
    if sw_all_a and sw_all_b:
        down += max(sw_all_a, sw_all_b) - switched
    return GpuPair(
        a=a.index,
        b=b.index,
        nvlinks=direct + switched,
        pcie=pcie,
        via_nvswitch=switched > 0,
        nvlinks_down=down,
    )


def _direct(g: Gpu, peer: int) -> tuple[int, int]:
    up = sum(1 for nv in g.nvlinks if nv.remote_gpu == peer and nv.state == "up")
    down = sum(1 for nv in g.nvlinks if nv.remote_gpu == peer and nv.state != "up")
    return up, down


def _switch_links(g: Gpu) -> tuple[int, int]:
    links = [nv for nv in g.nvlinks if nv.remote_type == "nvswitch"]
    return sum(1 for nv in links if nv.state == "up"), len(links)


def _switches(gpus: list[Gpu]) -> tuple[NvSwitch, ...]:
    """NVSwitches by remote bus id, each with the working links every GPU has to it."""
    planes: dict[str, dict[int, int]] = {}
    for g in gpus:
        for nv in g.nvlinks:
            if nv.remote_type != "nvswitch":
                continue
            counts = planes.setdefault(nv.remote_pci_bus_id or UNKNOWN_SWITCH, {})
            counts[g.index] = counts.get(g.index, 0) + (nv.state == "up")
    return tuple(
        NvSwitch(
            id=switch_id,
            pci_bus_id=None if switch_id == UNKNOWN_SWITCH else switch_id,
            gpu_links=tuple(sorted((i, n) for i, n in counts.items() if n > 0)),
        )
        for switch_id, counts in sorted(planes.items())
    )
