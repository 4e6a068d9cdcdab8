"""``NodeTopology`` document bodies into the model (the reading half of
:mod:`nvtopo.formats.jsonio`, which checks a document before it comes here).

Every part is built by a ``part(kind, raw, build)`` function: :func:`built` builds it
afresh; :func:`nvtopo.formats._parts.shared_part` builds each distinct content once and
shares it between documents.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from nvtopo.exceptions import ParseError, TopologyError
from nvtopo.formats._cpulist import cpulist_problem
from nvtopo.model import Fabric, Gpu, GpuPair, Nic, NodeTopology, NvLink, NvSwitch, Platform
from nvtopo.model.limits import LIMITS

__all__ = ["Part", "built", "node_from_body"]


def _nvlinks(raw: list[dict[str, Any]]) -> tuple[NvLink, ...]:
    return tuple(
        NvLink(
            link=n["link"],
            state=n.get("state", "up"),
            version=n.get("version"),
            remote_type=n.get("remoteType", "unknown"),
            remote_pci_bus_id=n.get("remotePciBusId"),
            remote_gpu=n.get("remoteGpu"),
        )
        for n in raw
    )


def _fabric(raw: dict[str, Any]) -> Fabric:
    return Fabric(
        cluster_uuid=raw.get("clusterUuid", Fabric.cluster_uuid),
        clique_id=raw.get("cliqueId", 0),
        state=raw.get("state", "not_supported"),
        status=raw.get("status", "success"),
        health=raw.get("health", "unknown"),
        health_mask=raw.get("healthMask", 0),
    )


def _pairs(raw: list[dict[str, Any]]) -> tuple[GpuPair, ...]:
    return tuple(
        GpuPair(
            a=p["a"],
            b=p["b"],
            nvlinks=p.get("nvlinks", 0),
            pcie=p.get("pcie"),
            via_nvswitch=p.get("viaNvswitch", False),
            nvlinks_down=p.get("nvlinksDown", 0),
        )
        for p in raw
    )


def _nvswitches(raw: list[dict[str, Any]]) -> tuple[NvSwitch, ...]:
    return tuple(
        NvSwitch(
            id=s["id"],
            pci_bus_id=s.get("pciBusId"),
            gpu_links=tuple((int(x[0]), int(x[1])) for x in s.get("gpuLinks", ())),
        )
        for s in raw
    )


def _nics(raw: list[dict[str, Any]]) -> tuple[Nic, ...]:
    return tuple(
        Nic(
            name=n["name"],
            device=n.get("device"),
            pci_bus_id=n.get("pciBusId"),
            numa_node=n.get("numaNode"),
            gpu_paths=tuple(n.get("gpuPaths", ())),
            nic_paths=tuple(n.get("nicPaths", ())),
        )
        for n in raw
    )


#: How a part of a document is built: ``part(kind, raw, build)``.
Part = Callable[[str, Any, Callable[[Any], Any]], Any]


def built(_kind: str, raw: Any, build: Callable[[Any], Any]) -> Any:
    return build(raw)


def _gpu_from_json(d: dict[str, Any], part: Part = built) -> Gpu:
    fabric = d.get("fabric")
    platform = d.get("platform")
    return Gpu(
        index=d["index"],
        uuid=d.get("uuid"),
        name=d.get("name"),
        brand=d.get("brand"),
        architecture=d.get("architecture"),
        compute_capability=d.get("computeCapability"),
        memory_mib=d.get("memoryMiB"),
        pci_bus_id=d.get("pciBusId"),
        pcie_root=d.get("pcieRoot"),
        numa_node=d.get("numaNode"),
        numa_affinity=tuple(d.get("numaAffinity", ())),
        cpu_affinity=d.get("cpuAffinity"),
        mig_mode=d.get("migMode"),
        nvlink_generation=d.get("nvlinkGeneration"),
        minor=d.get("minor"),
        gpu_numa_id=d.get("gpuNumaId"),
        nvlinks=part("nvlinks", d["nvlinks"], _nvlinks) if "nvlinks" in d else (),
        fabric=None if fabric is None else part("fabric", fabric, _fabric),
        platform=None if platform is None else _platform(platform),
    )


def _platform(raw: dict[str, Any]) -> Platform:
    return Platform(
        chassis_serial=raw.get("chassisSerial"),
        slot=raw.get("slot"),
        tray=raw.get("tray"),
        host_id=raw.get("hostId"),
        module_id=raw.get("moduleId"),
    )


# Every GPU of a kind of node has one of a few CPU lists: each is judged once.
_cpulist_problem = lru_cache(maxsize=1024)(cpulist_problem)


def _check_cpulists(d: dict[str, Any], source: str) -> None:
    """CPU lists the schema's pattern lets through but no machine has (``99999999999-1``)."""
    highest = LIMITS["cpu"].maximum
    lists = [(f"$.gpus[{i}].cpuAffinity", g.get("cpuAffinity")) for i, g in enumerate(d["gpus"])]
    lists += [(f"$.numaCpus.{k}", v) for k, v in d.get("numaCpus", {}).items()]
    for where, text in lists:
        if text is not None:
            problem = _cpulist_problem(text, highest)
            if problem is not None:
                raise ParseError(f"{where}: {problem}", source=source)


def node_from_body(d: dict[str, Any], source: str, part: Part = built) -> NodeTopology:
    """The topology of document body ``d``; the model's checks run, and what they refuse
    is a :class:`ParseError` naming ``source``."""
    _check_cpulists(d, source)
    try:
        return NodeTopology(
            gpus=tuple(_gpu_from_json(g, part) for g in d["gpus"]),
            pairs=part("pairs", d["pairs"], _pairs) if "pairs" in d else (),
            nvswitches=part("nvswitches", d["nvswitches"], _nvswitches)
            if "nvswitches" in d
            else (),
            nics=part("nics", d["nics"], _nics) if "nics" in d else (),
            name=d.get("name"),
            system=d.get("system"),
            driver_version=d.get("driverVersion"),
            cuda_version=d.get("cudaVersion"),
            numa_cpus={int(k): v for k, v in d.get("numaCpus", {}).items()},
        )
    except TopologyError as exc:
        raise ParseError(str(exc), source=source) from None
