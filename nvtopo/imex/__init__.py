"""IMEX (multi-node NVLink memory export) without Kubernetes.

* :func:`check`: can this node join a multi-node NVLink job (fabric state, cluster UUID,
  health, NVLinks, IMEX channel devices)?
* :func:`place_domain`: Contract 2 inside one clique, on the nodes the health rule keeps.
* :func:`nodes_config`: the IMEX service's ``nodes_config.cfg`` for the placed nodes.
"""

from __future__ import annotations

from nvtopo.imex.check import CHANNELS_DIR, ChannelDevice, GpuFabricReport, ImexCheck, check
from nvtopo.imex.config import nodes_config, parse_address_file, parse_address_map
from nvtopo.imex.domain import DomainPlacement, ExcludedNode, place_domain
from nvtopo.model.health import fabric_problems

__all__ = [
    "CHANNELS_DIR",
    "ChannelDevice",
    "DomainPlacement",
    "ExcludedNode",
    "GpuFabricReport",
    "ImexCheck",
    "check",
    "fabric_problems",
    "nodes_config",
    "parse_address_file",
    "parse_address_map",
    "place_domain",
]
